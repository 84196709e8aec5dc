// Every op of the core on CUDA against the CPU result: forward values and, for differentiable
// ops, the gradients of a weighted sum of the output (label gpu; skipped without a device).
#include <gtest/gtest.h>

#include <functional>

#include "core/autograd/grad_mode.h"
#include "core/backends/autocast.h"
#include "tests/gpu/gpu_test_util.h"

namespace tandem {
namespace {

using gpu_test::expect_matches_cpu;
using gpu_test::gpu;
using gpu_test::uniform;

using Fn = std::function<Tensor(const std::vector<Tensor>&)>;

// Runs fn on CPU copies and on CUDA copies of `inputs`; compares outputs, then backpropagates
// sum(out * w) with the same random w and compares every input's gradient.
void check_op(const std::string& name, const std::vector<Tensor>& inputs, const Fn& fn,
              bool differentiable = true) {
  std::vector<Tensor> cpu_in, gpu_in;
  for (const Tensor& t : inputs) {
    Tensor c = t.detach().clone();
    Tensor g = t.detach().to(gpu());
    if (differentiable && is_floating(t.dtype())) {
      c.set_requires_grad(true);
      g.set_requires_grad(true);
    }
    cpu_in.push_back(c);
    gpu_in.push_back(g);
  }
  Tensor out_cpu = fn(cpu_in), out_gpu = fn(gpu_in);
  expect_matches_cpu(out_gpu, out_cpu, name);
  if (!differentiable || !out_cpu.requires_grad()) return;
  Tensor w = uniform(out_cpu.shape(), -1.0, 1.0, 99, out_cpu.dtype());
  sum(mul(out_cpu, w)).backward();
  sum(mul(out_gpu, w.to(gpu()))).backward();
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!cpu_in[i].requires_grad()) continue;
    ASSERT_TRUE(gpu_in[i].grad().defined()) << name << ": input " << i << " has no cuda grad";
    expect_matches_cpu(gpu_in[i].grad(), cpu_in[i].grad(),
                       name + " grad of input " + std::to_string(i));
  }
}

class CudaOps : public ::testing::TestWithParam<DType> {
 protected:
  void SetUp() override { TANDEM_REQUIRE_CUDA(); }
  DType dt() const { return GetParam(); }
  Tensor u(const Shape& s, uint64_t seed, double lo = -2.0, double hi = 2.0) {
    return uniform(s, lo, hi, seed, dt());
  }
};

TEST_P(CudaOps, BinaryOpsWithBroadcastingMatchCpu) {
  Tensor a = u({4, 3, 5}, 1), b = u({3, 1}, 2), c = u({4, 3, 5}, 3, 0.5, 2.0);
  check_op("add", {a, b}, [](const auto& x) { return add(x[0], x[1]); });
  check_op("sub", {a, b}, [](const auto& x) { return sub(x[0], x[1]); });
  check_op("mul", {a, c}, [](const auto& x) { return mul(x[0], x[1]); });
  check_op("div", {a, c}, [](const auto& x) { return div(x[0], x[1]); });
  check_op("maximum", {a, b}, [](const auto& x) { return maximum(x[0], x[1]); });
  check_op("pow tensor", {c, u({5}, 4, 0.5, 1.5)}, [](const auto& x) { return pow(x[0], x[1]); });
  check_op("add scalar", {a}, [](const auto& x) { return add(x[0], 0.75); });
  check_op("mul scalar", {a}, [](const auto& x) { return mul(x[0], -1.5); });
  check_op("transposed operand", {u({5, 4}, 5), u({4, 5}, 6)},
           [](const auto& x) { return add(x[0].t(), x[1]); });
}

