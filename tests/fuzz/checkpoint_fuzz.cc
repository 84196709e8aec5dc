// Fuzz target: load_checkpoint on a checkpoint directory whose three files come from one input:
// [u32 n][model.safetensors: n bytes][u32 m][optimizer.safetensors: m bytes][trainer_state.json:
// the rest]. Bad files must be an IoError, and find_latest_checkpoint must skip what does not load
// and return what does.
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "core/base/error.h"
#include "core/io/checkpoint.h"
#include "tests/fuzz/data_file.h"
#include "tests/fuzz/fuzz_input.h"

namespace {

// /dev/shm when there is one: three files per input, rewritten in place.
const std::string& checkpoint_dir() {
  static const std::string dir = [] {
    std::string made = tandem::fuzz::scratch_dir("tandem-fuzz-checkpoint");
    const std::string step = made + "/step-00000007";
    if (mkdir(step.c_str(), 0755) != 0) std::abort();
    return made;
  }();
  return dir;
}

void write(const std::string& path, std::string_view bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tandem;
  fuzz::FuzzInput in(data, size);
  const std::string step = checkpoint_dir() + "/step-00000007";
  write(step + "/model.safetensors", in.bytes());
  write(step + "/optimizer.safetensors", in.bytes());
  write(step + "/trainer_state.json", in.rest());
  bool loads = false;
  try {
    LoadedCheckpoint c = load_checkpoint(step);
    loads = c.state.step == 7;  // the directory's name and the state agree, or it is an error
    if (!loads) std::abort();
  } catch (const IoError&) {
  }
  std::vector<std::string> warnings;
  const std::optional<std::string> latest = find_latest_checkpoint(checkpoint_dir(), &warnings);
  if (latest.has_value() != loads || warnings.size() != (loads ? 0u : 1u)) std::abort();
  return 0;
}
