// The intra-op thread count's default: OMP_NUM_THREADS when it is a whole number, as PyTorch's.
#include "core/parallel/parallel.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <optional>
#include <string>

namespace tandem {
namespace {

// Sets OMP_NUM_THREADS for one scope and puts back what was there.
class OmpNumThreads {
 public:
  explicit OmpNumThreads(const char* value) {
    if (const char* old = std::getenv("OMP_NUM_THREADS")) old_ = old;
    if (value == nullptr)
      ::unsetenv("OMP_NUM_THREADS");
    else
      ::setenv("OMP_NUM_THREADS", value, 1);
  }
  ~OmpNumThreads() {
    if (old_)
      ::setenv("OMP_NUM_THREADS", old_->c_str(), 1);
    else
      ::unsetenv("OMP_NUM_THREADS");
  }

 private:
  std::optional<std::string> old_;
};

TEST(Threads, DefaultIsOmpNumThreadsWhenSetElseEveryCore) {
  {
    OmpNumThreads env("3");
    EXPECT_EQ(default_threads(), 3);
    set_num_threads(0);
    EXPECT_EQ(num_threads(), 3);
  }
  {
    OmpNumThreads env(nullptr);
    EXPECT_EQ(default_threads(), hardware_threads());
  }
  // Anything but a whole number in [1, 4095] is ignored, as if unset.
  for (const char* bad : {"", "0", "-2", "4x", "abc", "4096", "2.5"}) {
    OmpNumThreads env(bad);
    EXPECT_EQ(default_threads(), hardware_threads()) << "OMP_NUM_THREADS=" << bad;
  }
  set_num_threads(0);
  set_num_threads(5);
  EXPECT_EQ(num_threads(), 5);  // an explicit count wins over the environment
  set_num_threads(0);
}

}  // namespace
}  // namespace tandem
