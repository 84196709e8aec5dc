// Fuzz target: safetensors_parse on any bytes. Bad input must be an IoError; a file that parses
// must serialize back to a file that parses to the same tensors (names, dtypes, shapes, bytes).
#include <cstdlib>
#include <cstring>

#include "core/base/error.h"
#include "core/io/safetensors.h"

namespace {

bool same(const tandem::Tensor& a, const tandem::Tensor& b) {
  if (a.dtype() != b.dtype() || a.shape() != b.shape()) return false;
  const size_t n = static_cast<size_t>(a.numel()) * tandem::dtype_size(a.dtype());
  return n == 0 || std::memcmp(a.raw_data(), b.raw_data(), n) == 0;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tandem;
  SafetensorsFile file;
  try {
    file = safetensors_parse(std::string(reinterpret_cast<const char*>(data), size), "fuzz");
  } catch (const IoError&) {
    return 0;
  }
  const SafetensorsFile again =
      safetensors_parse(safetensors_serialize(file.tensors, file.metadata), "fuzz (written back)");
  if (again.tensors.size() != file.tensors.size() || again.metadata != file.metadata) std::abort();
  for (size_t i = 0; i < file.tensors.size(); ++i)
    if (again.tensors[i].first != file.tensors[i].first ||
        !same(again.tensors[i].second, file.tensors[i].second))
      std::abort();
  return 0;
}
