// The shared CPU reduction library against hand-computed values: sums, averages and maxima in
// every dtype, NaN propagation from any rank and position, rounding once (N-way) versus once per
// pair in 16-bit floats, wrapping integer sums, aliasing, and the refusals.
#include <gtest/gtest.h>

#include <climits>
#include <cmath>
#include <limits>
#include <vector>

#include "collectives/cpu_reduction.h"
#include "core/base/error.h"

namespace tandem {
namespace {

const float kNaN = std::numeric_limits<float>::quiet_NaN();
const float kInf = std::numeric_limits<float>::infinity();

std::vector<float> reduce_f32(ReduceOp op, const std::vector<std::vector<float>>& ranks) {
  std::vector<const void*> in;
  for (const auto& r : ranks) in.push_back(r.data());
  std::vector<float> out(ranks[0].size(), -1.0f);
  reduce_buffers(DType::kF32, op, in, {out.data()}, static_cast<int64_t>(out.size()));
  return out;
}

TEST(CpuReduction, SumAvgAndMaxOfThreeRanksInF32AndF64) {
  const std::vector<std::vector<float>> ranks = {{1, 2, -3}, {10, -20, 30}, {100, 200, -300}};
  EXPECT_EQ(reduce_f32(ReduceOp::kSum, ranks), (std::vector<float>{111, 182, -273}));
  EXPECT_EQ(reduce_f32(ReduceOp::kAvg, ranks), (std::vector<float>{37, 182.0f / 3, -91}));
  EXPECT_EQ(reduce_f32(ReduceOp::kMax, ranks), (std::vector<float>{100, 200, 30}));

  const std::vector<double> a = {0.5, -1}, b = {0.25, -4};
  std::vector<double> out(2);
  reduce_buffers(DType::kF64, ReduceOp::kAvg, {a.data(), b.data()}, {out.data()}, 2);
  EXPECT_EQ(out, (std::vector<double>{0.375, -2.5}));
}

TEST(CpuReduction, MaxPropagatesNaNFromAnyRankAndPosition) {
  // Rank r holds NaN at element r; element 3 has none; element 4 has -inf and +inf.
  const std::vector<std::vector<float>> ranks = {
      {kNaN, 5, 5, 1, -kInf}, {5, kNaN, 5, 2, kInf}, {5, 5, kNaN, 3, 0}};
  const std::vector<float> got = reduce_f32(ReduceOp::kMax, ranks);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(std::isnan(got[i])) << "element " << i;
  EXPECT_EQ(got[3], 3.0f);
  EXPECT_EQ(got[4], kInf);
  // The sum propagates NaN by arithmetic; the max must not lose one either way round.
  for (ReduceOp op : {ReduceOp::kMax, ReduceOp::kSum}) {
    PairReduceFn fn = pair_reduce_fn(DType::kF32, op);
    float a[2] = {kNaN, 1}, b[2] = {1, kNaN}, out[2] = {0, 0};
    fn(out, a, b, 2);
    EXPECT_TRUE(std::isnan(out[0]) && std::isnan(out[1])) << reduce_op_name(op);
  }
}

TEST(CpuReduction, NaNInALaterBlockReachesEveryOutput) {
  // 5000 elements span three of the 2048-element blocks; rank 2's NaN sits in the last.
  const int64_t n = 5000;
  std::vector<std::vector<double>> ranks(3, std::vector<double>(n));
  for (int r = 0; r < 3; ++r)
    for (int64_t i = 0; i < n; ++i) ranks[r][i] = static_cast<double>(r * 10 + i % 5);
  ranks[2][4500] = std::nan("");
  std::vector<double> out0(n), out1(n);
  reduce_buffers(DType::kF64, ReduceOp::kMax, {ranks[0].data(), ranks[1].data(), ranks[2].data()},
                 {out0.data(), out1.data()}, n);
  for (int64_t i = 0; i < n; ++i) {
    if (i == 4500) {
      EXPECT_TRUE(std::isnan(out0[i]) && std::isnan(out1[i]));
    } else {
      ASSERT_EQ(out0[i], 20.0 + i % 5) << i;
      ASSERT_EQ(out1[i], out0[i]) << i;
    }
  }
}

TEST(CpuReduction, AnOutputMayAliasAnInput) {
  std::vector<float> a = {1, 2, 3}, b = {4, 5, 6};
  reduce_buffers(DType::kF32, ReduceOp::kSum, {a.data(), b.data()}, {a.data(), b.data()}, 3);
  EXPECT_EQ(a, (std::vector<float>{5, 7, 9}));
  EXPECT_EQ(b, a);
  std::vector<float> c = {1, -8}, d = {2, -9};
  pair_reduce_fn(DType::kF32, ReduceOp::kMax)(d.data(), c.data(), d.data(), 2);
  EXPECT_EQ(d, (std::vector<float>{2, -8}));
}

TEST(CpuReduction, SixteenBitFloatsRoundOnceNWayAndOncePerPair) {
  // bf16 has 8 significant bits: between 256 and 512 it steps by 2. 256 + 1 + 1 is 258 when
  // summed in f32 and rounded once; pair by pair, 256 + 1 = 257 rounds (to even) back to 256.
  const BFloat16 big = float_to_bf16(256), one = float_to_bf16(1);
  BFloat16 out = float_to_bf16(0);
  reduce_buffers(DType::kBF16, ReduceOp::kSum, {&big, &one, &one}, {&out}, 1);
  EXPECT_EQ(bf16_to_float(out), 258.0f);
  PairReduceFn bf16_sum = pair_reduce_fn(DType::kBF16, ReduceOp::kSum);
  BFloat16 acc = big;
  bf16_sum(&acc, &acc, &one, 1);
  bf16_sum(&acc, &acc, &one, 1);
  EXPECT_EQ(bf16_to_float(acc), 256.0f);
  // f16 has 11: between 2048 and 4096 it steps by 2, so the same holds at 2048.
  const Half h_big = float_to_half(2048), h_one = float_to_half(1);
  Half h_out = float_to_half(0);
  reduce_buffers(DType::kF16, ReduceOp::kSum, {&h_big, &h_one, &h_one}, {&h_out}, 1);
  EXPECT_EQ(half_to_float(h_out), 2050.0f);
  // max of bf16 keeps a NaN on either side.
  const BFloat16 nan = float_to_bf16(kNaN);
  PairReduceFn bf16_max = pair_reduce_fn(DType::kBF16, ReduceOp::kMax);
  BFloat16 m = float_to_bf16(0);
  bf16_max(&m, &one, &nan, 1);
  EXPECT_TRUE(std::isnan(bf16_to_float(m)));
  bf16_max(&m, &nan, &one, 1);
  EXPECT_TRUE(std::isnan(bf16_to_float(m)));
}

TEST(CpuReduction, IntegerSumsWrapAndMaxIsExact) {
  const int32_t a[2] = {INT32_MAX, -7}, b[2] = {1, 3};
  int32_t out[2] = {0, 0};
  pair_reduce_fn(DType::kI32, ReduceOp::kSum)(out, a, b, 2);
  EXPECT_EQ(out[0], INT32_MIN);
  EXPECT_EQ(out[1], -4);
  const int64_t x[2] = {int64_t{1} << 40, -2}, y[2] = {3, -1}, z[2] = {2, -5};
  int64_t m[2] = {0, 0};
  reduce_buffers(DType::kI64, ReduceOp::kMax, {x, y, z}, {m}, 2);
  EXPECT_EQ(m[0], int64_t{1} << 40);
  EXPECT_EQ(m[1], -1);
}

TEST(CpuReduction, DivideInPlaceRoundsOnceInTheTensorsDtype) {
  float f[2] = {3, -9};
  divide_in_place(DType::kF32, f, 2, 3);
  EXPECT_EQ(f[0], 1.0f);
  EXPECT_EQ(f[1], -3.0f);
  double d[1] = {1};
  divide_in_place(DType::kF64, d, 1, 3);
  EXPECT_EQ(d[0], 1.0 / 3.0);
  BFloat16 h[1] = {float_to_bf16(3)};
  divide_in_place(DType::kBF16, h, 1, 2);
  EXPECT_EQ(bf16_to_float(h[0]), 1.5f);
}

TEST(CpuReduction, RefusesAvgOfIntegersAndUnreducibleDtypes) {
  EXPECT_NO_THROW(check_reducible(DType::kBF16, ReduceOp::kAvg, "all_reduce #1"));
  EXPECT_NO_THROW(check_reducible(DType::kI64, ReduceOp::kMax, "all_reduce #1"));
  try {
    check_reducible(DType::kI32, ReduceOp::kAvg, "all_reduce #3");
    FAIL() << "expected TypeError";
  } catch (const TypeError& e) {
    EXPECT_NE(std::string(e.what()).find("all_reduce #3: avg of i32"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(check_reducible(DType::kU8, ReduceOp::kSum, "x"), TypeError);
  EXPECT_EQ(pair_reduce_fn(DType::kU8, ReduceOp::kSum), nullptr);
}

}  // namespace
}  // namespace tandem