TEST_P(CudaOps, UnaryOpsAndActivationsMatchCpu) {
  Tensor a = u({7, 33}, 11), pos = u({7, 33}, 12, 0.1, 3.0);
  check_op("neg", {a}, [](const auto& x) { return neg(x[0]); });
  check_op("exp", {a}, [](const auto& x) { return exp(x[0]); });
  check_op("log", {pos}, [](const auto& x) { return log(x[0]); });
  check_op("sqrt", {pos}, [](const auto& x) { return sqrt(x[0]); });
  check_op("abs", {a}, [](const auto& x) { return abs(x[0]); });
  check_op("relu", {a}, [](const auto& x) { return relu(x[0]); });
  check_op("gelu", {a}, [](const auto& x) { return gelu(x[0]); });
  check_op("tanh", {a}, [](const auto& x) { return tanh(x[0]); });
  check_op("sigmoid", {a}, [](const auto& x) { return sigmoid(x[0]); });
  check_op("leaky_relu", {a}, [](const auto& x) { return leaky_relu(x[0], 0.2); });
  check_op("pow scalar", {pos}, [](const auto& x) { return pow(x[0], 2.5); });
}

TEST_P(CudaOps, ComparisonsAndWhereMatchCpu) {
  Tensor a = u({6, 8}, 21), b = u({8}, 22);
  check_op(
      "lt", {a, b}, [](const auto& x) { return lt(x[0], x[1]); }, false);
  check_op(
      "ge", {a, b}, [](const auto& x) { return ge(x[0], x[1]); }, false);
  check_op(
      "eq", {a, a}, [](const auto& x) { return eq(x[0], x[1]); }, false);
  check_op("where", {a, b}, [](const auto& x) { return where(gt(x[0], x[1]), x[0], x[1]); });
}

TEST_P(CudaOps, ReductionsMatchCpu) {
  Tensor a = u({5, 6, 7}, 31);
  check_op("sum all", {a}, [](const auto& x) { return sum(x[0]); });
  check_op("sum dim 0 (bias layout)", {a}, [](const auto& x) { return sum(x[0], {0}); });
  check_op("sum dims 0,2", {a}, [](const auto& x) { return sum(x[0], {0, 2}, true); });
  check_op("sum last", {a}, [](const auto& x) { return sum(x[0], {-1}); });
  check_op("mean dim 1", {a}, [](const auto& x) { return mean(x[0], {1}); });
  check_op("max dim 1", {a}, [](const auto& x) { return max(x[0], 1).first; });
  check_op(
      "argmax", {a}, [](const auto& x) { return argmax(x[0], 2); }, false);
  check_op("sum of a large vector", {u({1 << 20}, 32)}, [](const auto& x) { return sum(x[0]); });
}

TEST_P(CudaOps, MatmulAndLinearMatchCpu) {
  check_op("matmul 2-d", {u({17, 33}, 41), u({33, 9}, 42)},
           [](const auto& x) { return matmul(x[0], x[1]); });
  check_op("matmul transposed views", {u({33, 17}, 43), u({9, 33}, 44)},
           [](const auto& x) { return matmul(x[0].t(), x[1].t()); });
  check_op("matmul batched broadcast", {u({3, 5, 4}, 45), u({4, 6}, 46)},
           [](const auto& x) { return matmul(x[0], x[1]); });
  check_op("matmul vector", {u({8}, 47), u({8, 3}, 48)},
           [](const auto& x) { return matmul(x[0], x[1]); });
  check_op("linear", {u({6, 10}, 49), u({4, 10}, 50), u({4}, 51)},
           [](const auto& x) { return linear(x[0], x[1], x[2]); });
}

