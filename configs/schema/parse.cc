// Entry points: file -> text -> (size and depth pre-scan) -> yaml-cpp -> Builder -> overrides ->
// resolve. Everything that can go wrong becomes one ConfigError line naming file, line and column.
#include <filesystem>
#include <fstream>
#include <sstream>

#include "configs/schema/builder.h"
#include "configs/schema/config.h"
#include "configs/schema/prescan.h"
#include "core/base/error.h"

namespace tandem {

using config_internal::fail;

ExperimentConfig parse_config(const std::string& text, const std::string& source_name,
                              const std::vector<std::string>& overrides,
                              const LoadOptions& options) {
  ExperimentConfig config;
  config.source_path = source_name;
  config.experiment_name = std::filesystem::path(source_name).stem().string();
  config_internal::Source source{source_name, ""};

  if (auto problem = config_internal::prescan(text, "file")) {
    if (problem->line == 0) fail(source_name, "", problem->message);
    fail(source_name + ":" + std::to_string(problem->line) + ":" + std::to_string(problem->column),
         "", problem->message);
  }
  std::vector<YAML::Node> documents;
  try {
    documents = YAML::LoadAll(text);
  } catch (const YAML::ParserException& e) {
    fail(source.at(e.mark), "", "YAML syntax error: " + e.msg);
  }
  if (documents.empty() || (documents.size() == 1 && documents[0].IsNull()))
    fail(source_name + ":1:1", "",
         "the file is empty; an experiment needs at least model.name and data.name");
  if (documents.size() > 1)
    fail(source.at(documents[1].Mark()), "",
         "found " + std::to_string(documents.size()) +
             " YAML documents; an experiment file holds one");
  const YAML::Node& root = documents[0];
  if (!root.IsMap()) {
    std::string got = root.IsSequence() ? "a list" : "'" + root.Scalar() + "'";
    fail(source.at(root.Mark()), "",
         "expected a mapping of sections (model, data, optimizer, ...), got " + got);
  }

  config_internal::Builder builder(config, source_name);
  builder.apply_document(root);
  for (const std::string& o : overrides) builder.apply_override(o);
  builder.resolve(options);
  return config;
}

ExperimentConfig load_config(const std::string& path, const std::vector<std::string>& overrides,
                             const LoadOptions& options) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::file_status status = fs::status(path, ec);
  if (!fs::exists(status)) fail(path, "", "cannot read the experiment file: it does not exist");
  if (fs::is_directory(status)) fail(path, "", "is a directory, expected a YAML experiment file");
  if (fs::is_regular_file(status)) {
    uintmax_t bytes = fs::file_size(path, ec);
    if (!ec && bytes > static_cast<uintmax_t>(kMaxConfigBytes))
      fail(path, "", config_internal::size_message("file", static_cast<int64_t>(bytes)));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "", "cannot read the experiment file: permission denied or unreadable");
  // Read at most one byte past the limit: a pipe or device has no size to check beforehand.
  std::string text(static_cast<size_t>(kMaxConfigBytes) + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  return parse_config(text, path, overrides, options);
}

}  // namespace tandem
