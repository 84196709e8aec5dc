// Helpers of the GPU tests (label `gpu`): every test starts with TANDEM_REQUIRE_CUDA(), which
// skips it, visibly, where no CUDA device is visible; results are compared with the CPU backend's
// with a tolerance per dtype (ggml's rule: every op on every backend against the CPU).
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "core/backends/device_backend.h"
#include "core/ops/ops.h"
#include "core/random/philox.h"
#include "core/tensor/tensor.h"
#include "tests/support/test_support.h"

#define TANDEM_REQUIRE_CUDA()                                          \
  do {                                                                 \
    if (!::tandem::cuda_available()) GTEST_SKIP() << "no CUDA device"; \
  } while (0)

namespace tandem::gpu_test {

inline Device gpu() {
  return Device::cuda(0);
}

// Relative tolerance of a CUDA result against the CPU's: the kernels sum in a different order
// (tree reductions, cuBLAS blocking) and use the device's libm (within 2 ulp).
inline double tolerance(DType dt) {
  switch (dt) {
    case DType::kF64:
      return 1e-11;
    case DType::kF32:
      return 2e-5;
    case DType::kBF16:
      return 1e-2;
    case DType::kF16:
      return 2e-3;
    default:
      return 0.0;  // integers: exact
  }
}

// A CPU tensor of uniform values in [low, high).
inline Tensor uniform(const Shape& shape, double low, double high, uint64_t seed,
                      DType dtype = DType::kF32) {
  Generator gen(seed, 7);
  Tensor t = rand(shape, gen, dtype);
  return add(mul(t, high - low), low);
}

// The CUDA result `actual` equals the CPU result `expected` within the dtype's tolerance.
inline void expect_matches_cpu(const Tensor& actual, const Tensor& expected,
                               const std::string& what, double tol = -1) {
  ASSERT_TRUE(actual.defined()) << what;
  EXPECT_TRUE(actual.device().is_cuda()) << what << ": result left the device";
  EXPECT_EQ(actual.dtype(), expected.dtype()) << what;
  testing::expect_close(actual.to(Device::cpu()), expected,
                        tol >= 0 ? tol : tolerance(expected.dtype()), what + " (cuda vs cpu)");
}

}  // namespace tandem::gpu_test