TEST_P(CudaOps, SoftmaxAndLossesMatchCpu) {
  Tensor logits = u({9, 13}, 61, -4.0, 4.0);
  check_op("softmax", {logits}, [](const auto& x) { return softmax(x[0], -1); });
  check_op("log_softmax", {logits}, [](const auto& x) { return log_softmax(x[0], 1); });
  check_op("softmax dim 0", {logits}, [](const auto& x) { return softmax(x[0], 0); });
  Tensor target = from_vector({0, 3, 12, 5, 5, 1, 7, 11, 2}, {9}, DType::kI64);
  Tensor target_gpu = target.to(gpu());
  for (double ls : {0.0, 0.1}) {
    check_op("cross_entropy ls=" + std::to_string(ls), {logits}, [&](const auto& x) {
      return cross_entropy(x[0], x[0].is_cuda() ? target_gpu : target, ls);
    });
  }
  check_op("mse_loss", {logits, u({9, 13}, 62)},
           [](const auto& x) { return mse_loss(x[0], x[1]); });
  check_op("cat dim 1", {logits, u({9, 4}, 63)}, [](const auto& x) {
    return cat({x[0], x[1]}, 1);
  });
  Tensor rows = from_vector({4, 0, 4, -1}, {4}, DType::kI64);  // repeats: the backward adds
  check_op("index (negative, repeated)", {logits},
           [&](const auto& x) { return index(x[0], rows); });
  Tensor cols = from_vector({12, 3, 3}, {3}, DType::kI64);
  check_op("index_select dim 1 (device index)", {logits}, [&](const auto& x) {
    return index_select(x[0], 1, x[0].is_cuda() ? cols.to(gpu()) : cols);
  });
}

TEST_P(CudaOps, ConvolutionPoolingAndBatchNormMatchCpu) {
  Tensor x = u({2, 4, 9, 9}, 81, -1.0, 1.0);
  Conv2dOptions co;
  co.stride_h = co.stride_w = 2;
  co.pad_h = co.pad_w = 1;
  check_op("conv2d stride 2 pad 1 + bias", {x, u({6, 4, 3, 3}, 82, -0.5, 0.5), u({6}, 83)},
           [&](const auto& in) { return conv2d(in[0], in[1], in[2], co); });
  Conv2dOptions grouped;
  grouped.groups = 2;
  grouped.dilation_h = grouped.dilation_w = 2;
  check_op("conv2d groups 2 dilation 2, no bias", {x, u({4, 2, 3, 3}, 84, -0.5, 0.5)},
           [&](const auto& in) { return conv2d(in[0], in[1], Tensor(), grouped); });
  Pool2dOptions po;
  po.kernel_h = po.kernel_w = 3;
  po.stride_h = po.stride_w = 2;
  po.pad_h = po.pad_w = 1;
  check_op("max_pool2d 3x3 s2 p1", {x}, [&](const auto& in) { return max_pool2d(in[0], po); });
  check_op("avg_pool2d 3x3 s2 p1", {x}, [&](const auto& in) { return avg_pool2d(in[0], po); });
  Pool2dOptions excl = po;
  excl.count_include_pad = false;
  check_op("avg_pool2d without padding in the count", {x},
           [&](const auto& in) { return avg_pool2d(in[0], excl); });
  check_op("adaptive_avg_pool2d global", {x},
           [](const auto& in) { return adaptive_avg_pool2d(in[0], 1, 1); });
  // Batch norm in training mode: output, gradients, and the running statistics it updates.
  Tensor rm_cpu = zeros({4}, dt()), rv_cpu = ones({4}, dt());
  Tensor rm_gpu = rm_cpu.to(gpu()), rv_gpu = rv_cpu.to(gpu());
  check_op("batch_norm training", {x, u({4}, 85, 0.5, 1.5), u({4}, 86)}, [&](const auto& in) {
    const bool on_gpu = in[0].is_cuda();
    return batch_norm(in[0], on_gpu ? rm_gpu : rm_cpu, on_gpu ? rv_gpu : rv_cpu, in[1], in[2], true,
                      0.1, 1e-5);
  });
  expect_matches_cpu(rm_gpu, rm_cpu, "batch_norm running_mean");
  expect_matches_cpu(rv_gpu, rv_cpu, "batch_norm running_var");
  Tensor eval_gpu = batch_norm(x.to(gpu()), rm_gpu, rv_gpu, Tensor(), Tensor(), false, 0.1, 1e-5);
  expect_matches_cpu(eval_gpu, batch_norm(x, rm_cpu, rv_cpu, Tensor(), Tensor(), false, 0.1, 1e-5),
                     "batch_norm eval");
}

