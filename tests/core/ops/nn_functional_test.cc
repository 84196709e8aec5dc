// Batch norm, softmax, losses, dropout, cat and indexing: f64 gradient checks against finite
// differences, f32 forward and backward against PyTorch (tests/reference/cases_functional.py),
// and the counter-based dropout mask against its documented formula.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "core/autograd/grad_mode.h"
#include "core/ops/ops.h"
#include "core/random/philox.h"
#include "tests/support/test_support.h"

namespace tandem {
namespace {

using testing::expect_close;
using testing::expect_gradcheck;
using testing::run_torch;

constexpr double kTorchTol = 1e-5;

Tensor positive(const Shape& s, Generator& g, DType dt = DType::kF64) {
  return add(abs(randn(s, g, dt)), 0.5).detach();
}

// ------------------------------------------------------------------ batch norm
TEST(BatchNorm, TrainingGradientsMatchFiniteDifferences) {
  Generator g(1);
  for (Shape s : {Shape{6, 3}, Shape{3, 4, 2, 3}}) {
    const int64_t c = s[1];
    expect_gradcheck(
        [](const std::vector<Tensor>& in) {
          return batch_norm(in[0], Tensor(), Tensor(), in[1], in[2], true, 0.1, 1e-5);
        },
        {randn(s, g, DType::kF64), randn({c}, g, DType::kF64), randn({c}, g, DType::kF64)});
  }
}

TEST(BatchNorm, TrainingWithoutAffineAndWithRunningStatsMatchesFiniteDifferences) {
  Generator g(2);
  Tensor rm = zeros({4}, DType::kF64), rv = ones({4}, DType::kF64);
  expect_gradcheck(
      [&](const std::vector<Tensor>& in) {
        return batch_norm(in[0], rm, rv, Tensor(), Tensor(), true, 0.1, 1e-5);
      },
      {randn({5, 4, 3}, g, DType::kF64)});
}

TEST(BatchNorm, EvalGradientsMatchFiniteDifferences) {
  Generator g(3);
  Tensor rm = randn({3}, g, DType::kF64), rv = positive({3}, g);
  expect_gradcheck(
      [&](const std::vector<Tensor>& in) {
        return batch_norm(in[0], rm, rv, in[1], in[2], false, 0.1, 1e-5);
      },
      {randn({2, 3, 2, 2}, g, DType::kF64), randn({3}, g, DType::kF64),
       randn({3}, g, DType::kF64)});
}

TEST(BatchNorm, TrainingMatchesPytorchIncludingRunningStats) {
  TANDEM_SKIP_WITHOUT_TORCH();
  Generator g(4);
  // The last shape is large enough to split channels over threads.
  for (Shape s : {Shape{16, 5}, Shape{4, 6, 5, 7}, Shape{32, 8, 16, 16}}) {
    const int64_t c = s[1];
    Tensor x = add(mul(randn(s, g), 3.0), 2.0).detach();  // non-zero mean and scale
    Tensor w = randn({c}, g), b = randn({c}, g), gy = randn(s, g);
    Tensor rm = randn({c}, g), rv = positive({c}, g, DType::kF32);
    auto ref = run_torch("batch_norm",
                         {{"x", x},
                          {"weight", w},
                          {"bias", b},
                          {"running_mean", rm.clone()},
                          {"running_var", rv.clone()},
                          {"grad_out", gy}},
                         R"({"training": true, "momentum": 0.1, "eps": 1e-5})");
    x.set_requires_grad(true);
    w.set_requires_grad(true);
    b.set_requires_grad(true);
    Tensor y = batch_norm(x, rm, rv, w, b, true, 0.1, 1e-5);
    y.backward(gy);
    std::string at = " for " + shape_str(s);
    expect_close(y, ref["out"], kTorchTol, "output" + at);
    expect_close(x.grad(), ref["grad_x"], kTorchTol, "grad x" + at);
    expect_close(w.grad(), ref["grad_weight"], kTorchTol, "grad weight" + at);
    expect_close(b.grad(), ref["grad_bias"], kTorchTol, "grad bias" + at);
    expect_close(rm, ref["running_mean"], kTorchTol, "running mean" + at);
    expect_close(rv, ref["running_var"], kTorchTol, "running var" + at);
  }
}

TEST(BatchNorm, EvalMatchesPytorchAndLeavesRunningStatsAlone) {
  TANDEM_SKIP_WITHOUT_TORCH();
  Generator g(5);
  Shape s{4, 3, 6, 6};
  Tensor x = randn(s, g), w = randn({3}, g), b = randn({3}, g), gy = randn(s, g);
  Tensor rm = randn({3}, g), rv = positive({3}, g, DType::kF32);
  std::vector<double> rm0 = rm.to_vector(), rv0 = rv.to_vector();
  auto ref = run_torch("batch_norm",
                       {{"x", x},
                        {"weight", w},
                        {"bias", b},
                        {"running_mean", rm.clone()},
                        {"running_var", rv.clone()},
                        {"grad_out", gy}},
                       R"({"training": false, "momentum": 0.1, "eps": 1e-5})");
  x.set_requires_grad(true);
  w.set_requires_grad(true);
  b.set_requires_grad(true);
  Tensor y = batch_norm(x, rm, rv, w, b, false, 0.1, 1e-5);
  y.backward(gy);
  expect_close(y, ref["out"], kTorchTol, "output");
  expect_close(x.grad(), ref["grad_x"], kTorchTol, "grad x");
  expect_close(w.grad(), ref["grad_weight"], kTorchTol, "grad weight");
  expect_close(b.grad(), ref["grad_bias"], kTorchTol, "grad bias");
  EXPECT_EQ(rm.to_vector(), rm0);
  EXPECT_EQ(rv.to_vector(), rv0);
}

TEST(BatchNorm, WithoutRunningStatsAlwaysUsesBatchStatistics) {
  Generator g(6);
  Tensor x = add(randn({8, 2}, g, DType::kF64), 5.0);
  Tensor y = batch_norm(x, Tensor(), Tensor(), Tensor(), Tensor(), false, 0.1, 1e-5);
  Tensor m = mean(y, {0});
  Tensor v = mean(mul(y, y), {0});
  for (double e : m.to_vector()) EXPECT_NEAR(e, 0.0, 1e-12);
  for (double e : v.to_vector()) EXPECT_NEAR(e, 1.0, 1e-4);  // biased variance, eps 1e-5
}

TEST(BatchNorm, RejectsMismatchedParametersAndSingleValueChannels) {
  Tensor x = zeros({4, 3});
  EXPECT_THROW(batch_norm(x, Tensor(), Tensor(), ones({4}), Tensor(), true, 0.1, 1e-5), ShapeError);
  EXPECT_THROW(batch_norm(zeros({1, 3}), Tensor(), Tensor(), Tensor(), Tensor(), true, 0.1, 1e-5),
               ValueError);
  EXPECT_THROW(batch_norm(x, Tensor(), Tensor(), ones({3}, DType::kF64), Tensor(), true, 0.1, 1e-5),
               TypeError);
}

// ------------------------------------------------------------------ softmax
TEST(Softmax, GradientsMatchFiniteDifferencesOverEveryDim) {
  Generator g(7);
  for (int64_t dim : {-1, 0, 1}) {
    expect_gradcheck([dim](const std::vector<Tensor>& in) { return softmax(in[0], dim); },
                     {randn({3, 4, 5}, g, DType::kF64)});
    expect_gradcheck([dim](const std::vector<Tensor>& in) { return log_softmax(in[0], dim); },
                     {randn({3, 4, 5}, g, DType::kF64)});
  }
}

TEST(Softmax, MatchesPytorchOnLastAndMiddleDims) {
  TANDEM_SKIP_WITHOUT_TORCH();
  Generator g(8);
  Tensor x = mul(randn({64, 100, 7}, g), 4.0).detach(),
         gy = randn({64, 100, 7}, g);  // many rows per thread
  const std::vector<std::pair<int64_t, bool>> variants{
      {-1, false}, {1, false}, {-1, true}, {1, true}};
  auto ref = run_torch("softmax", {{"x", x}, {"grad_out", gy}},
                       R"({"variants": [[-1, false], [1, false], [-1, true], [1, true]]})");
  for (size_t i = 0; i < variants.size(); ++i) {
    auto [dim, log_form] = variants[i];
    Tensor xi = x.clone().set_requires_grad(true);
    Tensor y = log_form ? log_softmax(xi, dim) : softmax(xi, dim);
    y.backward(gy);
    std::string at =
        std::string(log_form ? " log_softmax" : " softmax") + " dim " + std::to_string(dim);
    expect_close(y, ref["out_" + std::to_string(i)], kTorchTol, "output" + at);
    expect_close(xi.grad(), ref["grad_x_" + std::to_string(i)], kTorchTol, "grad" + at);
  }
}

TEST(Softmax, IsStableForHugeLogits) {
  Tensor x = from_vector({1000, 1001, 1002, -1000}, {1, 4});
  std::vector<double> p = softmax(x, 1).to_vector();
  double e0 = std::exp(-2.0), e1 = std::exp(-1.0), z = e0 + e1 + 1.0;
  EXPECT_NEAR(p[0], e0 / z, 1e-6);
  EXPECT_NEAR(p[2], 1.0 / z, 1e-6);
  EXPECT_EQ(p[3], 0.0);
  std::vector<double> lp = log_softmax(x, 1).to_vector();
  EXPECT_NEAR(lp[2], -std::log(z), 1e-5);
  EXPECT_NEAR(lp[3], -2002.0 - std::log(z), 1e-2);
}

TEST(Softmax, F32ExpIsAccurateAcrossItsWholeRange) {
  // One row spanning exp's normal f32 range (0 down to -80, every probability a normal float):
  // each within a few ulp of the f64 softmax of the same (f32-rounded) inputs.
  const int64_t n = 20001;
  Tensor x32 =
      mul(arange(0, static_cast<double>(n), 1.0, DType::kF64), -80.0 / static_cast<double>(n - 1))
          .to(DType::kF32);
  std::vector<double> a = softmax(x32, 0).to_vector(),
                      b = softmax(x32.to(DType::kF64), 0).to_vector();
  double worst = 0;
  for (int64_t i = 0; i < n; ++i) worst = std::max(worst, std::abs(a[i] - b[i]) / b[i]);
  EXPECT_LT(worst, 1e-6);
  // Below f32's normal range probabilities flush to 0; -inf-like logits give exactly 0.
  std::vector<double> below = softmax(from_vector({0, -88, -100, -1e30}, {4}), 0).to_vector();
  EXPECT_NEAR(below[1], std::exp(-88.0), 1.2e-38);
  EXPECT_EQ(below[3], 0.0);
  std::vector<double> nan = softmax(from_vector({0, NAN, 1}, {3}), 0).to_vector();
  EXPECT_TRUE(std::isnan(nan[1]));
}

// ------------------------------------------------------------------ losses
TEST(CrossEntropy, GradientsMatchFiniteDifferencesWithAndWithoutSmoothing) {
  Generator g(9);
  Tensor target = from_vector({2, 0, 4, 4, 1, 3}, {6}, DType::kI64);
  for (double ls : {0.0, 0.2}) {
    expect_gradcheck(
        [&](const std::vector<Tensor>& in) { return cross_entropy(in[0], target, ls); },
        {randn({6, 5}, g, DType::kF64)});
  }
}

TEST(CrossEntropy, MatchesPytorchLossAndGradient) {
  TANDEM_SKIP_WITHOUT_TORCH();
  Generator g(10);
  const int64_t n = 1024, c = 100;  // rows split over threads
  std::vector<double> t(n);
  for (int64_t i = 0; i < n; ++i) t[i] = static_cast<double>((i * 37 + 3) % c);
  Tensor target = from_vector(t, {n}, DType::kI64);
  Tensor logits = mul(randn({n, c}, g), 3.0).detach();
  const std::vector<double> smoothing{0.0, 0.1};
  auto ref = run_torch("cross_entropy", {{"logits", logits}, {"target", target}},
                       R"({"label_smoothing": [0.0, 0.1]})");
  for (size_t i = 0; i < smoothing.size(); ++i) {
    Tensor li = logits.clone().set_requires_grad(true);
    Tensor loss = cross_entropy(li, target, smoothing[i]);
    loss.backward();
    std::string at = " with label smoothing " + std::to_string(smoothing[i]);
    expect_close(loss, ref["out_" + std::to_string(i)], kTorchTol, "loss" + at);
    expect_close(li.grad(), ref["grad_logits_" + std::to_string(i)], kTorchTol, "grad" + at);
  }
}

TEST(CrossEntropy, NamesAnOutOfRangeTarget) {
  Tensor logits = zeros({3, 4});
  Tensor target = from_vector({1, 4, 0}, {3}, DType::kI64);
  try {
    cross_entropy(logits, target);
    FAIL() << "expected a ValueError";
  } catch (const ValueError& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("target 4 at position 1"), std::string::npos) << msg;
    EXPECT_NE(msg.find("4 classes"), std::string::npos) << msg;
  }
  EXPECT_THROW(cross_entropy(logits, from_vector({-1, 0, 0}, {3}, DType::kI64)), ValueError);
  EXPECT_THROW(cross_entropy(logits, from_vector({1, 0}, {2}, DType::kI64)), ShapeError);
  EXPECT_THROW(cross_entropy(logits, zeros({3})), TypeError);
}

TEST(MseLoss, GradientsMatchFiniteDifferencesForBothArguments) {
  Generator g(11);
  expect_gradcheck([](const std::vector<Tensor>& in) { return mse_loss(in[0], in[1]); },
                   {randn({4, 5}, g, DType::kF64), randn({4, 5}, g, DType::kF64)});
  expect_gradcheck([](const std::vector<Tensor>& in) { return mse_loss(in[0], in[1]); },
                   {randn({4, 5}, g, DType::kF64), randn({5}, g, DType::kF64)});
}

TEST(MseLoss, MatchesPytorch) {
  TANDEM_SKIP_WITHOUT_TORCH();
  Generator g(12);
  Tensor a = randn({33, 17}, g), b = randn({33, 17}, g);
  auto ref = run_torch("mse_loss", {{"input", a}, {"target", b}});
  a.set_requires_grad(true);
  b.set_requires_grad(true);
  Tensor loss = mse_loss(a, b);
  loss.backward();
  expect_close(loss, ref["out"], kTorchTol, "loss");
  expect_close(a.grad(), ref["grad_input"], kTorchTol, "grad input");
  expect_close(b.grad(), ref["grad_target"], kTorchTol, "grad target");
}

TEST(Gelu, MatchesPytorch) {
  TANDEM_SKIP_WITHOUT_TORCH();
  Generator g(13);
  Tensor x = mul(randn({1000}, g), 3.0).detach(), gy = randn({1000}, g);
  auto ref = run_torch("gelu", {{"x", x}, {"grad_out", gy}});
  x.set_requires_grad(true);
  Tensor y = gelu(x);
  y.backward(gy);
  expect_close(y, ref["out"], kTorchTol, "output");
  expect_close(x.grad(), ref["grad_x"], kTorchTol, "grad");
}

// ------------------------------------------------------------------ dropout
TEST(DropoutOp, MaskFollowsTheDocumentedPhiloxFormula) {
  DropoutKey key{77, 5, 3};
  const double p = 0.3;
  Tensor x = ones({4, 3, 5}, DType::kF64);
  std::vector<double> y = dropout(x, p, true, key).to_vector();
  const int64_t per_sample = 15;
  for (int64_t n = 0; n < 4; ++n) {
    for (int64_t j = 0; j < per_sample; ++j) {
      uint64_t idx = static_cast<uint64_t>((key.first_sample + n) * per_sample + j);
      uint32_t word = philox4x32(key.seed, key.stream, idx / 4)[idx % 4];
      bool kept = static_cast<double>(uint_to_unit_float(word)) >= p;
      EXPECT_DOUBLE_EQ(y[n * per_sample + j], kept ? 1.0 / (1.0 - p) : 0.0)
          << "row " << n << " element " << j;
    }
  }
}

TEST(DropoutOp, MaskDependsOnlyOnTheGlobalSampleIndex) {
  Generator g(14);
  Tensor x = randn({8, 6, 3}, g);
  DropoutKey whole{9, 2, 0}, tail{9, 2, 4};
  Tensor all = dropout(x, 0.5, true, whole);
  Tensor part = dropout(x.slice(0, 4, 8), 0.5, true, tail);
  EXPECT_EQ(all.slice(0, 4, 8).to_vector(), part.to_vector());
  // A different stream gives a different mask.
  EXPECT_NE(dropout(x, 0.5, true, DropoutKey{9, 3, 0}).to_vector(), all.to_vector());
}

TEST(DropoutOp, KeepsAboutOneMinusPAndScalesKeptValues) {
  const double p = 0.3;
  Tensor x = full({1000, 1000}, 2.0);
  std::vector<double> y = dropout(x, p, true, DropoutKey{1, 0, 0}).to_vector();
  int64_t kept = 0;
  for (double v : y) {
    if (v != 0.0) {
      ++kept;
      EXPECT_FLOAT_EQ(v, 2.0 / 0.7);
    }
  }
  // 1e6 Bernoulli(0.7) draws: standard deviation ~ 4.6e-4.
  EXPECT_NEAR(static_cast<double>(kept) / 1e6, 1.0 - p, 3e-3);
}

TEST(DropoutOp, IsIdentityInEvalModeOrWithZeroProbability) {
  Generator g(15);
  Tensor x = randn({5, 4}, g);
  EXPECT_EQ(dropout(x, 0.5, false, {}).to_vector(), x.to_vector());
  EXPECT_EQ(dropout(x, 0.0, true, {}).to_vector(), x.to_vector());
  for (double v : dropout(x, 1.0, true, {}).to_vector()) EXPECT_EQ(v, 0.0);
  EXPECT_THROW(dropout(x, 1.5, true, {}), ValueError);
}

TEST(DropoutOp, BackwardAppliesTheSameMaskAndScale) {
  Generator g(16);
  DropoutKey key{3, 1, 10};
  expect_gradcheck([&](const std::vector<Tensor>& in) { return dropout(in[0], 0.4, true, key); },
                   {randn({6, 7}, g, DType::kF64)});
  Tensor x = randn({6, 7}, g, DType::kF64).set_requires_grad(true);
  Tensor y = dropout(x, 0.4, true, key);
  y.backward(ones({6, 7}, DType::kF64));
  std::vector<double> yv = y.to_vector(), xv = x.to_vector(), gv = x.grad().to_vector();
  for (size_t i = 0; i < yv.size(); ++i)
    EXPECT_DOUBLE_EQ(gv[i], yv[i] == 0.0 ? 0.0 : yv[i] / xv[i]);
}

// ------------------------------------------------------------------ cat and indexing
TEST(Cat, JoinsAlongAnyDimAndSplitsTheGradient) {
  Tensor a = arange(0, 6).view({2, 3}), b = arange(6, 10).view({2, 2});
  EXPECT_EQ(cat({a, b}, 1).to_vector(), (std::vector<double>{0, 1, 2, 6, 7, 3, 4, 5, 8, 9}));
  EXPECT_EQ(cat({a, a.slice(0, 1, 2)}, 0).shape(), (Shape{3, 3}));
  EXPECT_EQ(cat({a.t(), b}, 0).to_vector(), (std::vector<double>{0, 3, 1, 4, 2, 5, 6, 7, 8, 9}));
  Generator g(17);
  for (int64_t dim : {0, 1, -1}) {
    expect_gradcheck(
        [dim](const std::vector<Tensor>& in) {
          return cat({in[0], in[1], in[2]}, dim);
        },
        {randn({2, 3, 4}, g, DType::kF64), randn({2, 3, 4}, g, DType::kF64),
         randn({2, 3, 4}, g, DType::kF64)});
  }
  Tensor fixed = randn({2, 2}, g, DType::kF64);
  expect_gradcheck(
      [&](const std::vector<Tensor>& in) {
        return cat({fixed, in[0]}, 0);
      },
      {randn({3, 2}, g, DType::kF64)});
  EXPECT_THROW(cat({a, b}, 0), ShapeError);
  EXPECT_THROW(cat({a, a.to(DType::kF64)}, 0), TypeError);
}

TEST(IndexSelect, GathersRowsAndScatterAddsRepeatedIndices) {
  Tensor x = arange(0, 12).view({3, 4});
  Tensor idx = from_vector({2, 0, 2}, {3}, DType::kI32);
  EXPECT_EQ(index_select(x, 0, idx).to_vector(),
            (std::vector<double>{8, 9, 10, 11, 0, 1, 2, 3, 8, 9, 10, 11}));
  EXPECT_EQ(index_select(x, 1, idx).to_vector(),
            (std::vector<double>{2, 0, 2, 6, 4, 6, 10, 8, 10}));
  Tensor xg = ones({3, 4}, DType::kF64).set_requires_grad(true);
  index_select(xg, 0, idx).backward(ones({3, 4}, DType::kF64));
  EXPECT_EQ(xg.grad().to_vector(), (std::vector<double>{1, 1, 1, 1, 0, 0, 0, 0, 2, 2, 2, 2}));
  Generator g(18);
  Tensor idx64 = from_vector({1, 1, 3, 0, 1}, {5}, DType::kI64);
  for (int64_t dim : {0, 1, 2}) {
    expect_gradcheck([&](const std::vector<Tensor>& in) { return index_select(in[0], dim, idx64); },
                     {randn({4, 4, 4}, g, DType::kF64)});
  }
}

TEST(IndexSelect, LargeGatherAndScatterMatchPlainLoops) {
  Generator g(20);
  const int64_t rows = 300, cols = 200, k = 500;
  Tensor x = randn({rows, cols}, g, DType::kF64).set_requires_grad(true);
  std::vector<double> iv(k);
  for (int64_t j = 0; j < k; ++j) iv[j] = static_cast<double>((j * j + 7 * j) % rows);  // repeats
  Tensor idx = from_vector(iv, {k}, DType::kI64);
  Tensor gy = randn({k, cols}, g, DType::kF64);
  Tensor y = index_select(x, 0, idx);
  y.backward(gy);
  std::vector<double> xv = x.to_vector(), yv = y.to_vector(), gyv = gy.to_vector();
  std::vector<double> expect_gx(rows * cols, 0.0);
  for (int64_t j = 0; j < k; ++j) {
    const int64_t r = static_cast<int64_t>(iv[j]);
    for (int64_t c = 0; c < cols; ++c) {
      ASSERT_EQ(yv[j * cols + c], xv[r * cols + c]);
      expect_gx[r * cols + c] += gyv[j * cols + c];
    }
  }
  std::vector<double> gx = x.grad().to_vector();
  for (size_t i = 0; i < gx.size(); ++i) ASSERT_NEAR(gx[i], expect_gx[i], 1e-12) << "element " << i;
  // Along dim 1: many outer rows, split over threads.
  Tensor idx1 = from_vector({5, 5, 199, 0}, {4}, DType::kI32);
  Tensor x1 = randn({rows, cols}, g, DType::kF64).set_requires_grad(true);
  index_select(x1, 1, idx1).backward(ones({rows, 4}, DType::kF64));
  std::vector<double> g1 = x1.grad().to_vector();
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const double want = c == 5 ? 2.0 : (c == 199 || c == 0 ? 1.0 : 0.0);
      ASSERT_EQ(g1[r * cols + c], want) << "row " << r << " col " << c;
    }
  }
}

