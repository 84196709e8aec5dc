// Fused optimizer updates on CUDA against the CPU's, three steps with the same gradients
// (label gpu; skipped without a device).
#include <gtest/gtest.h>

#include <functional>
#include <memory>

#include "core/optim/adam.h"
#include "core/optim/sgd.h"
#include "tests/gpu/gpu_test_util.h"

namespace tandem {
namespace {

using gpu_test::expect_matches_cpu;
using gpu_test::gpu;
using gpu_test::uniform;

using MakeOptimizer = std::function<std::unique_ptr<Optimizer>(NamedTensors)>;

void check_optimizer(const std::string& name, DType dt, const MakeOptimizer& make) {
  // Two parameters, one larger than a fused chunk (65536 elements), one tiny.
  NamedTensors cpu_params{{"w", uniform({300, 257}, -1.0, 1.0, 1, dt)},
                          {"b", uniform({5}, -1.0, 1.0, 2, dt)}};
  NamedTensors gpu_params;
  for (auto& [n, p] : cpu_params) gpu_params.emplace_back(n, p.to(gpu()));
  auto cpu_opt = make(cpu_params), gpu_opt = make(gpu_params);
  for (int step = 0; step < 3; ++step) {
    for (size_t i = 0; i < cpu_params.size(); ++i) {
      Tensor g = uniform(cpu_params[i].second.shape(), -1.0, 1.0, 10 + step * 7 + i, dt);
      cpu_params[i].second.set_grad(g);
      gpu_params[i].second.set_grad(g.to(gpu()));
    }
    cpu_opt->step();
    gpu_opt->step();
  }
  for (size_t i = 0; i < cpu_params.size(); ++i)
    expect_matches_cpu(gpu_params[i].second, cpu_params[i].second,
                       name + " " + dtype_name(dt) + " " + cpu_params[i].first);
}

TEST(CudaOptim, FusedUpdatesMatchTheCpu) {
  TANDEM_REQUIRE_CUDA();
  for (DType dt : {DType::kF32, DType::kF64}) {
    check_optimizer("sgd", dt, [](NamedTensors p) {
      return std::make_unique<Sgd>(std::move(p), SgdOptions{0.1, 0.0, 0.0, false, 0.0});
    });
    check_optimizer("sgd momentum", dt, [](NamedTensors p) {
      return std::make_unique<Sgd>(std::move(p), SgdOptions{0.1, 0.9, 0.1, false, 1e-4});
    });
    check_optimizer("sgd nesterov", dt, [](NamedTensors p) {
      return std::make_unique<Sgd>(std::move(p), SgdOptions{0.05, 0.9, 0.0, true, 5e-4});
    });
    check_optimizer("adam", dt, [](NamedTensors p) {
      AdamOptions o;
      o.lr = 1e-2;
      o.weight_decay = 1e-3;
      return std::make_unique<Adam>(std::move(p), o);
    });
    check_optimizer("adamw", dt, [](NamedTensors p) {
      AdamOptions o;
      o.lr = 1e-2;
      o.weight_decay = 1e-2;
      return std::make_unique<AdamW>(std::move(p), o);
    });
  }
}

}  // namespace
}  // namespace tandem
