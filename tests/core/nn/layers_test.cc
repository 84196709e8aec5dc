// Layers against torch.nn with the same parameters (forward, input and parameter gradients,
// buffers), PyTorch's default initialisation statistics, input checks, and dropout keyed by
// (seed, step, global sample).
#include <gtest/gtest.h>

#include <cmath>

#include "core/nn/layers.h"
#include "core/nn/random_context.h"
#include "core/nn/sequential.h"
#include "tests/core/nn/nn_test_util.h"

namespace tandem {
namespace {

using nn_test::expect_layer_matches_torch;
using nn_test::random_input;

// ------------------------------------------------------------------------- against PyTorch
TEST(Linear, MatchesTorchOutputAndGradients) {
  TANDEM_SKIP_WITHOUT_TORCH();
  Generator gen(1);
  Linear fc(gen, 24, 10);
  expect_layer_matches_torch(fc, random_input({5, 24}, 1), "Linear",
                             R"({"in_features": 24, "out_features": 10})");
}

TEST(Linear, WithoutBiasOnThreeDimensionalInputMatchesTorch) {
  TANDEM_SKIP_WITHOUT_TORCH();
  Generator gen(2);
  Linear fc(gen, 8, 6, false);
  EXPECT_FALSE(fc.bias().defined());
  EXPECT_EQ(fc.named_parameters().size(), 1u);
  expect_layer_matches_torch(fc, random_input({2, 3, 8}, 2), "Linear",
                             R"({"in_features": 8, "out_features": 6, "bias": false})");
}

TEST(Conv2d, MatchesTorchWithPadding) {
  TANDEM_SKIP_WITHOUT_TORCH();
  Generator gen(3);
  Conv2d conv(gen, 3, 8, 3, 1, 1);
  expect_layer_matches_torch(
      conv, random_input({2, 3, 9, 9}, 3), "Conv2d",
      R"({"in_channels": 3, "out_channels": 8, "kernel_size": 3, "padding": 1})");
}

TEST(Conv2d, MatchesTorchWithStrideDilationAndNoBias) {
  TANDEM_SKIP_WITHOUT_TORCH();
  Generator gen(4);
  Conv2d conv(gen, 4, 6, 3, 2, 2, 2, 1, false);
  expect_layer_matches_torch(conv, random_input({2, 4, 11, 10}, 4), "Conv2d",
                             R"({"in_channels": 4, "out_channels": 6, "kernel_size": 3,
                                 "stride": 2, "padding": 2, "dilation": 2, "bias": false})");
}

TEST(Conv2d, MatchesTorchWithGroups) {
  TANDEM_SKIP_WITHOUT_TORCH();
  Generator gen(5);
  Conv2d conv(gen, 4, 6, 3, 1, 0, 1, 2);
  EXPECT_EQ(conv.weight().shape(), (Shape{6, 2, 3, 3}));
  expect_layer_matches_torch(
      conv, random_input({3, 4, 7, 7}, 5), "Conv2d",
      R"({"in_channels": 4, "out_channels": 6, "kernel_size": 3, "groups": 2})");
}

TEST(BatchNorm2d, TrainingMatchesTorchIncludingRunningStatistics) {
  TANDEM_SKIP_WITHOUT_TORCH();
  BatchNorm2d bn(5, 1e-5, 0.1);
  // Non-trivial affine parameters and running statistics, so every term shows.
  Generator gen(6);
  {
    NoGradGuard ng;
    Tensor w = bn.weight(), b = bn.bias(), rm = bn.running_mean(), rv = bn.running_var();
    uniform_(w, 0.5, 1.5, gen);
    uniform_(b, -0.5, 0.5, gen);
    uniform_(rm, -1, 1, gen);
    uniform_(rv, 0.5, 2, gen);
  }
  Tensor x = add(mul(random_input({4, 5, 3, 3}, 6), 2.0), 1.0);
  expect_layer_matches_torch(bn, x, "BatchNorm2d", R"({"num_features": 5})");
  EXPECT_EQ(bn.num_batches_tracked().dtype(), DType::kI64);
  EXPECT_EQ(bn.num_batches_tracked().dim(), 0);
  EXPECT_EQ(bn.num_batches_tracked().item(), 1.0);
}

TEST(BatchNorm2d, EvalUsesRunningStatisticsLikeTorch) {
  TANDEM_SKIP_WITHOUT_TORCH();
  BatchNorm2d bn(3, 1e-3, 0.2);
  Generator gen(7);
  {
    NoGradGuard ng;
    Tensor w = bn.weight(), b = bn.bias(), rm = bn.running_mean(), rv = bn.running_var();
    uniform_(w, 0.5, 1.5, gen);
    uniform_(b, -0.5, 0.5, gen);
    uniform_(rm, -1, 1, gen);
    uniform_(rv, 0.5, 2, gen);
  }
  bn.eval();
  std::vector<double> mean_before = bn.running_mean().to_vector();
  expect_layer_matches_torch(bn, random_input({2, 3, 4, 4}, 7), "BatchNorm2d",
                             R"({"num_features": 3, "eps": 0.001, "momentum": 0.2})");
  EXPECT_EQ(bn.running_mean().to_vector(), mean_before);
  EXPECT_EQ(bn.num_batches_tracked().item(), 0.0);
}

TEST(ReLU, MatchesTorch) {
  TANDEM_SKIP_WITHOUT_TORCH();
  ReLU r;
  expect_layer_matches_torch(r, random_input({3, 7}, 8), "ReLU", "{}");
}

TEST(MaxPool2d, MatchesTorchWithOverlappingPaddedWindows) {
  TANDEM_SKIP_WITHOUT_TORCH();
  MaxPool2d pool(3, 2, 1);
  expect_layer_matches_torch(pool, random_input({2, 3, 9, 8}, 9), "MaxPool2d",
                             R"({"kernel_size": 3, "stride": 2, "padding": 1})");
}

TEST(MaxPool2d, DefaultStrideIsTheKernelSize) {
  TANDEM_SKIP_WITHOUT_TORCH();
  MaxPool2d pool(2);
  EXPECT_EQ(pool.forward(random_input({1, 1, 6, 6}, 1)).shape(), (Shape{1, 1, 3, 3}));
  expect_layer_matches_torch(pool, random_input({2, 2, 6, 7}, 10), "MaxPool2d",
                             R"({"kernel_size": 2})");
}

TEST(AvgPool2d, MatchesTorch) {
  TANDEM_SKIP_WITHOUT_TORCH();
  AvgPool2d pool(2);
  expect_layer_matches_torch(pool, random_input({2, 3, 6, 6}, 11), "AvgPool2d",
                             R"({"kernel_size": 2})");
}

TEST(AvgPool2d, MatchesTorchWithPaddingExcludedFromTheCount) {
  TANDEM_SKIP_WITHOUT_TORCH();
  AvgPool2d pool(3, 2, 1, false);
  expect_layer_matches_torch(
      pool, random_input({2, 3, 7, 6}, 12), "AvgPool2d",
      R"({"kernel_size": 3, "stride": 2, "padding": 1, "count_include_pad": false})");
}

TEST(AdaptiveAvgPool2d, MatchesTorchOnUnevenBins) {
  TANDEM_SKIP_WITHOUT_TORCH();
  AdaptiveAvgPool2d pool(3, 2);
  expect_layer_matches_torch(pool, random_input({2, 4, 7, 5}, 13), "AdaptiveAvgPool2d",
                             R"({"output_size": [3, 2]})");
}

TEST(Flatten, MatchesTorch) {
  TANDEM_SKIP_WITHOUT_TORCH();
  Flatten f;
  EXPECT_EQ(f.forward(random_input({2, 3, 4, 5}, 1)).shape(), (Shape{2, 60}));
  expect_layer_matches_torch(f, random_input({2, 3, 4, 5}, 14), "Flatten", "{}");
}

TEST(Sequential, ChainsChildrenNamedByPosition) {
  Generator gen(15);
  Sequential seq;
  auto fc1 = seq.push_back(std::make_shared<Linear>(gen, 6, 5));
  seq.push_back(std::make_shared<ReLU>());
  auto fc2 = seq.push_back(std::make_shared<Linear>(gen, 5, 3));
  EXPECT_EQ(nn_test::listing(seq.named_parameters()),
            (std::vector<std::string>{"0.weight f32 [5, 6]", "0.bias f32 [5]",
                                      "2.weight f32 [3, 5]", "2.bias f32 [3]"}));
  Tensor x = random_input({4, 6}, 15);
  testing::expect_close(seq.forward(x), fc2->forward(relu(fc1->forward(x))), 0, "sequential");
}

// ------------------------------------------------------------------------- initialisation
TEST(Linear, DefaultInitIsUniformWithinOneOverSqrtFanIn) {
  Generator gen(42);
  Linear fc(gen, 1000, 1000);
  double bound = 1.0 / std::sqrt(1000.0);
  std::vector<double> w = fc.weight().to_vector();
  double lo = 1, hi = -1, s = 0, s2 = 0;
  for (double v : w) {
    lo = std::min(lo, v);
    hi = std::max(hi, v);
    s += v;
    s2 += v * v;
  }
  double n = static_cast<double>(w.size()), mean = s / n, var = s2 / n - mean * mean;
  EXPECT_GE(lo, -bound);
  EXPECT_LE(hi, bound);
  EXPECT_LT(lo, -0.999 * bound);  // the whole interval is used
  EXPECT_GT(hi, 0.999 * bound);
  EXPECT_NEAR(mean, 0.0, 1e-4);
  EXPECT_NEAR(var, 1.0 / 3000.0, 0.01 / 3000.0);  // 1e6 draws: relative sd of var ~0.1%
  std::vector<double> b = fc.bias().to_vector();
  for (double v : b) ASSERT_LE(std::abs(v), bound);
  EXPECT_GT(*std::max_element(b.begin(), b.end()), 0.9 * bound);
}

TEST(Linear, SameSeedGivesIdenticalWeightsAndOtherSeedsDiffer) {
  Generator g1(7), g2(7), g3(8);
  Linear a(g1, 50, 40), b(g2, 50, 40), c(g3, 50, 40);
  EXPECT_EQ(a.weight().to_vector(), b.weight().to_vector());
  EXPECT_EQ(a.bias().to_vector(), b.bias().to_vector());
  EXPECT_NE(a.weight().to_vector(), c.weight().to_vector());
  // Weight and bias come from disjoint draws of one generator.
  EXPECT_NE(a.weight().to_vector()[0], a.bias().to_vector()[0]);
}

TEST(Conv2d, DefaultInitBoundUsesFanInPerGroup) {
  Generator gen(9);
  Conv2d conv(gen, 64, 128, 3, 1, 1, 1, 4);  // fan_in = 64 / 4 * 9 = 144
  double bound = 1.0 / 12.0;
  std::vector<double> w = conv.weight().to_vector();
  double hi = 0, s2 = 0;
  for (double v : w) {
    hi = std::max(hi, std::abs(v));
    s2 += v * v;
  }
  EXPECT_LE(hi, bound);
  EXPECT_GT(hi, 0.99 * bound);
  EXPECT_NEAR(s2 / static_cast<double>(w.size()), bound * bound / 3, 0.05 * bound * bound / 3);
  for (double v : conv.bias().to_vector()) EXPECT_LE(std::abs(v), bound);
}

TEST(BatchNorm2d, StartsAtIdentityWithUnitRunningVariance) {
  BatchNorm2d bn(4);
  EXPECT_EQ(bn.weight().to_vector(), std::vector<double>(4, 1.0));
  EXPECT_EQ(bn.bias().to_vector(), std::vector<double>(4, 0.0));
  EXPECT_EQ(bn.running_mean().to_vector(), std::vector<double>(4, 0.0));
  EXPECT_EQ(bn.running_var().to_vector(), std::vector<double>(4, 1.0));
  EXPECT_TRUE(bn.weight().requires_grad());
  EXPECT_FALSE(bn.running_mean().requires_grad());
}

// ------------------------------------------------------------------------- input checks
TEST(Linear, WrongInputWidthNamesTheLayerAndTheExpectedShape) {
  Generator gen(1);
  Linear fc(gen, 8, 4);
  try {
    fc.forward(zeros({2, 7}));
    FAIL() << "no ShapeError";
  } catch (const ShapeError& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("Linear(in_features=8, out_features=4"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[..., 8]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[2, 7]"), std::string::npos) << msg;
  }
}

TEST(Conv2d, WrongChannelCountNamesTheLayerPathInItsModel) {
  Generator gen(1);
  Sequential seq;
  seq.push_back(std::make_shared<Conv2d>(gen, 3, 4, 3));
  seq.push_back(std::make_shared<Conv2d>(gen, 5, 4, 3));  // does not fit the first
  try {
    seq.forward(zeros({1, 3, 8, 8}));
    FAIL() << "no ShapeError";
  } catch (const ShapeError& e) {
    std::string msg = e.what();
    EXPECT_EQ(msg.rfind("1 (Conv2d(5, 4", 0), 0u) << msg;
    EXPECT_NE(msg.find("[N, 5, H, W]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[1, 4, 6, 6]"), std::string::npos) << msg;
  }
  EXPECT_THROW(Conv2d(gen, 3, 4, 3, 1, 0, 1, 2), ConfigError);  // 3 channels in 2 groups
  EXPECT_THROW(BatchNorm2d(4).forward(zeros({2, 4, 3})), ShapeError);
  EXPECT_THROW(MaxPool2d(2).forward(zeros({4, 4})), ShapeError);
}

// ------------------------------------------------------------------------- dropout
TEST(Dropout, ZeroesAboutPAndScalesTheRestInTraining) {
  Dropout d(0.3);
  Tensor x = ones({200, 500});
  DropoutScope scope(11, 0, 0);
  std::vector<double> y = d.forward(x).to_vector();
  int64_t zeros_seen = 0;
  for (double v : y) {
    if (v == 0)
      ++zeros_seen;
    else
      ASSERT_NEAR(v, 1.0 / 0.7, 1e-6);
  }
  EXPECT_NEAR(static_cast<double>(zeros_seen) / static_cast<double>(y.size()), 0.3, 0.005);
}

TEST(Dropout, IsTheIdentityInEvalAndBackwardUsesTheSameMask) {
  Dropout d(0.5);
  Tensor x = random_input({8, 16}, 3);
  d.eval();
  EXPECT_TRUE(d.forward(x).is_same(x));
  d.train();
  Tensor xg = x.detach().clone();
  xg.set_requires_grad(true);
  DropoutScope scope(1, 2, 0);
  Tensor y = d.forward(xg);
  sum(y).backward();
  std::vector<double> yv = y.to_vector(), xv = x.to_vector(), g = xg.grad().to_vector();
  for (size_t i = 0; i < yv.size(); ++i) {
    ASSERT_NEAR(yv[i], g[i] * xv[i], 1e-6);  // y = x * mask / (1 - p), dy/dx = mask / (1 - p)
    ASSERT_TRUE(g[i] == 0 || std::abs(g[i] - 2.0) < 1e-6);
  }
}

TEST(Dropout, MasksDependOnGlobalSampleIndexNotOnHowTheBatchIsSplit) {
  Dropout d(0.5);
  Tensor x = ones({8, 32});
  Tensor whole;
  {
    DropoutScope scope(5, 3, 100);  // one replica holding global samples 100..107
    whole = d.forward(x);
  }
  Tensor first, second;
  {
    DropoutScope scope(5, 3, 100);  // two replicas: samples 100..103 and 104..107
    first = d.forward(x.slice(0, 0, 4));
  }
  {
    DropoutScope scope(5, 3, 104);
    second = d.forward(x.slice(0, 4, 8));
  }
  testing::expect_close(cat({first, second}, 0), whole, 0, "split batch");
  Tensor other_step;
  {
    DropoutScope scope(5, 4, 100);
    other_step = d.forward(x);
  }
  EXPECT_NE(other_step.to_vector(), whole.to_vector());
}

TEST(DropoutScope, EachCallTakesTheNextStreamOfTheStep) {
  Dropout a(0.5), b(0.5);
  Tensor x = ones({4, 64});
  DropoutScope scope(9, 7, 0);
  Tensor ya = a.forward(x), yb = b.forward(x);
  EXPECT_NE(ya.to_vector(), yb.to_vector());  // two layers, two streams
  EXPECT_EQ(scope.calls(), 2u);
  // The second call of step 7 used stream 7 * 1024 + 1.
  testing::expect_close(yb, dropout(x, 0.5, true, DropoutKey{9, 7 * kDropoutCallsPerStep + 1, 0}),
                        0, "stream layout");
  {
    DropoutScope inner(9, 8, 0);
    testing::expect_close(a.forward(x), dropout(x, 0.5, true, DropoutKey{9, 8 * 1024, 0}), 0,
                          "inner scope");
  }
  testing::expect_close(a.forward(x), dropout(x, 0.5, true, DropoutKey{9, 7 * 1024 + 2, 0}), 0,
                        "outer scope restored");
}

TEST(Dropout, OutsideAnyScopeIsDeterministicPerModule) {
  Dropout a(0.5), b(0.5);
  Tensor x = ones({4, 64});
  Tensor a1 = a.forward(x), a2 = a.forward(x), b1 = b.forward(x);
  EXPECT_EQ(a1.to_vector(), b1.to_vector());  // same per-module call counter
  EXPECT_NE(a1.to_vector(), a2.to_vector());  // the counter advances
  EXPECT_THROW(Dropout(1.0), ConfigError);
}

}  // namespace
}  // namespace tandem