TEST(Cat, LargeInputsLandInTheRightPlaces) {
  Tensor a = arange(0, 100000).view({1000, 100}), b = arange(0, 50000).view({1000, 50});
  std::vector<double> y = cat({a, b}, 1).to_vector();
  ASSERT_EQ(y.size(), 150000u);
  for (int64_t r = 0; r < 1000; r += 37) {
    for (int64_t c = 0; c < 150; ++c) {
      const double want = c < 100 ? r * 100 + c : r * 50 + (c - 100);
      ASSERT_EQ(y[r * 150 + c], want) << "row " << r << " col " << c;
    }
  }
}

TEST(IndexSelect, NamesAnOutOfRangeIndex) {
  Tensor x = zeros({3, 4});
  try {
    index_select(x, 1, from_vector({0, 4}, {2}, DType::kI64));
    FAIL() << "expected a ShapeError";
  } catch (const ShapeError& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("index 4 at position 1"), std::string::npos) << msg;
    EXPECT_NE(msg.find("size 4"), std::string::npos) << msg;
  }
  EXPECT_THROW(index_select(x, 0, from_vector({-1}, {1}, DType::kI64)), ShapeError);
  EXPECT_THROW(index_select(x, 0, zeros({1})), TypeError);
}

TEST(Index, TakesAMultiDimensionalIndexAlongDimZero) {
  Tensor x = arange(0, 10).view({5, 2});
  Tensor idx = from_vector({4, 0, -1, 1}, {2, 2}, DType::kI64);
  Tensor y = index(x, idx);
  EXPECT_EQ(y.shape(), (Shape{2, 2, 2}));
  EXPECT_EQ(y.to_vector(), (std::vector<double>{8, 9, 0, 1, 8, 9, 2, 3}));
  EXPECT_EQ(idx.to_vector(),
            (std::vector<double>{4, 0, -1, 1}));  // the caller's index is untouched
  Generator g(19);
  expect_gradcheck([&](const std::vector<Tensor>& in) { return index(in[0], idx); },
                   {randn({5, 3}, g, DType::kF64)});
  EXPECT_THROW(index(x, from_vector({5}, {1}, DType::kI64)), ShapeError);
}

}  // namespace
}  // namespace tandem
