// Tensor handles, views and conversions: views share storage, strides follow PyTorch's.
#include <gtest/gtest.h>

#include "core/ops/ops.h"
#include "core/random/philox.h"
#include "core/tensor/allocator.h"
#include "core/tensor/storage.h"
#include "tests/support/test_support.h"

namespace tandem {
namespace {

TEST(Tensor, ViewsShareStorageWithoutCopies) {
  Tensor a = arange(0, 24).view({2, 3, 4});
  Tensor t = a.transpose(0, 2);
  EXPECT_EQ(t.shape(), (Shape{4, 3, 2}));
  EXPECT_EQ(t.strides(), (Shape{1, 4, 12}));
  EXPECT_EQ(t.storage().get(), a.storage().get());
  Tensor s = a.slice(2, 1, 4, 2);  // columns 1 and 3
  EXPECT_EQ(s.shape(), (Shape{2, 3, 2}));
  EXPECT_EQ(s.to_vector(), (std::vector<double>{1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23}));
  Tensor p = a.permute({1, 0, 2});
  EXPECT_EQ(p.to_vector()[4], 12.0);  // p[0][1][0] = a[1][0][0]
  Tensor e = arange(0, 3).view({3, 1}).expand({3, 4});
  EXPECT_EQ(e.strides(), (Shape{1, 0}));
  EXPECT_EQ(e.to_vector(), (std::vector<double>{0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2}));
  s.fill_(-1);  // writes through the view
  EXPECT_EQ(a.to_vector()[1], -1.0);
  EXPECT_EQ(a.to_vector()[2], 2.0);
}

TEST(Tensor, ViewOfNonContiguousNeedsReshape) {
  Tensor a = arange(0, 6).view({2, 3}).t();
  EXPECT_THROW(a.view({6}), ShapeError);
  EXPECT_EQ(a.reshape({6}).to_vector(), (std::vector<double>{0, 3, 1, 4, 2, 5}));
  EXPECT_EQ(arange(0, 12).view({3, 4}).view({2, -1}).shape(), (Shape{2, 6}));
}

TEST(Tensor, DtypeConversionsRoundToNearestEven) {
  Tensor x = from_vector({1.0, 1.0 + 1.0 / 256, 65504.0, 1e-7, -2.5, 3.14159}, {6});
  std::vector<double> bf = x.to(DType::kBF16).to(DType::kF32).to_vector();
  EXPECT_EQ(bf[0], 1.0);
  EXPECT_EQ(bf[1], 1.0);  // halfway between 1 and 1 + 2^-7: ties to even
  EXPECT_EQ(bf[4], -2.5);
  std::vector<double> h = x.to(DType::kF16).to(DType::kF64).to_vector();
  EXPECT_EQ(h[2], 65504.0);                          // largest half
  EXPECT_NEAR(h[3], 1.1920928955078125e-07, 1e-12);  // subnormal half nearest 1e-7 (2 ulp of 2^-24)
  EXPECT_EQ(h[5], 3.140625);                         // nearest half to pi-ish
  EXPECT_EQ(from_vector({3.7, -2.2}, {2}).to(DType::kI64).to_vector(),
            (std::vector<double>{3, -2}));
}

TEST(Random, SameSeedSameNumbersAnyThreadCount) {
  Generator g1(42), g2(42);
  Tensor a = randn({1000}, g1), b = randn({1000}, g2);
  EXPECT_EQ(a.to_vector(), b.to_vector());
  Tensor c = randn({1000}, g1);
  EXPECT_NE(a.to_vector(), c.to_vector());
  // Moments of 200k normal draws.
  Generator g(7);
  Tensor n = randn({200000}, g, DType::kF64);
  EXPECT_NEAR(mean(n).item(), 0.0, 0.01);
  EXPECT_NEAR(mean(mul(n, n)).item(), 1.0, 0.01);
  Tensor u = rand({200000}, g, DType::kF64);
  EXPECT_NEAR(mean(u).item(), 0.5, 0.005);
  EXPECT_GE(neg(max(neg(u))).item(), 0.0);
}

TEST(Allocator, SteadyStateReusesBlocks) {
  for (int i = 0; i < 3; ++i) Tensor t = empty({1000, 1000});
  int64_t before = cpu_allocator_stats().system_allocs;
  for (int i = 0; i < 10; ++i) Tensor t = empty({1000, 1000});
  EXPECT_EQ(cpu_allocator_stats().system_allocs, before);
}

// A tensor larger than the machine's memory (a shape from a file or an ONNX graph) is refused
// with its size, before the system is asked; the allocator keeps working afterwards.
TEST(Allocator, ATensorLargerThanTheMachinesMemoryIsRefusedWithItsSize) {
  const int64_t before = cpu_allocator_stats().system_allocs;
  try {
    Tensor t = empty({int64_t{1} << 24, int64_t{1} << 24});  // 2^48 f32: 1 PiB
    FAIL() << "a 1 PiB tensor was allocated";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("cannot allocate 1125899906842624 bytes for a tensor: "
                                         "more than this machine's memory ("),
              std::string::npos)
        << e.what();
  }
  EXPECT_EQ(cpu_allocator_stats().system_allocs, before);
  EXPECT_EQ(empty({4}).numel(), 4);
}

// set_data: the same handle (the one a module and its optimizer hold) now views other memory,
// with its values, gradient and autograd identity kept; a mismatched tensor is refused.
TEST(Tensor, SetDataRepointsTheHandleAndKeepsItsGradient) {
  Tensor p = from_vector({1, 2, 3, 4}, {2, 2});
  p.set_requires_grad(true);
  p.set_grad(full({2, 2}, 0.5));
  Tensor holder = p;  // e.g. the optimizer's copy of the handle
  Tensor flat = zeros({10});
  Tensor view = flat.slice(0, 3, 7).view({2, 2});
  view.copy_(p);
  p.set_data(view);
  flat.data<float>()[4] = 20;                                         // through the buffer ...
  EXPECT_EQ(holder.to_vector(), (std::vector<double>{1, 20, 3, 4}));  // ... seen by every holder
  EXPECT_TRUE(holder.requires_grad());
  EXPECT_EQ(holder.grad().to_vector(), std::vector<double>(4, 0.5));
  EXPECT_THROW(p.set_data(zeros({4})), ShapeError);
  EXPECT_THROW(p.set_data(zeros({2, 2}, DType::kF64)), TypeError);
}

// A tensor over memory somebody else owns: its release runs once, when the last view goes.
TEST(Tensor, ExternalStorageIsReleasedWhenTheLastViewGoes) {
  static float memory[6] = {1, 2, 3, 4, 5, 6};
  int released = 0;
  {
    auto storage = std::make_shared<Storage>(memory, sizeof(memory), Device::cpu(),
                                             [&released] { ++released; });
    Tensor t = from_storage(storage, {2, 3}, DType::kF32);
    Tensor row = t.slice(0, 1, 2);
    storage.reset();
    t = Tensor();
    EXPECT_EQ(released, 0);
    EXPECT_EQ(row.to_vector(), (std::vector<double>{4, 5, 6}));
  }
  EXPECT_EQ(released, 1);
  auto small = std::make_shared<Storage>(memory, 8, Device::cpu(), [] {});
  EXPECT_THROW(from_storage(small, {3}, DType::kF32), ShapeError);
}

}  // namespace
}  // namespace tandem
