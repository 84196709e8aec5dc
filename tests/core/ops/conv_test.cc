// conv2d: gradients against f64 finite differences, forward and gradients against PyTorch in f32
// over the same configurations (stride, padding, dilation, groups, no bias, non-square kernels,
// the 1x1 fast path) through both backends (im2col + GEMM, oneDNN), the backend rule, oneDNN
// inside an OpenMP parallel region, and the errors bad shapes raise.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <functional>
#include <map>
#include <string>

#include "core/ops/conv.h"
#include "core/ops/conv_dnnl.h"
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
    EXPECT_STREQ(conv2d_backend_for(x, w, c.opt), "im2col");  // oneDNN is f32 only
    std::vector<Tensor> inputs = c.bias ? std::vector<Tensor>{x, w, randn({c.o}, gen, DType::kF64)}
                                        : std::vector<Tensor>{x, w};
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

// Every configuration twice: by the rule (im2col: these have 1 to 4 channels per group) and
// forced through oneDNN, against one PyTorch reference call.
TEST(Conv2dOp, MatchesPyTorchForwardAndGradientsInF32OnBothBackends) {
  TANDEM_SKIP_WITHOUT_TORCH();
  TorchRuns torch;
  std::vector<ConvRun> runs;
  Generator gen(5);
  for (ConvBackend backend : {ConvBackend::kAuto, ConvBackend::kOnednn}) {
    ScopedConvBackend scoped(backend);
    const std::string label = backend == ConvBackend::kAuto ? " (rule)" : " (oneDNN)";
    for (const ConvCase& c : conv_cases()) {
      const int64_t n = 5;
      Tensor x = randn({n, c.c, c.h + 3, c.w + 2}, gen).set_requires_grad(true);
      Tensor w = randn({c.o, c.c / c.opt.groups, c.kh, c.kw}, gen).set_requires_grad(true);
      Tensor b = c.bias ? randn({c.o}, gen).set_requires_grad(true) : Tensor();
      EXPECT_STREQ(conv2d_backend_for(x, w, c.opt),
                   backend == ConvBackend::kAuto ? "im2col" : "onednn")
          << c.name;
      runs.push_back(conv_run(torch, c.name + label, x, w, b, c.opt, gen));
    }
  }
  auto ref = torch.run("conv2d");
  expect_conv_matches(runs, ref);
}

// The benchmark shapes (simple_cnn's, lenet's and resnet's layers, fewer samples and pixels), each
// on the backend the rule picks for it (im2col for the 1- and 3-channel first layers, oneDNN for
// the rest; the 1x1 depends on OpenBLAS's kernels), and the 1x1 also forced through oneDNN. Many
// samples per thread, so per-thread partial weight gradients are summed. The first conv of a
// network gets a data batch that needs no gradient. The output gradient is scaled as a mean loss's
// would be: weight and bias gradients sum N*OH*OW terms, and with unit-variance terms their f32
// rounding (~1e-5 absolute for 8192 terms; PyTorch's own f32 kernels are 2-3x worse against f64)
// would exceed the 1e-5 bound on elements that happen to cancel to below 1.
TEST(Conv2dOp, MatchesPyTorchAtTrainingShapes) {
  TANDEM_SKIP_WITHOUT_TORCH();
  struct Layer {
    const char* name;
    int64_t n, c, hw, o, k, stride, pad, groups;
    bool input_grad;
    ConvBackend force;
    const char* backend;
  };
  TorchRuns torch;
  std::vector<ConvRun> runs;
  Generator gen(9);
  const ConvBackend rule = ConvBackend::kAuto;
  const char* pointwise = conv2d_onednn_for_1x1() ? "onednn" : "im2col";
  for (Layer s :
       {Layer{"simple_cnn conv1", 8, 3, 32, 32, 3, 1, 1, 1, false, rule, "im2col"},
        Layer{"simple_cnn conv2", 8, 32, 16, 64, 3, 1, 1, 1, true, rule, "onednn"},
        Layer{"lenet conv1", 8, 1, 28, 32, 5, 1, 2, 1, false, rule, "im2col"},
        Layer{"lenet conv2", 8, 32, 14, 64, 5, 1, 2, 1, true, rule, "onednn"},
        Layer{"resnet 3x3 64->64", 4, 64, 14, 64, 3, 1, 1, 1, true, rule, "onednn"},
        Layer{"resnet 1x1/2 64->128", 4, 64, 14, 128, 1, 2, 0, 1, true, rule, pointwise},
        Layer{"resnet 1x1/2 64->128 on oneDNN", 4, 64, 14, 128, 1, 2, 0, 1, true,
              ConvBackend::kOnednn, "onednn"},
        Layer{"resnext 3x3/2 groups 4", 4, 64, 10, 64, 3, 2, 1, 4, true, rule, "onednn"}}) {
    ScopedConvBackend scoped(s.force);
    Tensor x = randn({s.n, s.c, s.hw, s.hw}, gen).set_requires_grad(s.input_grad);
    Tensor w =
        mul(randn({s.o, s.c / s.groups, s.k, s.k}, gen), 0.1).detach().set_requires_grad(true);
    Tensor b = randn({s.o}, gen).set_requires_grad(true);
    const Conv2dOptions opt = conv_opts(s.stride, s.stride, s.pad, s.pad, 1, 1, s.groups);
    EXPECT_STREQ(conv2d_backend_for(x, w, opt), s.backend) << s.name;
    const int64_t out_hw = (s.hw + 2 * s.pad - s.k) / s.stride + 1;
    runs.push_back(conv_run(torch, s.name, x, w, b, opt, gen,
                            1.0 / std::sqrt(static_cast<double>(s.n * out_hw * out_hw))));
    if (!s.input_grad) {
      EXPECT_FALSE(x.grad().defined()) << s.name;
    }
  }
  auto ref = torch.run("conv2d");
  expect_conv_matches(runs, ref);
}

