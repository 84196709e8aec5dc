// Fuzz target: read_cifar10_file (plain or gzip) on any bytes. Bad input must be an IoError; what
// loads has one label in 0..9 and 3072 pixels per record.
#include <cstdlib>

#include "core/base/error.h"
#include "core/data/cifar10.h"
#include "tests/fuzz/data_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tandem;
  const std::string path =
      fuzz::write_data_file(std::string_view(reinterpret_cast<const char*>(data), size));
  Cifar10Set s;
  try {
    read_cifar10_file(path, s);
  } catch (const IoError&) {
    return 0;
  }
  if (s.labels.size() != static_cast<size_t>(s.count) ||
      s.pixels.size() != static_cast<size_t>(s.count) * 3072)
    std::abort();
  for (uint8_t label : s.labels)
    if (label >= 10) std::abort();
  return 0;
}
