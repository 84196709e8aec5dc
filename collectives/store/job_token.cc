// Job tokens from the kernel's random source: /dev/urandom never blocks after boot and needs no
// seeding, unlike a std::random_device whose quality depends on the standard library.
#include "collectives/store/job_token.h"

#include <cstdio>

#include "core/base/error.h"

namespace tandem {

std::string generate_job_token() {
  unsigned char bytes[16];
  std::FILE* f = std::fopen("/dev/urandom", "rb");
  TANDEM_CHECK_T(IoError, f != nullptr, "cannot open /dev/urandom to generate the job token");
  size_t n = std::fread(bytes, 1, sizeof(bytes), f);
  std::fclose(f);
  TANDEM_CHECK_T(IoError, n == sizeof(bytes), "short read from /dev/urandom (", n,
                 " of 16 bytes) while generating the job token");
  static const char kHex[] = "0123456789abcdef";
  std::string token;
  token.reserve(32);
  for (unsigned char b : bytes) {
    token.push_back(kHex[b >> 4]);
    token.push_back(kHex[b & 15]);
  }
  return token;
}

}  // namespace tandem
