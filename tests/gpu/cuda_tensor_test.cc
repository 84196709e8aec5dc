// CUDA tensors: copies between host and device for every dtype, conversions and strided copies on
// the device against the CPU's, fills; the caching allocator's statistics, its steady state and
// its out-of-memory message (label gpu; skipped without a device).
#include <gtest/gtest.h>

#include "tests/gpu/gpu_test_util.h"

namespace tandem {
namespace {

using gpu_test::expect_matches_cpu;
using gpu_test::gpu;
using gpu_test::uniform;

TEST(CudaTensor, RoundTripKeepsEveryDtypeBitForBit) {
  TANDEM_REQUIRE_CUDA();
  for (DType dt : {DType::kF32, DType::kF64, DType::kF16, DType::kBF16, DType::kI32, DType::kI64,
                   DType::kU8}) {
    Tensor host = uniform({37, 5}, 0.0, 100.0, 3).to(dt);
    Tensor dev = host.to(gpu());
    EXPECT_TRUE(dev.is_cuda());
    EXPECT_EQ(dev.dtype(), dt);
    Tensor back = dev.to(Device::cpu());
    EXPECT_EQ(back.to_vector(), host.to_vector()) << dtype_name(dt);
  }
}

TEST(CudaTensor, ConversionsOnTheDeviceMatchTheCpus) {
  TANDEM_REQUIRE_CUDA();
  Tensor host = uniform({129}, -300.0, 300.0, 4);
  Tensor dev = host.to(gpu());
  for (DType dt : {DType::kF64, DType::kF16, DType::kBF16, DType::kI32, DType::kI64}) {
    expect_matches_cpu(dev.to(dt), host.to(dt), std::string("f32 -> ") + dtype_name(dt), 0.0);
    expect_matches_cpu(dev.to(dt).to(DType::kF32), host.to(dt).to(DType::kF32),
                       std::string(dtype_name(dt)) + " -> f32", 0.0);
  }
}

TEST(CudaTensor, StridedCopiesAndFillsMatchTheCpus) {
  TANDEM_REQUIRE_CUDA();
  Tensor host = uniform({6, 7, 8}, -1.0, 1.0, 5);
  Tensor dev = host.to(gpu());
  expect_matches_cpu(dev.permute({2, 0, 1}).contiguous(), host.permute({2, 0, 1}).contiguous(),
                     "permuted copy", 0.0);
  expect_matches_cpu(dev.slice(1, 1, 7, 2).contiguous(), host.slice(1, 1, 7, 2).contiguous(),
                     "sliced copy", 0.0);
  Tensor d2 = dev.clone(), h2 = host.clone();
  d2.slice(2, 0, 8, 3).fill_(2.5);
  h2.slice(2, 0, 8, 3).fill_(2.5);
  expect_matches_cpu(d2, h2, "strided fill", 0.0);
  Tensor d3 = dev.clone(), h3 = host.clone();
  d3.select(0, 2).copy_(host.select(0, 4));  // host -> a strided device view
  h3.select(0, 2).copy_(host.select(0, 4));
  expect_matches_cpu(d3, h3, "host into device view", 0.0);
  EXPECT_DOUBLE_EQ(dev.select(0, 1).select(0, 2).select(0, 3).item(),
                   host.select(0, 1).select(0, 2).select(0, 3).item());
}

TEST(CudaTensor, GradientFlowsBackAcrossTo) {
  TANDEM_REQUIRE_CUDA();
  Tensor x = uniform({4, 3}, -1.0, 1.0, 6);
  x.set_requires_grad(true);
  Tensor y = sum(mul(x.to(gpu()), 3.0));
  EXPECT_TRUE(y.is_cuda());
  y.backward();
  ASSERT_TRUE(x.grad().defined());
  EXPECT_TRUE(x.grad().device().is_cpu());
  testing::expect_close(x.grad(), full({4, 3}, 3.0), 0.0, "grad through to(cuda)");
}

TEST(CudaAllocator, StatisticsCountBlocksAndReuseThemWithoutNewDeviceAllocations) {
  TANDEM_REQUIRE_CUDA();
  DeviceBackend& be = backend_for("test", gpu());
  be.synchronize(0);
  const DeviceMemoryStats before = be.memory_stats(0);
  {
    Tensor a = empty({1 << 20}, DType::kF32, gpu());  // 4 MiB
    const DeviceMemoryStats during = be.memory_stats(0);
    EXPECT_EQ(during.allocated_bytes - before.allocated_bytes, 4 << 20);
    EXPECT_GE(during.peak_allocated_bytes, during.allocated_bytes);
  }
  const DeviceMemoryStats after_free = be.memory_stats(0);
  EXPECT_EQ(after_free.allocated_bytes, before.allocated_bytes);
  EXPECT_GE(after_free.reserved_bytes, before.reserved_bytes + (4 << 20)) << "block was not cached";
  // The same shapes again and again: served from the cache, no cudaMalloc.
  for (int i = 0; i < 50; ++i) {
    Tensor a = empty({1 << 20}, DType::kF32, gpu());
    Tensor b = zeros({1000, 3}, DType::kF32, gpu());
  }
  const DeviceMemoryStats steady = be.memory_stats(0);
  EXPECT_LE(steady.device_allocs - after_free.device_allocs, 1);  // at most b's first block
  EXPECT_EQ(steady.allocated_bytes, before.allocated_bytes);
}

TEST(CudaAllocator, OutOfMemoryNamesTheRequestAndTheFreeMemory) {
  TANDEM_REQUIRE_CUDA();
  try {
    Tensor huge = empty({int64_t{1} << 46}, DType::kF32, gpu());  // 256 TiB
    FAIL() << "a 256 TiB allocation succeeded";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("out of memory on cuda:0"), std::string::npos) << msg;
    EXPECT_NE(msg.find("tried to allocate 268435456 MiB"), std::string::npos) << msg;
    EXPECT_NE(msg.find("free of"), std::string::npos) << msg;
  }
  // The device still works afterwards.
  expect_matches_cpu(ones({3}).to(gpu()), ones({3}), "after OOM", 0.0);
}

TEST(CudaDevices, AskingForAMissingDeviceNamesHowManyExist) {
  TANDEM_REQUIRE_CUDA();
  const int n = cuda_device_count();
  try {
    empty({1}, DType::kF32, Device::cuda(n));
    FAIL() << "cuda:" << n << " does not exist but allocation succeeded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("only " + std::to_string(n) + " CUDA device"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace tandem