TEST(Conv2dOp, RuleSendsManyChannelF32ConvolutionsToOnednnAndTheRestToIm2col) {
  auto backend = [](int64_t c, int64_t groups, DType dtype) {
    return std::string(conv2d_backend_for(zeros({2, c, 8, 8}, dtype),
                                          zeros({32, c / groups, 3, 3}, dtype),
                                          conv_opts(1, 1, 1, 1, 1, 1, groups)));
  };
  EXPECT_EQ(backend(1, 1, DType::kF32), "im2col");
  EXPECT_EQ(backend(3, 1, DType::kF32), "im2col");
  EXPECT_EQ(backend(kOnednnMinGroupChannels - 1, 1, DType::kF32), "im2col");
  EXPECT_EQ(backend(kOnednnMinGroupChannels, 1, DType::kF32), "onednn");
  EXPECT_EQ(backend(64, 1, DType::kF32), "onednn");
  EXPECT_EQ(backend(64, 1, DType::kF64), "im2col");   // gradient checks stay on im2col
  EXPECT_EQ(backend(64, 2, DType::kF32), "onednn");   // 32 channels per group
  EXPECT_EQ(backend(32, 32, DType::kF32), "im2col");  // depthwise
  // 1x1: a plain GEMM, on oneDNN only while OpenBLAS runs its AVX2 kernels.
  EXPECT_STREQ(
      conv2d_backend_for(zeros({2, 64, 8, 8}), zeros({32, 64, 1, 1}), conv_opts(2, 2, 0, 0)),
      conv2d_onednn_for_1x1() ? "onednn" : "im2col");
  {
    ScopedConvBackend forced(ConvBackend::kIm2col);
    EXPECT_EQ(backend(64, 1, DType::kF32), "im2col");
    {
      ScopedConvBackend inner(ConvBackend::kOnednn);
      EXPECT_EQ(backend(3, 1, DType::kF32), "onednn");
    }
    EXPECT_EQ(backend(64, 1, DType::kF32), "im2col");
  }
  EXPECT_EQ(backend(64, 1, DType::kF32), "onednn");
  ScopedConvBackend forced(ConvBackend::kOnednn);
  EXPECT_THROW(
      conv2d(zeros({2, 3, 8, 8}, DType::kF64), zeros({4, 3, 3, 3}, DType::kF64), Tensor(), {}),
      Unimplemented);
}

