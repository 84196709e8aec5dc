// Your own module: a layer tandem does not ship (a residual block with a learned gate), defined
// by subclassing Module, trained with tandem's ops, autograd and optimizer on a toy regression.
//
//   ./own_module
//
// A module registers its parameters (and child modules) in its constructor, from a Generator, so
// its weights are a function of the seed alone; forward() composes ops from core/ops/ops.h, which
// record the autograd graph. Parameter names follow registration ("block.gate", "block.fc.weight")
// and are what checkpoints and PyTorch's state_dict use.
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>

#include "core/nn/layers.h"
#include "core/ops/ops.h"
#include "core/optim/adam.h"
#include "core/random/philox.h"

using namespace tandem;

// y = x + sigmoid(gate) * relu(fc(x)).
class GatedResidual : public Module {
 public:
  GatedResidual(Generator& gen, int64_t width) {
    fc_ = register_module("fc", std::make_shared<Linear>(gen, width, width));
    gate_ = register_parameter("gate", full({1}, -1.0, DType::kF32));
  }
  Tensor forward(const Tensor& x) override {
    return add(x, mul(sigmoid(gate_), relu(fc_->forward(x))));
  }
  std::string describe() const override { return "GatedResidual()"; }

 private:
  std::shared_ptr<Linear> fc_;
  Tensor gate_;
};

class Net : public Module {
 public:
  explicit Net(Generator& gen) {
    inp_ = register_module("inp", std::make_shared<Linear>(gen, 2, 16));
    block_ = register_module("block", std::make_shared<GatedResidual>(gen, 16));
    out_ = register_module("out", std::make_shared<Linear>(gen, 16, 1));
  }
  Tensor forward(const Tensor& x) override {
    return out_->forward(block_->forward(relu(inp_->forward(x))));
  }
  std::string describe() const override { return "Net()"; }

 private:
  std::shared_ptr<Linear> inp_, out_;
  std::shared_ptr<GatedResidual> block_;
};

int main() {
  Generator gen(0);
  Net net(gen);
  for (const auto& [name, p] : net.named_parameters())
    std::printf("%-18s %s\n", name.c_str(), p.str().c_str());
  Adam opt(net.named_parameters(), {.lr = 1e-2});
  // The target: y = sin(x0) * cos(x1) on [-2, 2]^2, 256 fixed points.
  const int64_t n = 256;
  std::vector<double> xs(2 * n), ys(n);
  Generator data(1);
  for (int64_t i = 0; i < n; ++i) {
    xs[2 * i] = 4 * data.next_double() - 2;
    xs[2 * i + 1] = 4 * data.next_double() - 2;
    ys[i] = std::sin(xs[2 * i]) * std::cos(xs[2 * i + 1]);
  }
  Tensor x = from_vector(xs, {n, 2}, DType::kF32), y = from_vector(ys, {n, 1}, DType::kF32);
  double first = 0, last = 0;
  for (int step = 0; step < 300; ++step) {
    opt.zero_grad(/*set_to_none=*/true);
    Tensor loss = mse_loss(net.forward(x), y);
    loss.backward();
    opt.step();
    last = loss.item();
    if (step == 0) first = last;
    if (step % 100 == 0) std::printf("step %d: mse %.5f\n", step, last);
  }
  std::printf("mse %.5f -> %.5f\n", first, last);
  return last < first / 4 ? 0 : 1;
}
