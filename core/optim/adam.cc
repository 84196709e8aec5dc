// Adam's fused element update. Per-parameter scalars (bias corrections) are computed in double as
// PyTorch's Python code does, then rounded to the parameter's dtype; the element arithmetic follows
// torch's single-tensor path operation by operation, so f32 results track PyTorch to rounding.
#include "core/optim/adam.h"

#include <cmath>

namespace tandem {
namespace {

const AdamOptions& checked(const AdamOptions& o, const char* name) {
  auto nonneg = [&](double v, const char* what) {
    TANDEM_CHECK_T(ConfigError, std::isfinite(v) && v >= 0.0, name, ": ", what,
                   " must be finite and >= 0, got ", v);
  };
  auto beta = [&](double v, const char* what) {
    TANDEM_CHECK_T(ConfigError, v >= 0.0 && v < 1.0, name, ": ", what, " must be in [0, 1), got ",
                   v);
  };
  nonneg(o.lr, "lr");
  nonneg(o.eps, "eps");
  nonneg(o.weight_decay, "weight_decay");
  beta(o.beta1, "beta1");
  beta(o.beta2, "beta2");
  return o;
}

template <typename T>
void adam_chunk(const FusedParam& fp, int64_t begin, int64_t end, const AdamOptions& o, double lr,
                bool decoupled) {
  T* p = static_cast<T*>(fp.param);
  const T* g = static_cast<const T*>(fp.grad);
  T* m = static_cast<T*>(fp.buffers[0]);
  T* v = static_cast<T*>(fp.buffers[1]);
  const double t = static_cast<double>(fp.step);
  const double bias_c1 = 1.0 - std::pow(o.beta1, t);
  const double bias_c2 = 1.0 - std::pow(o.beta2, t);
  const T neg_step_size = static_cast<T>(-(lr / bias_c1));
  const T bias_c2_sqrt = static_cast<T>(std::sqrt(bias_c2));
  const T b1 = static_cast<T>(o.beta1), one_minus_b1 = static_cast<T>(1.0 - o.beta1);
  const T b2 = static_cast<T>(o.beta2), one_minus_b2 = static_cast<T>(1.0 - o.beta2);
  const T eps = static_cast<T>(o.eps);
  const T wd = static_cast<T>(o.weight_decay);
  const T decay = static_cast<T>(1.0 - lr * o.weight_decay);
  const bool l2 = !decoupled && o.weight_decay != 0.0;
  const bool decoupled_decay = decoupled && o.weight_decay != 0.0;
  for (int64_t i = begin; i < end; ++i) {
    T pi = p[i];
    if (decoupled_decay) pi = pi * decay;
    const T gi = l2 ? g[i] + wd * pi : g[i];
    const T mi = m[i] * b1 + one_minus_b1 * gi;
    const T vi = v[i] * b2 + one_minus_b2 * gi * gi;
    const T denom = std::sqrt(vi) / bias_c2_sqrt + eps;
    p[i] = pi + neg_step_size * mi / denom;
    m[i] = mi;
    v[i] = vi;
  }
}

}  // namespace

Adam::Adam(NamedTensors params, const AdamOptions& options)
    : Adam(std::move(params), options, false) {}

Adam::Adam(NamedTensors params, const AdamOptions& options, bool decoupled_weight_decay)
    : Optimizer(std::move(params), checked(options, decoupled_weight_decay ? "adamw" : "adam").lr,
                {"exp_avg", "exp_avg_sq"}),
      options_(options),
      decoupled_(decoupled_weight_decay) {}

void Adam::update(const std::vector<FusedParam>& active) {
  const double step_lr = lr();
  if (!active.empty() && active.front().device.is_cuda()) {
    FusedAdamArgs a;
    a.lr = step_lr;
    a.beta1 = options_.beta1;
    a.beta2 = options_.beta2;
    a.eps = options_.eps;
    a.weight_decay = options_.weight_decay;
    a.decoupled = decoupled_;
    const Device dev = active.front().device;
    backend_for(decoupled_ ? "adamw" : "adam", dev)
        .adam_update(dev.index, fused_tensors(active), a);
    return;
  }
  for_each_fused_chunk(active, [&](const FusedParam& fp, int64_t b, int64_t e) {
    if (fp.dtype == DType::kF64) {
      adam_chunk<double>(fp, b, e, options_, step_lr, decoupled_);
    } else {
      adam_chunk<float>(fp, b, e, options_, step_lr, decoupled_);
    }
  });
}

}  // namespace tandem
