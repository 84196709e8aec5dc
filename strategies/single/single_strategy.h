// The single strategy: one process, one replica, no communication. Also the reference the other
// strategies must agree with.
#pragma once

#include "strategies/strategy.h"

namespace tandem {

class SingleStrategy : public Strategy {
 public:
  std::string name() const override { return "single"; }
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  void prepare(Module&, Optimizer&) override {}
  double forward_backward(Module& model, const MicroBatch& micro) override;
  void synchronize(Module&) override {}
  std::vector<double> all_reduce_sum(const std::vector<double>& values) override { return values; }
};

// The loss of one micro-batch on one replica, with its gradient scaled by `grad_scale` and
// dropout keyed by the batch's global sample positions. Shared by every strategy.
double replica_forward_backward(Module& model, const MicroBatch& micro, double grad_scale);

// A batch's images as the model takes them: on the device of its parameters, and in f64 when
// they are f64 (training.precision: fp64). Shared with the trainer's evaluation.
Tensor model_input(const Tensor& images, const std::vector<Tensor>& params);

}  // namespace tandem
