// Fuzz target: parse_config on any text, with overrides. The input is the YAML document, then
// '\0'-separated `key.path=value` overrides. Only ConfigError may escape parse_config; a config
// that loads must render to YAML that loads back to an equal config (config.h's promise).
#include <cstdlib>
#include <string>
#include <vector>

#include "configs/schema/config.h"
#include "core/base/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tandem;
  const std::string input(reinterpret_cast<const char*>(data), size);
  const size_t end = input.find('\0');
  const std::string text = input.substr(0, end);
  std::vector<std::string> overrides;
  for (size_t start = end; start != std::string::npos && start < input.size();) {
    const size_t next = input.find('\0', start + 1);
    overrides.push_back(
        input.substr(start + 1, next == std::string::npos ? next : next - start - 1));
    start = next;
  }
  LoadOptions options;
  options.check_paths = false;  // the same answer on every machine
  ExperimentConfig config;
  try {
    config = parse_config(text, "fuzz.yaml", overrides, options);
  } catch (const ConfigError&) {
    return 0;
  }
  const std::string rendered = render_config(config);
  ExperimentConfig again;
  try {
    again = parse_config(rendered, "fuzz.yaml", {}, options);
  } catch (const ConfigError&) {
    std::abort();  // the renderer wrote YAML its own parser refuses
  }
  if (!(again == config) || config_digest(again) != config_digest(config)) std::abort();
  return 0;
}
