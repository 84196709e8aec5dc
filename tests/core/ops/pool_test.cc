// Pooling: max, average and adaptive average against f64 finite differences and against PyTorch
// in f32 (forward and input gradient), including padding, ceil_mode and count_include_pad, and
// the errors bad shapes raise.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <functional>
#include <string>

#include "core/ops/ops.h"
#include "core/random/philox.h"
#include "tests/support/test_support.h"

namespace tandem {
namespace {

using testing::expect_close;
using testing::expect_gradcheck;
using testing::run_torch;

Pool2dOptions pool_opts(int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph = 0,
                        int64_t pw = 0, bool ceil_mode = false, bool count_include_pad = true) {
  Pool2dOptions o;
  o.kernel_h = kh;
  o.kernel_w = kw;
  o.stride_h = sh;
  o.stride_w = sw;
  o.pad_h = ph;
  o.pad_w = pw;
  o.ceil_mode = ceil_mode;
  o.count_include_pad = count_include_pad;
  return o;
}

struct PoolCase {
  std::string name;
  int64_t h, w;
  Pool2dOptions opt;
};

std::vector<PoolCase> pool_cases() {
  return {
      {"2x2 stride 2", 8, 6, pool_opts(2, 2, 2, 2)},
      {"2x2 stride 2 odd input", 7, 5, pool_opts(2, 2, 2, 2)},
      {"2x2 stride 2 wide rows", 5, 37, pool_opts(2, 2, 2, 2)},  // f32: 8-window vectors + tail
      {"3x3 stride 2 padding 1", 7, 8, pool_opts(3, 3, 2, 2, 1, 1)},
      {"ceil mode", 7, 6, pool_opts(2, 2, 2, 2, 0, 0, true)},
      {"ceil mode with padding", 8, 7, pool_opts(3, 3, 2, 2, 1, 1, true)},
      {"non-square overlapping", 6, 9, pool_opts(3, 2, 1, 2, 1, 0)},
      {"padding excluded from the count", 7, 7, pool_opts(3, 3, 2, 2, 1, 1, true, false)},
  };
}

std::string pool_json(const Pool2dOptions& o) {
  auto b = [](bool v) { return std::string(v ? "true" : "false"); };
  return "{\"kernel_h\": " + std::to_string(o.kernel_h) +
         ", \"kernel_w\": " + std::to_string(o.kernel_w) +
         ", \"stride_h\": " + std::to_string(o.stride_h) +
         ", \"stride_w\": " + std::to_string(o.stride_w) +
         ", \"pad_h\": " + std::to_string(o.pad_h) + ", \"pad_w\": " + std::to_string(o.pad_w) +
         ", \"ceil_mode\": " + b(o.ceil_mode) +
         ", \"count_include_pad\": " + b(o.count_include_pad) + "}";
}

// Distinct values 0.01 apart in random order: no ties for max pooling, even after a finite-
// difference nudge.
Tensor distinct_values(const Shape& shape, uint64_t seed, DType dtype) {
  Generator gen(seed);
  std::vector<int64_t> perm = randperm(shape_numel(shape), gen);
  std::vector<double> v(perm.size());
  for (size_t i = 0; i < v.size(); ++i) v[i] = 0.01 * static_cast<double>(perm[i]) - 1.0;
  return from_vector(v, shape, dtype);
}

TEST(Pool2dOp, MaxPoolGradientMatchesFiniteDifferences) {
  for (const PoolCase& c : pool_cases()) {
    SCOPED_TRACE(c.name);
    Pool2dOptions opt = c.opt;
    expect_gradcheck([opt](const std::vector<Tensor>& in) { return max_pool2d(in[0], opt); },
                     {distinct_values({2, 3, c.h, c.w}, 1, DType::kF64)});
  }
}

TEST(Pool2dOp, AvgPoolGradientMatchesFiniteDifferences) {
  for (const PoolCase& c : pool_cases()) {
    for (bool include_pad : {true, false}) {
      SCOPED_TRACE(c.name + (include_pad ? " counting padding" : " not counting padding"));
      Pool2dOptions opt = c.opt;
      opt.count_include_pad = include_pad;
      Generator gen(2);
      expect_gradcheck([opt](const std::vector<Tensor>& in) { return avg_pool2d(in[0], opt); },
                       {randn({2, 3, c.h, c.w}, gen, DType::kF64)});
    }
  }
}

TEST(Pool2dOp, AdaptiveAvgPoolGradientMatchesFiniteDifferences) {
  // Overlapping bins (7 -> 3, 5 -> 4), shrinking, identity, global and enlarging sizes.
  for (auto [h, w, oh, ow] : std::vector<std::array<int64_t, 4>>{
           {7, 5, 3, 4}, {8, 8, 2, 2}, {4, 6, 4, 6}, {7, 7, 1, 1}, {3, 2, 5, 3}}) {
    SCOPED_TRACE(std::to_string(h) + "x" + std::to_string(w) + " -> " + std::to_string(oh) + "x" +
                 std::to_string(ow));
    Generator gen(3);
    expect_gradcheck(
        [oh = oh, ow = ow](const std::vector<Tensor>& in) {
          return adaptive_avg_pool2d(in[0], oh, ow);
        },
        {randn({2, 2, h, w}, gen, DType::kF64)});
  }
}

// Many runs of one pooling op in one PyTorch call: run k's tensors are "k/x" and "k/grad_out"
// (see cases_conv.py). Each run's output and input gradient are compared afterwards.
class TorchPoolRuns {
 public:
  void add(const std::string& name, const Tensor& x_in,
           const std::function<Tensor(const Tensor&)>& op, const std::string& args) {
    const std::string prefix = std::to_string(args_.size()) + "/";
    Tensor x = x_in.detach().clone().set_requires_grad(true);
    Tensor out = op(x);
    Tensor gout = randn(out.shape(), gen_);
    out.backward(gout);
    inputs_.emplace_back(prefix + "x", x.detach());
    inputs_.emplace_back(prefix + "grad_out", gout);
    args_.push_back(args);
    runs_.push_back({name, out, x});
  }
  void expect_match(const std::string& case_name) {
    std::string json = "{\"runs\": [";
    for (size_t i = 0; i < args_.size(); ++i) json += (i ? ", " : "") + args_[i];
    auto ref = run_torch(case_name, inputs_, json + "]}");
    for (size_t i = 0; i < runs_.size(); ++i) {
      SCOPED_TRACE(runs_[i].name);
      const std::string prefix = std::to_string(i) + "/";
      expect_close(runs_[i].out, ref[prefix + "out"], 1e-5, "output");
      expect_close(runs_[i].x.grad(), ref[prefix + "grad_x"], 1e-5, "grad x");
    }
  }

