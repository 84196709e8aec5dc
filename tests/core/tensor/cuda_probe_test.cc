// Runs everywhere (label unit): without a visible CUDA device -- no GPU, no driver, or a build
// without the CUDA backend -- tandem still starts, reports zero devices, and a CUDA tensor is a
// clear error rather than a crash.
#include <gtest/gtest.h>

#include "core/backends/device_backend.h"
#include "core/tensor/tensor.h"

namespace tandem {
namespace {

TEST(CudaProbe, DeviceCountIsStableAndNeverThrows) {
  const int n = cuda_device_count();
  EXPECT_GE(n, 0);
  EXPECT_EQ(cuda_device_count(), n);
  EXPECT_EQ(cuda_available(), n > 0);
}

TEST(CudaProbe, ACudaTensorWithoutADeviceIsAClearError) {
  if (cuda_available()) GTEST_SKIP() << "a CUDA device is visible; this checks the no-device path";
  try {
    empty({4}, DType::kF32, Device::cuda(0));
    FAIL() << "a cuda tensor was created with no device visible";
  } catch (const Error& e) {
    const std::string msg = e.what();
    const bool no_device = msg.find("no CUDA device is visible") != std::string::npos;
    const bool no_backend = msg.find("built without CUDA") != std::string::npos;
    EXPECT_TRUE(no_device || no_backend) << msg;
  }
  // CPU work is unaffected.
  EXPECT_EQ(ones({2}).to_vector(), (std::vector<double>{1.0, 1.0}));
}

}  // namespace
}  // namespace tandem
