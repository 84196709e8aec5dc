// SGD's fused element update. Arithmetic is done in the parameter's dtype with the coefficients
// rounded to it first, in the order torch's single-tensor path uses, so f32 results track PyTorch
// to rounding.
#include "core/optim/sgd.h"

#include <cmath>

namespace tandem {
namespace {

const SgdOptions& checked(const SgdOptions& o) {
  auto nonneg = [](double v, const char* what) {
    TANDEM_CHECK_T(ConfigError, std::isfinite(v) && v >= 0.0, "sgd: ", what,
                   " must be finite and >= 0, got ", v);
  };
  nonneg(o.lr, "lr");
  nonneg(o.momentum, "momentum");
  nonneg(o.dampening, "dampening");
  nonneg(o.weight_decay, "weight_decay");
  TANDEM_CHECK_T(ConfigError, !o.nesterov || (o.momentum > 0.0 && o.dampening == 0.0),
                 "sgd: nesterov needs momentum > 0 and dampening 0, got momentum ", o.momentum,
                 " and dampening ", o.dampening);
  return o;
}

template <typename T>
void sgd_chunk(const FusedParam& fp, int64_t begin, int64_t end, const SgdOptions& o, double lr) {
  T* p = static_cast<T*>(fp.param);
  const T* g = static_cast<const T*>(fp.grad);
  const T wd = static_cast<T>(o.weight_decay);
  const T neg_lr = static_cast<T>(-lr);
  if (o.momentum == 0.0) {
    for (int64_t i = begin; i < end; ++i) {
      T d = o.weight_decay != 0.0 ? g[i] + wd * p[i] : g[i];
      p[i] = p[i] + neg_lr * d;
    }
    return;
  }
  T* buf = static_cast<T*>(fp.buffers[0]);
  const T mom = static_cast<T>(o.momentum);
  const T keep = static_cast<T>(1.0 - o.dampening);
  const bool first = fp.step == 1;  // torch: the buffer is created as a copy of d
  for (int64_t i = begin; i < end; ++i) {
    T d = o.weight_decay != 0.0 ? g[i] + wd * p[i] : g[i];
    T b = first ? d : buf[i] * mom + keep * d;
    buf[i] = b;
    d = o.nesterov ? d + mom * b : b;
    p[i] = p[i] + neg_lr * d;
  }
}

}  // namespace

Sgd::Sgd(NamedTensors params, const SgdOptions& options)
    : Optimizer(std::move(params), checked(options).lr,
                options.momentum != 0.0 ? std::vector<std::string>{"momentum_buffer"}
                                        : std::vector<std::string>{}),
      options_(options) {}

void Sgd::update(const std::vector<FusedParam>& active) {
  const double step_lr = lr();  // set_lr may have changed options_.lr
  if (!active.empty() && active.front().device.is_cuda()) {
    FusedSgdArgs a;
    a.lr = step_lr;
    a.momentum = options_.momentum;
    a.dampening = options_.dampening;
    a.weight_decay = options_.weight_decay;
    a.nesterov = options_.nesterov;
    const Device dev = active.front().device;
    backend_for("sgd", dev).sgd_update(dev.index, fused_tensors(active), a);
    return;
  }
  for_each_fused_chunk(active, [&](const FusedParam& fp, int64_t b, int64_t e) {
    if (fp.dtype == DType::kF64) {
      sgd_chunk<double>(fp, b, e, options_, step_lr);
    } else {
      sgd_chunk<float>(fp, b, e, options_, step_lr);
    }
  });
}

}  // namespace tandem
