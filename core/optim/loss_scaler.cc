#include "core/optim/loss_scaler.h"

#include <cmath>

#include "core/ops/ops.h"

namespace tandem {

LossScaler::LossScaler(const LossScalerOptions& o) : options_(o), scale_(o.init_scale) {
  TANDEM_CHECK_T(ConfigError, std::isfinite(o.init_scale) && o.init_scale > 0,
                 "loss scaler: init_scale must be finite and > 0, got ", o.init_scale);
  TANDEM_CHECK_T(
      ConfigError,
      o.growth_factor > 1 && o.backoff_factor > 0 && o.backoff_factor < 1 && o.growth_interval > 0,
      "loss scaler: need growth_factor > 1, 0 < backoff_factor < 1, growth_interval > 0");
}

bool LossScaler::update(bool found_inf) {
  if (found_inf) {
    scale_ *= options_.backoff_factor;
    clean_steps_ = 0;
    return false;
  }
  if (++clean_steps_ >= options_.growth_interval) {
    scale_ *= options_.growth_factor;
    clean_steps_ = 0;
  }
  return true;
}

bool grads_finite(const std::vector<Tensor>& params) {
  // sum(g * 0) is 0 when every element is finite and NaN otherwise (inf * 0 = NaN); summed over
  // all gradients of a device, it stays there until the one item() at the end.
  double total = 0;
  Tensor acc;
  for (const Tensor& p : params) {
    if (!p.defined() || !p.grad().defined()) continue;
    Tensor s = sum(mul(p.grad().detach(), 0.0));
    if (acc.defined() && acc.device() == s.device()) {
      acc = add(acc, s);
    } else {
      if (acc.defined()) total += acc.item();
      acc = s;
    }
  }
  if (acc.defined()) total += acc.item();
  return std::isfinite(total);
}

void scale_grads(const std::vector<Tensor>& params, double factor) {
  for (const Tensor& p : params) {
    if (!p.defined() || !p.grad().defined()) continue;
    Tensor g = p.grad();
    mul_(g, factor);
  }
}

}  // namespace tandem
