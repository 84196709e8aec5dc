#include "core/base/error.h"

#include <cstdio>
#include <cstdlib>

namespace tandem::detail {

void assert_fail(const char* file, int line, const char* cond, const std::string& msg) {
  std::fprintf(stderr, "%s:%d: internal error: assertion '%s' failed %s\n", file, line, cond,
               msg.c_str());
  std::fflush(stderr);
  std::abort();
}

}  // namespace tandem::detail
