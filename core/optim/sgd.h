// Stochastic gradient descent with momentum, dampening, Nesterov and L2 weight decay: exactly
// torch.optim.SGD's update, fused over all parameters (one pass per element):
//   d = g + weight_decay * p
//   buf = d on a parameter's first step, else momentum * buf + (1 - dampening) * d
//   d = nesterov ? d + momentum * buf : buf          (when momentum != 0)
//   p = p - lr * d
// State: "momentum_buffer" per parameter when momentum != 0, none otherwise.
#pragma once

#include "core/optim/optimizer.h"

namespace tandem {

struct SgdOptions {
  double lr = 0.1;
  double momentum = 0.0;
  double dampening = 0.0;
  bool nesterov = false;
  double weight_decay = 0.0;
};

class Sgd : public Optimizer {
 public:
  // ConfigError for lr/momentum/dampening/weight_decay < 0 (or not finite), and for nesterov
  // without momentum or with dampening (as torch.optim.SGD).
  Sgd(NamedTensors params, const SgdOptions& options);
  const char* name() const override { return "sgd"; }
  const SgdOptions& options() const { return options_; }  // options().lr: the initial lr

 protected:
  void update(const std::vector<FusedParam>& active) override;

 private:
  SgdOptions options_;
};

}  // namespace tandem
