// A three-layer model for reducer tests whose backward order is not its parameter order: layers
// are registered first, second, third but the forward runs third -> second -> first, so backward
// produces first's gradients first -- the reverse of the reverse-parameter-order initial plan.
// Optionally a registered layer that forward never calls (an unused parameter), and a forward in
// registration order (another arrival order, for a rank that disagrees).
#pragma once

#include <memory>

#include "core/nn/layers.h"
#include "core/nn/module.h"
#include "core/ops/ops.h"
#include "core/random/philox.h"

namespace tandem::testing {

// Linear(8, 8): weight 64 floats (256 bytes), bias 8 floats (32 bytes).
class Chain : public Module {
 public:
  struct Options {
    bool with_unused = false;         // registers "unused" between second and third
    bool registration_order = false;  // forward first -> second -> third instead
  };
  Chain(Generator& gen, Options options) : options_(options) {
    first_ = register_module("first", std::make_shared<Linear>(gen, 8, 8));
    second_ = register_module("second", std::make_shared<Linear>(gen, 8, 8));
    if (options.with_unused)
      unused_ = register_module("unused", std::make_shared<Linear>(gen, 8, 8));
    third_ = register_module("third", std::make_shared<Linear>(gen, 8, 8));
  }
  Tensor forward(const Tensor& x) override {
    Tensor h = x.reshape({x.size(0), -1});
    if (options_.registration_order) {
      h = relu(first_->forward(h));
      h = relu(second_->forward(h));
      return third_->forward(h);
    }
    h = relu(third_->forward(h));
    h = relu(second_->forward(h));
    return first_->forward(h);
  }
  std::string describe() const override { return "Chain"; }

 private:
  Options options_;
  std::shared_ptr<Linear> first_, second_, third_, unused_;
};

inline std::shared_ptr<Chain> make_chain(uint64_t seed, Chain::Options options = {}) {
  Generator gen(seed, /*stream=*/1);
  return std::make_shared<Chain>(gen, options);
}

// Inputs [rows, 8] ~ N(0, 1) and labels in [0, 8), from `seed`.
struct ChainBatch {
  Tensor x, labels;
};
inline ChainBatch chain_batch(uint64_t seed, int64_t rows) {
  Generator gen(seed, /*stream=*/2);
  ChainBatch b;
  b.x = randn({rows, 8}, gen);
  std::vector<double> labels;
  for (int64_t i = 0; i < rows; ++i) labels.push_back(static_cast<double>(gen.next_u64() % 8));
  b.labels = from_vector(labels, {rows}, DType::kI64);
  return b;
}

}  // namespace tandem::testing
