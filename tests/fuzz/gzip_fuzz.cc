// Fuzz target: gunzip on any bytes, fed to zlib in pieces of 1..256 bytes (the first input byte)
// under a cap of up to 4 MiB (the next four). Bad input must be an IoError; nothing decompresses
// past the cap; the output does not depend on the piece size.
#include <cstdlib>
#include <vector>

#include "core/base/error.h"
#include "core/data/compressed_file.h"
#include "tests/fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tandem;
  fuzz::FuzzInput in(data, size);
  const size_t chunk = 1 + in.byte();
  const uint64_t cap = in.u32() % (4u << 20);
  const std::string_view rest = in.rest();
  const std::vector<uint8_t> gz(rest.begin(), rest.end());
  SizeLimit limit;
  limit.header_bytes = 4;
  limit.cap = [&](const uint8_t*, size_t) { return SizeCap{cap, "the fuzzer's cap"}; };
  std::vector<uint8_t> out;
  try {
    out = gunzip(gz, "fuzz.gz", limit, chunk);
  } catch (const IoError&) {
    return 0;
  }
  if (out.size() >= limit.header_bytes && out.size() > cap) std::abort();
  if (gunzip(gz, "fuzz.gz", limit) != out) std::abort();  // whole input at once
  return 0;
}
