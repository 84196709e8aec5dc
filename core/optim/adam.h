// Adam and AdamW with torch.optim.Adam/AdamW's exact update (no amsgrad), fused over all
// parameters: one parallel_for over chunks of every parameter, each element read (p, g, m, v) and
// written (p, m, v) once. For a parameter at its step t:
//   AdamW only:  p = p * (1 - lr * weight_decay)          (decoupled decay, applied first)
//   Adam only:   g = g + weight_decay * p                 (L2 decay through the gradient)
//   m = beta1 * m + (1 - beta1) * g
//   v = beta2 * v + (1 - beta2) * g * g
//   p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
// State per parameter: "exp_avg" (m), "exp_avg_sq" (v) and its step count.
#pragma once

#include "core/optim/optimizer.h"

namespace tandem {

struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  // Adam: L2 through the gradient (torch default 0). AdamW: decoupled; torch's AdamW default is
  // 1e-2, pass it explicitly.
  double weight_decay = 0.0;
};

class Adam : public Optimizer {
 public:
  // ConfigError for lr, eps or weight_decay < 0 (or not finite) and betas outside [0, 1).
  Adam(NamedTensors params, const AdamOptions& options);
  const char* name() const override { return decoupled_ ? "adamw" : "adam"; }
  const AdamOptions& options() const { return options_; }  // options().lr: the initial lr

 protected:
  Adam(NamedTensors params, const AdamOptions& options, bool decoupled_weight_decay);
  void update(const std::vector<FusedParam>& active) override;

 private:
  AdamOptions options_;
  bool decoupled_ = false;
};

class AdamW : public Adam {
 public:
  AdamW(NamedTensors params, const AdamOptions& options) : Adam(std::move(params), options, true) {}
};

}  // namespace tandem
