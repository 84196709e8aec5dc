// Layers and a model on CUDA against the CPU: the same initial weights, the same batch, the same
// forward values and parameter gradients (label gpu; skipped without a device).
#include <gtest/gtest.h>

#include "core/nn/layers.h"
#include "core/nn/models.h"
#include "core/nn/random_context.h"
#include "core/ops/ops.h"
#include "tests/gpu/gpu_test_util.h"

namespace tandem {
namespace {

using gpu_test::expect_matches_cpu;
using gpu_test::gpu;
using gpu_test::uniform;

// Builds the module twice from the same seed, moves one copy to the GPU, runs forward and a
// backward of sum(out * w) on both, and compares the outputs and every parameter's gradient.
void check_module(const std::string& what, const std::function<std::shared_ptr<Module>()>& make,
                  const Tensor& x, double tol = -1) {
  auto on_cpu = make(), on_gpu = make();
  on_gpu->to(gpu());
  for (const auto& [n, p] : on_gpu->named_parameters())
    EXPECT_TRUE(p.is_cuda()) << what << " " << n;
  Tensor out_cpu, out_gpu;
  {
    DropoutScope scope(7, 3, 0);
    out_cpu = on_cpu->forward(x);
  }
  {
    DropoutScope scope(7, 3, 0);
    out_gpu = on_gpu->forward(x.to(gpu()));
  }
  expect_matches_cpu(out_gpu, out_cpu, what + " forward", tol);
  Tensor w = uniform(out_cpu.shape(), -1.0, 1.0, 5);
  sum(mul(out_cpu, w)).backward();
  sum(mul(out_gpu, w.to(gpu()))).backward();
  auto pc = on_cpu->named_parameters(), pg = on_gpu->named_parameters();
  ASSERT_EQ(pc.size(), pg.size());
  for (size_t i = 0; i < pc.size(); ++i) {
    ASSERT_TRUE(pg[i].second.grad().defined()) << what << " " << pg[i].first;
    expect_matches_cpu(pg[i].second.grad(), pc[i].second.grad(), what + " grad " + pc[i].first,
                       tol);
  }
}

TEST(CudaLayers, LinearReluFlattenDropoutAndMlpMatchTheCpu) {
  TANDEM_REQUIRE_CUDA();
  Tensor x = uniform({16, 1, 8, 8}, -1.0, 1.0, 1);
  check_module(
      "linear",
      [] {
        Generator gen(3);
        return std::make_shared<Linear>(gen, 64, 10);
      },
      x.reshape({16, 64}));
  check_module(
      "mlp",
      [] {
        Generator gen(4);
        ModelOptions o;
        o.mlp_in_features = 64;
        o.mlp_hidden = {32, 32};
        return make_model("mlp", o, gen);
      },
      x);
}

TEST(CudaLayers, ConvolutionalModelsMatchTheCpu) {
  TANDEM_REQUIRE_CUDA();
  backend_for("test", gpu()).set_allow_tf32(false);
  // simple_cnn: conv, max-pool, linear, dropout 0.5 (the same mask on both devices).
  check_module(
      "simple_cnn",
      [] {
        Generator gen(6);
        return make_model("simple_cnn", ModelOptions{}, gen);
      },
      uniform({4, 3, 32, 32}, -1.0, 1.0, 2), 1e-4);
  check_module(
      "lenet",
      [] {
        Generator gen(7);
        return make_model("lenet", ModelOptions{}, gen);
      },
      uniform({4, 1, 28, 28}, -1.0, 1.0, 3), 1e-4);
  // Conv2d + BatchNorm2d + ReLU + pooling layers one by one.
  check_module(
      "conv2d",
      [] {
        Generator gen(8);
        return std::make_shared<Conv2d>(gen, 3, 8, 3);
      },
      uniform({2, 3, 10, 10}, -1.0, 1.0, 4));
  check_module(
      "batchnorm2d", [] { return std::make_shared<BatchNorm2d>(3); },
      uniform({4, 3, 5, 5}, -1.0, 1.0, 5));
}

}  // namespace
}  // namespace tandem
