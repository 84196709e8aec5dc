// Fuzz target: read_idx (raw or gzip) on any bytes; the first input byte picks an images (odd) or
// a labels (even) file. Bad input must be an IoError; what loads holds exactly the elements its
// dimensions declare.
#include <cstdlib>

#include "core/base/error.h"
#include "core/data/idx.h"
#include "tests/fuzz/data_file.h"
#include "tests/fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tandem;
  fuzz::FuzzInput in(data, size);
  const bool images = in.byte() & 1;
  const std::string path = fuzz::write_data_file(in.rest());
  try {
    IdxArray a = read_idx(path, images ? kIdxImagesMagic : kIdxLabelsMagic, "fuzz");
    uint64_t n = 1;
    for (int64_t d : a.dims) n *= static_cast<uint64_t>(d);
    if (a.dims.size() != (images ? 3u : 1u) || a.data.size() != n) std::abort();
  } catch (const IoError&) {
  }
  return 0;
}