TEST_P(CudaOps, DropoutDrawsTheCpuMaskBitForBit) {
  Tensor x = u({8, 1001}, 71);  // 1001: rows start mid-counter, so partial counters are exercised
  const DropoutKey key{1234, 56, 17};
  Tensor on_cpu = dropout(x, 0.3, true, key);
  Tensor on_gpu = dropout(x.to(gpu()), 0.3, true, key);
  expect_matches_cpu(on_gpu, on_cpu, "dropout", 0.0);
  check_op("dropout grad", {x}, [&](const auto& in) { return dropout(in[0], 0.5, true, key); });
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CudaOps, ::testing::Values(DType::kF32, DType::kF64),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

TEST(CudaOpsErrors, MixingDevicesNamesBothDevices) {
  TANDEM_REQUIRE_CUDA();
  Tensor a = ones({3, 3}).to(gpu()), b = ones({3, 3});
  try {
    matmul(a, b);
    FAIL() << "matmul of a cuda and a cpu tensor did not throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cuda:0"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("cpu"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace tandem

namespace tandem {
namespace {

// bf16/fp16 autocast: linear and conv2d on f32 CUDA tensors compute in the low dtype and return
// f32; forward and the f32 gradients stay within the low dtype's rounding of the CPU's f32.
TEST(CudaAutocast, LowPrecisionLinearAndConvFollowTheF32Cpu) {
  TANDEM_REQUIRE_CUDA();
  struct Reset {
    ~Reset() { set_autocast_dtype(DType::kF32); }
  } reset;
  for (DType lo : {DType::kBF16, DType::kF16}) {
    const double tol = lo == DType::kBF16 ? 3e-2 : 5e-3;
    Tensor x = uniform({6, 4, 8, 8}, -1.0, 1.0, 91), w = uniform({5, 4, 3, 3}, -0.3, 0.3, 92);
    Tensor b = uniform({5}, -1.0, 1.0, 93);
    Tensor lx = uniform({7, 40}, -1.0, 1.0, 94), lw = uniform({3, 40}, -0.3, 0.3, 95);
    std::vector<Tensor> cpu{x, w, b, lx, lw}, dev;
    for (Tensor& t : cpu) {
      t = t.clone();
      t.set_requires_grad(true);
      Tensor d = t.detach().to(gpu());
      d.set_requires_grad(true);
      dev.push_back(d);
    }
    auto run = [](const std::vector<Tensor>& in) {
      Tensor c = conv2d(in[0], in[1], in[2], Conv2dOptions{});
      Tensor l = linear(in[3], in[4], Tensor());
      return add(sum(mul(c, c)), sum(mul(l, l)));
    };
    set_autocast_dtype(DType::kF32);
    Tensor lc = run(cpu);
    set_autocast_dtype(lo);
    Tensor conv_dev = conv2d(dev[0], dev[1], dev[2], Conv2dOptions{});
    EXPECT_EQ(conv_dev.dtype(), DType::kF32) << "autocast output is f32";
    Tensor lg = run(dev);
    const std::string name = dtype_name(lo);
    EXPECT_NEAR(lg.item(), lc.item(), tol * std::abs(lc.item())) << name;
    lc.backward();
    lg.backward();
    for (size_t i = 0; i < cpu.size(); ++i) {
      ASSERT_TRUE(dev[i].grad().defined()) << name << " input " << i;
      EXPECT_EQ(dev[i].grad().dtype(), DType::kF32) << name << " master gradient stays f32";
      expect_matches_cpu(dev[i].grad(), cpu[i].grad(), name + " grad " + std::to_string(i), tol);
    }
  }
}

}  // namespace
}  // namespace tandem