// A training step through the backend the rule picks against the same step forced through the
// other one, at a many-channel shape: the two agree to f32 rounding.
TEST(Conv2dOp, OnednnAndIm2colAgreeOnAManyChannelLayer) {
  Generator gen(12);
  Tensor x = randn({6, 32, 9, 11}, gen);
  Tensor w = mul(randn({48, 32, 3, 3}, gen), 0.1), b = randn({48}, gen);
  Tensor gout = mul(randn({6, 48, 5, 6}, gen), 0.1);
  const Conv2dOptions opt = conv_opts(2, 2, 1, 1);
  ASSERT_STREQ(conv2d_backend_for(x, w, opt), "onednn");
  auto step = [&](ConvBackend backend) {
    ScopedConvBackend scoped(backend);
    Tensor xl = x.clone().set_requires_grad(true), wl = w.clone().set_requires_grad(true),
           bl = b.clone().set_requires_grad(true);
    Tensor out = conv2d(xl, wl, bl, opt);
    out.backward(gout);
    return std::vector<Tensor>{out, xl.grad(), wl.grad(), bl.grad()};
  };
  std::vector<Tensor> onednn = step(ConvBackend::kAuto), im2col = step(ConvBackend::kIm2col);
  const char* names[] = {"output", "grad x", "grad weight", "grad bias"};
  for (size_t i = 0; i < onednn.size(); ++i) expect_close(onednn[i], im2col[i], 1e-5, names[i]);
}

TEST(Conv2dOp, OnednnBuildsAProblemOnceAndReusesIt) {
  Generator gen(13);
  Tensor x = randn({3, 16, 7, 5}, gen), w = randn({24, 16, 3, 1}, gen);
  const Conv2dOptions opt = conv_opts(1, 1, 1, 0, 2, 1);  // a shape no other test uses
  ASSERT_STREQ(conv2d_backend_for(x, w, opt), "onednn");
  Tensor first = conv2d(x, w, Tensor(), opt);
  const int64_t cached = onednn::cached_problems();
  EXPECT_GE(cached, 1);
  Tensor again = conv2d(x, w, Tensor(), opt);
  EXPECT_EQ(onednn::cached_problems(), cached);
  expect_close(again, first, 0.0, "the same problem twice");
}

// The mirrored strategy runs one replica per OpenMP thread. Inside the parallel region oneDNN runs
// single-threaded on each; both replicas' steps must match the step taken outside the region.
TEST(Conv2dOp, OnednnInsideAnOpenMpParallelRegionMatchesTheStepOutsideIt) {
  set_num_threads(2);  // so that a plan made for the team would split its work in two
  Generator gen(14);
  Tensor x = randn({5, 32, 12, 12}, gen);
  Tensor w = mul(randn({40, 32, 3, 3}, gen), 0.1), b = randn({40}, gen);
  Tensor gout = mul(randn({5, 40, 12, 12}, gen), 0.1);
  const Conv2dOptions opt = conv_opts(1, 1, 1, 1);
  auto step = [&] {
    Tensor xl = x.clone().set_requires_grad(true), wl = w.clone().set_requires_grad(true),
           bl = b.clone().set_requires_grad(true);
    Tensor out = conv2d(xl, wl, bl, opt);
    out.backward(gout);
    return std::vector<Tensor>{out, xl.grad(), wl.grad(), bl.grad()};
  };
  ASSERT_STREQ(conv2d_backend_for(x, w, opt), "onednn");
  const std::vector<Tensor> outside = step();
  std::vector<std::vector<Tensor>> inside(2);
  std::vector<std::string> backend(2);
#pragma omp parallel num_threads(2)
  {
    const int t = omp_get_thread_num();
    backend[t] = conv2d_backend_for(x, w, opt);
    inside[t] = step();
  }
  set_num_threads(0);
  const char* names[] = {"output", "grad x", "grad weight", "grad bias"};
  for (int t = 0; t < 2; ++t) {
    SCOPED_TRACE("replica " + std::to_string(t));
    EXPECT_EQ(backend[t], "onednn");
    ASSERT_EQ(inside[t].size(), outside.size());
    for (size_t i = 0; i < outside.size(); ++i)
      expect_close(inside[t][i], outside[i], 1e-5, names[i]);
  }
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
