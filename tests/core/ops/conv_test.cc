// conv2d: gradients against f64 finite differences, forward and gradients against PyTorch in f32
// over the same configurations (stride, padding, dilation, groups, no bias, non-square kernels,
// the 1x1 fast path), and the errors bad shapes raise.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <map>
#include <string>

#include "core/ops/ops.h"
#include "core/parallel/parallel.h"
#include "core/random/philox.h"
#include "tests/support/test_support.h"

namespace tandem {
namespace {

using testing::expect_close;
using testing::expect_gradcheck;
using testing::run_torch;

Conv2dOptions conv_opts(int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh = 1,
                        int64_t dw = 1, int64_t groups = 1) {
  Conv2dOptions o;
  o.stride_h = sh;
  o.stride_w = sw;
  o.pad_h = ph;
  o.pad_w = pw;
  o.dilation_h = dh;
  o.dilation_w = dw;
  o.groups = groups;
  return o;
}

struct ConvCase {
  std::string name;
  int64_t c, h, w, o, kh, kw;
  Conv2dOptions opt;
  bool bias;
};

// Small enough for element-by-element finite differences; each exercises one feature.
std::vector<ConvCase> conv_cases() {
  return {
      {"plain 3x3", 3, 6, 5, 4, 3, 3, conv_opts(1, 1, 0, 0), true},
      {"stride 2 with padding", 3, 7, 8, 4, 3, 3, conv_opts(2, 2, 1, 1), true},
      {"dilation 2", 2, 7, 7, 3, 3, 3, conv_opts(1, 1, 2, 1, 2, 2), true},
      {"groups 2", 4, 6, 6, 6, 3, 3, conv_opts(1, 1, 1, 1, 1, 1, 2), true},
      {"depthwise", 3, 5, 5, 3, 3, 3, conv_opts(1, 1, 1, 1, 1, 1, 3), true},
      {"no bias", 3, 6, 6, 4, 3, 3, conv_opts(1, 1, 1, 1), false},
      {"non-square kernel and strides", 2, 7, 9, 3, 2, 3, conv_opts(2, 1, 1, 0), true},
      {"pointwise 1x1", 4, 5, 4, 3, 1, 1, conv_opts(1, 1, 0, 0), true},
      {"1x1 stride 2", 4, 6, 5, 3, 1, 1, conv_opts(2, 2, 0, 0), true},
      {"7x7 stride 2 padding 3", 2, 9, 9, 2, 7, 7, conv_opts(2, 2, 3, 3), false},
  };
}

std::string args_json(const Conv2dOptions& o, bool input_grad = true) {
  return "{\"stride_h\": " + std::to_string(o.stride_h) +
         ", \"stride_w\": " + std::to_string(o.stride_w) +
         ", \"pad_h\": " + std::to_string(o.pad_h) + ", \"pad_w\": " + std::to_string(o.pad_w) +
         ", \"dilation_h\": " + std::to_string(o.dilation_h) +
         ", \"dilation_w\": " + std::to_string(o.dilation_w) +
         ", \"groups\": " + std::to_string(o.groups) +
         ", \"input_grad\": " + (input_grad ? "true" : "false") + "}";
}

TEST(Conv2dOp, GradientsMatchFiniteDifferencesInEveryConfiguration) {
  for (const ConvCase& c : conv_cases()) {
    SCOPED_TRACE(c.name);
    Generator gen(11);
    const int64_t n = 3;  // more samples than threads, and not a multiple of 2
    Tensor x = randn({n, c.c, c.h, c.w}, gen, DType::kF64);
    Tensor w = randn({c.o, c.c / c.opt.groups, c.kh, c.kw}, gen, DType::kF64);
    std::vector<Tensor> inputs{x, w};
    if (c.bias) inputs.push_back(randn({c.o}, gen, DType::kF64));
    const Conv2dOptions opt = c.opt;
    expect_gradcheck(
        [opt](const std::vector<Tensor>& in) {
          return conv2d(in[0], in[1], in.size() > 2 ? in[2] : Tensor(), opt);
        },
        inputs);
  }
}

// Many runs in one PyTorch call: run k's tensors are "k/name" (see cases_conv.py).
struct TorchRuns {
  testing::TensorMap inputs;
  std::vector<std::string> args;
  std::string add(const std::string& run_args) {
    args.push_back(run_args);
    return std::to_string(args.size() - 1) + "/";
  }
  std::map<std::string, Tensor> run(const std::string& case_name) const {
    std::string json = "{\"runs\": [";
    for (size_t i = 0; i < args.size(); ++i) json += (i ? ", " : "") + args[i];
    return run_torch(case_name, inputs, json + "]}");
  }
};

// What one conv2d run produced in tandem, to compare with the reference afterwards.
struct ConvRun {
  std::string prefix, name;
  Tensor out, x, w, b;
};

void expect_conv_matches(const std::vector<ConvRun>& runs, std::map<std::string, Tensor>& ref) {
  for (const ConvRun& r : runs) {
    SCOPED_TRACE(r.name);
    expect_close(r.out, ref[r.prefix + "out"], 1e-5, "output");
    if (r.x.requires_grad())
      expect_close(r.x.grad(), ref[r.prefix + "grad_x"], 1e-5, "grad x");
    else
      EXPECT_EQ(ref.count(r.prefix + "grad_x"), 0u);
    expect_close(r.w.grad(), ref[r.prefix + "grad_weight"], 1e-5, "grad weight");
    if (r.b.defined()) expect_close(r.b.grad(), ref[r.prefix + "grad_bias"], 1e-5, "grad bias");
  }
}

// Runs conv2d forward and backward in f32 and queues the same computation for PyTorch.
// gout_scale scales the output gradient (1 / sqrt(terms) makes gradient sums of many terms O(1)).
ConvRun conv_run(TorchRuns& torch, const std::string& name, Tensor x, Tensor w, Tensor b,
                 const Conv2dOptions& opt, Generator& gen, double gout_scale = 1.0) {
  ConvRun r{torch.add(args_json(opt, x.requires_grad())), name, Tensor(), x, w, b};
  r.out = conv2d(x, w, b, opt);
  Tensor gout = mul(randn(r.out.shape(), gen), gout_scale);
  r.out.backward(gout);
  torch.inputs.emplace_back(r.prefix + "x", x.detach());
  torch.inputs.emplace_back(r.prefix + "weight", w.detach());
  if (b.defined()) torch.inputs.emplace_back(r.prefix + "bias", b.detach());
  torch.inputs.emplace_back(r.prefix + "grad_out", gout);
  return r;
}

TEST(Conv2dOp, MatchesPyTorchForwardAndGradientsInF32) {
  TANDEM_SKIP_WITHOUT_TORCH();
  TorchRuns torch;
  std::vector<ConvRun> runs;
  Generator gen(5);
  for (const ConvCase& c : conv_cases()) {
    const int64_t n = 5;
    Tensor x = randn({n, c.c, c.h + 3, c.w + 2}, gen).set_requires_grad(true);
    Tensor w = randn({c.o, c.c / c.opt.groups, c.kh, c.kw}, gen).set_requires_grad(true);
    Tensor b = c.bias ? randn({c.o}, gen).set_requires_grad(true) : Tensor();
    runs.push_back(conv_run(torch, c.name, x, w, b, c.opt, gen));
  }
  auto ref = torch.run("conv2d");
  expect_conv_matches(runs, ref);
}

// The benchmark shapes (simple_cnn's and lenet's layers, fewer samples): many samples per thread,
// so the per-thread partial weight gradients are summed. The first conv of a network gets a data
// batch that needs no gradient. The output gradient is scaled as a mean loss's would be: weight
// and bias gradients sum N*OH*OW terms, and with unit-variance terms their f32 rounding (~1e-5
// absolute for 8192 terms; PyTorch's own f32 kernels are 2-3x worse against f64) would exceed the
// 1e-5 bound on elements that happen to cancel to below 1.
TEST(Conv2dOp, MatchesPyTorchAtTrainingShapes) {
  TANDEM_SKIP_WITHOUT_TORCH();
  struct Layer {
    int64_t n, c, hw, o, k, pad;
    bool input_grad;
  };
  TorchRuns torch;
  std::vector<ConvRun> runs;
  Generator gen(9);
  for (Layer s : {Layer{8, 3, 32, 32, 3, 1, false}, Layer{8, 32, 16, 64, 3, 1, true},
                  Layer{8, 1, 28, 32, 5, 2, false}, Layer{8, 32, 14, 64, 5, 2, true}}) {
    Tensor x = randn({s.n, s.c, s.hw, s.hw}, gen).set_requires_grad(s.input_grad);
    Tensor w = mul(randn({s.o, s.c, s.k, s.k}, gen), 0.1).detach().set_requires_grad(true);
    Tensor b = randn({s.o}, gen).set_requires_grad(true);
    runs.push_back(conv_run(torch, std::to_string(s.c) + "->" + std::to_string(s.o), x, w, b,
                            conv_opts(1, 1, s.pad, s.pad), gen,
                            1.0 / std::sqrt(static_cast<double>(s.n * s.hw * s.hw))));
    if (!s.input_grad) EXPECT_FALSE(x.grad().defined());
  }
  auto ref = torch.run("conv2d");
  expect_conv_matches(runs, ref);
}

TEST(Conv2dOp, NonContiguousInputGivesTheSameResultAsItsCopy) {
  Generator gen(4);
  Tensor base = randn({2, 3, 7, 6}, gen);
  Tensor xt = base.transpose(2, 3);  // (2, 3, 6, 7), not contiguous
  ASSERT_FALSE(xt.is_contiguous());
  Tensor w = randn({4, 3, 3, 3}, gen), b = randn({4}, gen);
  Conv2dOptions opt = conv_opts(1, 2, 1, 0);
  expect_close(conv2d(xt, w, b, opt), conv2d(xt.contiguous(), w, b, opt), 0.0, "output");
}

TEST(Conv2dOp, ThreadCountChangesResultsOnlyByRounding) {
  Generator gen(8);
  Tensor x = randn({7, 4, 10, 10}, gen);
  Tensor w = randn({6, 4, 3, 3}, gen), b = randn({6}, gen);
  Tensor gout = randn({7, 6, 10, 10}, gen);
  auto run = [&](int threads) {
    set_num_threads(threads);
    Tensor xl = x.clone().set_requires_grad(true), wl = w.clone().set_requires_grad(true);
    Tensor out = conv2d(xl, wl, b, conv_opts(1, 1, 1, 1));
    out.backward(gout);
    return std::vector<Tensor>{out, xl.grad(), wl.grad()};
  };
  std::vector<Tensor> one = run(1), all = run(0);
  for (size_t i = 0; i < one.size(); ++i)
    expect_close(all[i], one[i], 1e-6, "tensor " + std::to_string(i));
}

// Runs fn and checks it throws ShapeError whose message contains every one of `parts`.
void expect_shape_error(const std::function<void()>& fn, std::vector<std::string> parts) {
  try {
    fn();
    ADD_FAILURE() << "expected a ShapeError";
  } catch (const ShapeError& e) {
    for (const std::string& p : parts)
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << "message: " << e.what();
  }
}

TEST(Conv2dOp, BadShapesThrowShapeErrorsNamingTheShapes) {
  Tensor x = zeros({2, 3, 8, 8});
  expect_shape_error(
      [&] {
        conv2d(x, zeros({4, 2, 3, 3}), Tensor(), {});
      },
      {"conv2d", "[2, 3, 8, 8]", "[4, 2, 3, 3]", "3 channels"});
  Conv2dOptions g2 = conv_opts(1, 1, 0, 0, 1, 1, 2);
  expect_shape_error(
      [&] {
        conv2d(x, zeros({4, 1, 3, 3}), Tensor(), g2);
      },
      {"conv2d", "groups = 2", "must divide", "(3)"});
  expect_shape_error(
      [&] {
        conv2d(x, zeros({4, 3, 9, 9}), Tensor(), {});
      },
      {"conv2d", "kernel 9x9", "larger than the padded input 8x8"});
  Conv2dOptions dil = conv_opts(1, 1, 0, 0, 4, 4);
  expect_shape_error([&] { conv2d(x, zeros({4, 3, 3, 3}), Tensor(), dil); }, {"kernel 9x9"});
  expect_shape_error(
      [&] {
        conv2d(zeros({3, 8, 8}), zeros({4, 3, 3, 3}), Tensor(), {});
      },
      {"(N, C, H, W)", "[3, 8, 8]"});
  expect_shape_error([&] { conv2d(x, zeros({4, 3, 3, 3}), zeros({5}), {}); }, {"bias", "[5]"});
  EXPECT_THROW(conv2d(x, zeros({4, 3, 3, 3}, DType::kF64), Tensor(), {}), TypeError);
}

}  // namespace
}  // namespace tandem
