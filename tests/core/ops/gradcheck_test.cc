// Gradient checks in f64 (central finite differences) for every differentiable elementwise,
// reduction, matmul and view op of the core, including broadcasting and non-contiguous inputs.
// The ops of nn_functional_test.cc (batch norm, losses, dropout, indexing) are checked there.
#include <gtest/gtest.h>

#include "core/ops/ops.h"
#include "core/random/philox.h"
#include "tests/support/test_support.h"

namespace tandem {
namespace {

using testing::expect_gradcheck;
using Fn = std::function<Tensor(const std::vector<Tensor>&)>;

Tensor rn(const Shape& s, Generator& g) {
  return randn(s, g, DType::kF64);
}
// Values in [0.5, 2.5): away from the singularities of log, sqrt, div and pow.
Tensor pos(const Shape& s, Generator& g) {
  return add(mul(rand(s, g, DType::kF64), 2.0), 0.5).detach();
}

// Shape pairs that broadcast in different ways: same, scalar, row, column, both sides, rank.
const std::vector<std::pair<Shape, Shape>> kBroadcastPairs{
    {{3, 4}, {3, 4}}, {{3, 4}, {}},        {{}, {3, 4}},     {{3, 4}, {4}},
    {{3, 1}, {1, 4}}, {{2, 3, 4}, {3, 1}}, {{4}, {2, 3, 4}}, {{2, 1, 4}, {2, 3, 1}}};

void check_binary(const char* name, const Fn& fn, bool positive_b) {
  Generator g(100);
  for (const auto& [sa, sb] : kBroadcastPairs) {
    SCOPED_TRACE(std::string(name) + " " + shape_str(sa) + " with " + shape_str(sb));
    expect_gradcheck(fn, {rn(sa, g), positive_b ? pos(sb, g) : rn(sb, g)});
  }
}

TEST(Gradcheck, AddSubMulDivWithBroadcasting) {
  check_binary(
      "add", [](const std::vector<Tensor>& in) { return add(in[0], in[1]); }, false);
  check_binary(
      "sub", [](const std::vector<Tensor>& in) { return sub(in[0], in[1]); }, false);
  check_binary(
      "mul", [](const std::vector<Tensor>& in) { return mul(in[0], in[1]); }, false);
  check_binary(
      "div", [](const std::vector<Tensor>& in) { return div(in[0], in[1]); }, true);
}

TEST(Gradcheck, BinaryOpsOnTransposedInputs) {
  Generator g(101);
  expect_gradcheck([](const std::vector<Tensor>& in) { return mul(in[0].t(), in[1]); },
                   {rn({4, 3}, g), rn({3, 4}, g)});
  expect_gradcheck([](const std::vector<Tensor>& in) { return div(in[0], in[1].t()); },
                   {rn({3, 4}, g), pos({4, 3}, g)});
}

TEST(Gradcheck, SameTensorOnBothSides) {
  Generator g(102);
  expect_gradcheck([](const std::vector<Tensor>& in) { return mul(in[0], in[0]); },
                   {rn({3, 4}, g)});
  expect_gradcheck([](const std::vector<Tensor>& in) { return sub(in[0], in[0].t()); },
                   {rn({3, 3}, g)});
}

TEST(Gradcheck, ScalarOperands) {
  Generator g(103);
  expect_gradcheck([](const std::vector<Tensor>& in) { return add(in[0], 2.5); }, {rn({3, 4}, g)});
  expect_gradcheck([](const std::vector<Tensor>& in) { return mul(in[0], -1.5); }, {rn({3, 4}, g)});
  expect_gradcheck([](const std::vector<Tensor>& in) { return in[0] / 4.0 - 1.0; }, {rn({5}, g)});
}

TEST(Gradcheck, PowWithScalarAndTensorExponents) {
  Generator g(104);
  for (double e : {2.0, 3.0, 0.5, -1.5, 0.0}) {
    SCOPED_TRACE("exponent " + std::to_string(e));
    expect_gradcheck([e](const std::vector<Tensor>& in) { return pow(in[0], e); },
                     {pos({3, 4}, g)});
  }
  expect_gradcheck([](const std::vector<Tensor>& in) { return pow(in[0], 3.0); }, {rn({3, 4}, g)});
  expect_gradcheck([](const std::vector<Tensor>& in) { return pow(in[0], in[1]); },
                   {pos({3, 4}, g), rn({3, 4}, g)});
  expect_gradcheck([](const std::vector<Tensor>& in) { return pow(in[0], in[1]); },
                   {pos({3, 4}, g), rn({4}, g)});
  expect_gradcheck([](const std::vector<Tensor>& in) { return pow(in[0], in[1]); },
                   {pos({3, 1}, g), rn({3, 4}, g)});
}

TEST(Gradcheck, MaximumRoutesToTheLargerOperand) {
  check_binary(
      "maximum", [](const std::vector<Tensor>& in) { return maximum(in[0], in[1]); }, false);
}

TEST(Gradcheck, UnaryOps) {
  Generator g(105);
  const std::vector<std::pair<const char*, Fn>> any_sign{
      {"neg", [](const std::vector<Tensor>& in) { return neg(in[0]); }},
      {"exp", [](const std::vector<Tensor>& in) { return exp(in[0]); }},
      {"abs", [](const std::vector<Tensor>& in) { return abs(in[0]); }},
      {"relu", [](const std::vector<Tensor>& in) { return relu(in[0]); }},
      {"gelu", [](const std::vector<Tensor>& in) { return gelu(in[0]); }},
      {"tanh", [](const std::vector<Tensor>& in) { return tanh(in[0]); }},
      {"sigmoid", [](const std::vector<Tensor>& in) { return sigmoid(in[0]); }},
      {"leaky_relu", [](const std::vector<Tensor>& in) { return leaky_relu(in[0], 0.1); }},
      {"leaky_relu(2.5)", [](const std::vector<Tensor>& in) { return leaky_relu(in[0], 2.5); }},
  };
  for (const auto& [name, fn] : any_sign) {
    SCOPED_TRACE(name);
    expect_gradcheck(fn, {mul(rn({4, 5}, g), 2.0).detach()});
    expect_gradcheck([&fn](const std::vector<Tensor>& in) { return fn({in[0].t()}); },
                     {rn({5, 4}, g)});
  }
  expect_gradcheck([](const std::vector<Tensor>& in) { return log(in[0]); }, {pos({4, 5}, g)});
  expect_gradcheck([](const std::vector<Tensor>& in) { return sqrt(in[0]); }, {pos({4, 5}, g)});
  expect_gradcheck([](const std::vector<Tensor>& in) { return sqrt(in[0].t()); }, {pos({4, 5}, g)});
}

TEST(Gradcheck, WhereSelectsGradientsByCondition) {
  Generator g(106);
  Tensor cond = from_vector({1, 0, 0, 1, 1, 0, 1, 0, 0, 0, 1, 1}, {3, 4}, DType::kU8);
  expect_gradcheck([&](const std::vector<Tensor>& in) { return where(cond, in[0], in[1]); },
                   {rn({3, 4}, g), rn({3, 4}, g)});
  expect_gradcheck([&](const std::vector<Tensor>& in) { return where(cond, in[0], in[1]); },
                   {rn({4}, g), rn({3, 1}, g)});
  Tensor col = from_vector({1, 0, 1}, {3, 1}, DType::kU8);
  expect_gradcheck([&](const std::vector<Tensor>& in) { return where(col, in[0], in[1]); },
                   {rn({3, 4}, g), rn({}, g)});
}

TEST(Gradcheck, SumAndMeanOverDims) {
  Generator g(107);
  const std::vector<std::vector<int64_t>> dim_sets{{}, {0}, {1}, {2}, {-1}, {0, 2}, {0, 1}, {1, 2}};
  for (bool keepdim : {false, true}) {
    for (const auto& dims : dim_sets) {
      SCOPED_TRACE("dims of size " + std::to_string(dims.size()) + (keepdim ? " keepdim" : ""));
      expect_gradcheck([&](const std::vector<Tensor>& in) { return sum(in[0], dims, keepdim); },
                       {rn({2, 3, 4}, g)});
      expect_gradcheck([&](const std::vector<Tensor>& in) { return mean(in[0], dims, keepdim); },
                       {rn({2, 3, 4}, g)});
      // Non-contiguous input: the permute-then-reduce path.
      expect_gradcheck(
          [&](const std::vector<Tensor>& in) {
            return sum(in[0].permute({2, 0, 1}), dims, keepdim);
          },
          {rn({3, 4, 2}, g)});
    }
  }
  expect_gradcheck([](const std::vector<Tensor>& in) { return sum(in[0]); }, {rn({3, 4}, g)});
  expect_gradcheck([](const std::vector<Tensor>& in) { return mean(in[0]); }, {rn({3, 4}, g)});
}

TEST(Gradcheck, MaxOverADimGoesToTheArgmax) {
  Generator g(108);
  for (int64_t dim : {0, 1, 2, -1}) {
    for (bool keepdim : {false, true}) {
      SCOPED_TRACE("dim " + std::to_string(dim) + (keepdim ? " keepdim" : ""));
      expect_gradcheck(
          [&](const std::vector<Tensor>& in) { return max(in[0], dim, keepdim).first; },
          {rn({3, 4, 5}, g)});
    }
  }
  expect_gradcheck([](const std::vector<Tensor>& in) { return max(in[0].t(), 1).first; },
                   {rn({4, 3}, g)});
  expect_gradcheck([](const std::vector<Tensor>& in) { return max(in[0]); }, {rn({3, 4}, g)});
}

TEST(Gradcheck, MatmulInEveryRankCombination) {
  Generator g(109);
  const std::vector<std::pair<Shape, Shape>> cases{
      {{3, 4}, {4, 5}},       {{4}, {4, 5}},       {{3, 4}, {4}},       {{4}, {4}},
      {{2, 3, 4}, {2, 4, 5}}, {{2, 3, 4}, {4, 5}}, {{3, 4}, {2, 4, 5}}, {{2, 1, 3, 4}, {3, 4, 2}},
      {{4}, {2, 4, 5}},       {{2, 3, 4}, {4}}};
  for (const auto& [sa, sb] : cases) {
    SCOPED_TRACE(shape_str(sa) + " @ " + shape_str(sb));
    expect_gradcheck([](const std::vector<Tensor>& in) { return matmul(in[0], in[1]); },
                     {rn(sa, g), rn(sb, g)});
  }
  // Transposed operands go to BLAS as transposed views.
  expect_gradcheck([](const std::vector<Tensor>& in) { return matmul(in[0].t(), in[1].t()); },
                   {rn({4, 3}, g), rn({5, 4}, g)});
  expect_gradcheck([](const std::vector<Tensor>& in) { return matmul(in[0], in[0].t()); },
                   {rn({3, 4}, g)});
}

TEST(Gradcheck, LinearWithAndWithoutBias) {
  Generator g(110);
  expect_gradcheck([](const std::vector<Tensor>& in) { return linear(in[0], in[1], in[2]); },
                   {rn({5, 4}, g), rn({3, 4}, g), rn({3}, g)});
  expect_gradcheck([](const std::vector<Tensor>& in) { return linear(in[0], in[1]); },
                   {rn({5, 4}, g), rn({3, 4}, g)});
  expect_gradcheck([](const std::vector<Tensor>& in) { return linear(in[0], in[1], in[2]); },
                   {rn({2, 5, 4}, g), rn({3, 4}, g), rn({3}, g)});
  expect_gradcheck([](const std::vector<Tensor>& in) { return linear(in[0], in[1]); },
                   {rn({4}, g), rn({3, 4}, g)});
  expect_gradcheck([](const std::vector<Tensor>& in) { return linear(in[0].t(), in[1], in[2]); },
                   {rn({4, 5}, g), rn({3, 4}, g), rn({3}, g)});
}

TEST(Gradcheck, ReshapingViews) {
  Generator g(111);
  expect_gradcheck(
      [](const std::vector<Tensor>& in) {
        return in[0].view({4, 6});
      },
      {rn({2, 3, 4}, g)});
  expect_gradcheck([](const std::vector<Tensor>& in) { return in[0].view({-1}); },
                   {rn({2, 3, 4}, g)});
  expect_gradcheck([](const std::vector<Tensor>& in) { return in[0].t().reshape({12}); },
                   {rn({3, 4}, g)});
  expect_gradcheck([](const std::vector<Tensor>& in) { return in[0].flatten(1); },
                   {rn({2, 3, 4}, g)});
  expect_gradcheck(
      [](const std::vector<Tensor>& in) {
        return in[0].permute({0, 2, 1}).flatten();
      },
      {rn({2, 3, 4}, g)});
  expect_gradcheck([](const std::vector<Tensor>& in) { return in[0].unsqueeze(1).unsqueeze(-1); },
                   {rn({3, 4}, g)});
  expect_gradcheck([](const std::vector<Tensor>& in) { return in[0].squeeze(1); },
                   {rn({3, 1, 4}, g)});
  expect_gradcheck([](const std::vector<Tensor>& in) { return in[0].squeeze(0); },
                   {rn({3, 1, 4}, g)});
}

TEST(Gradcheck, StridedViews) {
  Generator g(112);
  // Each view is followed by a multiply so that the gradient is not just the incoming one.
  expect_gradcheck(
      [](const std::vector<Tensor>& in) { return in[0].transpose(0, 2) * in[0].transpose(0, 2); },
      {rn({2, 3, 4}, g)});
  expect_gradcheck(
      [](const std::vector<Tensor>& in) {
        return in[0].permute({2, 0, 1});
      },
      {rn({2, 3, 4}, g)});
  expect_gradcheck([](const std::vector<Tensor>& in) { return in[0].slice(1, 1, 6, 2); },
                   {rn({3, 7}, g)});
  expect_gradcheck(
      [](const std::vector<Tensor>& in) { return in[0].slice(0, -3, 5, 3).slice(1, 0, 2); },
      {rn({9, 4}, g)});
  expect_gradcheck([](const std::vector<Tensor>& in) { return in[0].select(1, 2); },
                   {rn({3, 4, 2}, g)});
  expect_gradcheck([](const std::vector<Tensor>& in) { return in[0].select(0, -1); },
                   {rn({3, 4}, g)});
  expect_gradcheck(
      [](const std::vector<Tensor>& in) {
        return in[0].expand({2, 3, 4});
      },
      {rn({3, 1}, g)});
  expect_gradcheck(
      [](const std::vector<Tensor>& in) {
        return in[0].expand({3, -1}) * 2.0;
      },
      {rn({4}, g)});
  // Overlapping uses of the same storage through different views.
  expect_gradcheck(
      [](const std::vector<Tensor>& in) {
        return in[0].slice(0, 0, 2) + in[0].slice(0, 1, 3) * in[0].slice(0, 2, 4);
      },
      {rn({4, 3}, g)});
}

TEST(Gradcheck, CloneAndDtypeConversion) {
  Generator g(113);
  expect_gradcheck([](const std::vector<Tensor>& in) { return in[0].t().clone() * in[0].t(); },
                   {rn({3, 4}, g)});
  // A round trip through f32 is exact up to f32 rounding of the perturbed input.
  expect_gradcheck(
      [](const std::vector<Tensor>& in) {
        return mul(in[0].to(DType::kF32), 3.0f).to(DType::kF64);
      },
      {rn({3, 4}, g)}, 1e-2, 1e-4, 1e-4);
  // The gradient of to() comes back in the source dtype, exactly.
  Tensor x = rn({5}, g).set_requires_grad(true);
  Tensor gy = from_vector({0.5, -1, 2, 0.25, 8}, {5});
  x.to(DType::kF32).backward(gy);
  ASSERT_EQ(x.grad().dtype(), DType::kF64);
  EXPECT_EQ(x.grad().to_vector(), gy.to_vector());
}

TEST(Gradcheck, ComposedExpressionThroughSeveralOps) {
  Generator g(114);
  expect_gradcheck(
      [](const std::vector<Tensor>& in) {
        Tensor h = relu(linear(in[0], in[1], in[2]));
        Tensor s = sum(tanh(h) * sigmoid(h), {1}, true);
        return div(exp(neg(s)), add(mean(pow(in[0], 2.0)), 1.0));
      },
      {rn({4, 3}, g), rn({5, 3}, g), rn({5}, g)});
}

}  // namespace
}  // namespace tandem