 private:
  struct Run {
    std::string name;
    Tensor out, x;
  };
  Generator gen_{21};
  testing::TensorMap inputs_;
  std::vector<std::string> args_;
  std::vector<Run> runs_;
};

TEST(Pool2dOp, MaxPoolMatchesPyTorch) {
  TANDEM_SKIP_WITHOUT_TORCH();
  TorchPoolRuns torch;
  for (const PoolCase& c : pool_cases()) {
    Pool2dOptions opt = c.opt;
    torch.add(
        c.name, distinct_values({3, 4, c.h + 4, c.w + 3}, 5, DType::kF32),
        [opt](const Tensor& x) { return max_pool2d(x, opt); }, pool_json(opt));
  }
  torch.expect_match("max_pool2d");
}

// NaN wins a window, and of two NaNs the later one takes the gradient, as in PyTorch; in both the
// vectorised 2x2 path (first 16 columns) and its scalar tail, and in the generic path.
TEST(Pool2dOp, MaxPoolPropagatesNaNLikePyTorch) {
  TANDEM_SKIP_WITHOUT_TORCH();
  Tensor x = distinct_values({1, 2, 4, 20}, 9, DType::kF32);
  float* p = x.data<float>();
  for (int64_t i : {3, 21, 22, 40, 59, 80 + 18, 80 + 39}) p[i] = NAN;
  TorchPoolRuns torch;
  for (const Pool2dOptions& opt : {pool_opts(2, 2, 2, 2), pool_opts(3, 3, 2, 2, 1, 1)})
    torch.add(
        "nan", x, [opt](const Tensor& t) { return max_pool2d(t, opt); }, pool_json(opt));
  torch.expect_match("max_pool2d");
}

TEST(Pool2dOp, AvgPoolMatchesPyTorch) {
  TANDEM_SKIP_WITHOUT_TORCH();
  TorchPoolRuns torch;
  Generator gen(6);
  for (const PoolCase& c : pool_cases()) {
    for (bool include_pad : {true, false}) {
      Pool2dOptions opt = c.opt;
      opt.count_include_pad = include_pad;
      torch.add(
          c.name + (include_pad ? " counting padding" : " not counting padding"),
          randn({3, 4, c.h + 4, c.w + 3}, gen),
          [opt](const Tensor& x) { return avg_pool2d(x, opt); }, pool_json(opt));
    }
  }
  torch.expect_match("avg_pool2d");
}

TEST(Pool2dOp, AdaptiveAvgPoolMatchesPyTorch) {
  TANDEM_SKIP_WITHOUT_TORCH();
  TorchPoolRuns torch;
  Generator gen(7);
  for (auto [h, w, oh, ow] : std::vector<std::array<int64_t, 4>>{
           {7, 5, 3, 4}, {13, 11, 5, 3}, {7, 7, 1, 1}, {3, 2, 5, 3}}) {
    torch.add(
        std::to_string(h) + "x" + std::to_string(w) + " -> " + std::to_string(oh) + "x" +
            std::to_string(ow),
        randn({2, 5, h, w}, gen),
        [oh = oh, ow = ow](const Tensor& x) { return adaptive_avg_pool2d(x, oh, ow); },
        "{\"out_h\": " + std::to_string(oh) + ", \"out_w\": " + std::to_string(ow) + "}");
  }
  torch.expect_match("adaptive_avg_pool2d");
}

TEST(Pool2dOp, ThreeDimensionalInputIsOneSample) {
  Generator gen(8);
  Tensor x = randn({3, 6, 6}, gen);
  Pool2dOptions opt = pool_opts(3, 3, 2, 2, 1, 1);
  EXPECT_EQ(max_pool2d(x, opt).shape(), (Shape{3, 3, 3}));
  expect_close(max_pool2d(x, opt), max_pool2d(x.unsqueeze(0), opt).squeeze(0), 0.0, "max");
  expect_close(avg_pool2d(x, opt), avg_pool2d(x.unsqueeze(0), opt).squeeze(0), 0.0, "avg");
}

void expect_shape_error(const std::function<void()>& fn, std::vector<std::string> parts) {
  try {
    fn();
    ADD_FAILURE() << "expected a ShapeError";
  } catch (const ShapeError& e) {
    for (const std::string& p : parts)
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << "message: " << e.what();
  }
}

TEST(Pool2dOp, BadShapesThrowShapeErrors) {
  Tensor x = zeros({2, 3, 4, 4});
  expect_shape_error([&] { max_pool2d(x, pool_opts(2, 2, 2, 2, 2, 0)); },
                     {"max_pool2d", "padding (2, 0)", "half the kernel (2, 2)"});
  expect_shape_error([&] { avg_pool2d(x, pool_opts(5, 5, 1, 1)); },
                     {"avg_pool2d", "[2, 3, 4, 4]", "too small", "kernel (5, 5)"});
  expect_shape_error([&] { max_pool2d(zeros({4, 4}), pool_opts(2, 2, 2, 2)); }, {"[4, 4]"});
  expect_shape_error([&] { adaptive_avg_pool2d(x, 0, 2); }, {"adaptive_avg_pool2d", "(0, 2)"});
  EXPECT_THROW(max_pool2d(zeros({1, 1, 4, 4}, DType::kI64), pool_opts(2, 2, 2, 2)), TypeError);
}

}  // namespace
}  // namespace tandem
