// clip_grad_norm: one fused pass for the sum of squares (per-chunk partials summed in chunk
// order) and, when clipping, one fused pass to scale.
#include "core/optim/clip.h"

#include <cmath>

#include "core/ops/ops.h"

namespace tandem {

namespace {

// On a device: the squared norms summed on the device in f64, one copy of the total to the host.
double clip_grad_norm_device(const std::vector<Tensor>& grads, double max_norm) {
  Tensor total_sq;
  for (const Tensor& g : grads) {
    Tensor gd = g.detach().to(DType::kF64);
    Tensor s = sum(mul(gd, gd));
    total_sq = total_sq.defined() ? add(total_sq, s) : s;
  }
  const double total = std::sqrt(total_sq.item());
  if (!std::isfinite(total)) return total;
  const double coef = max_norm / (total + 1e-6);  // 1e-6: torch's guard against a zero norm
  if (coef >= 1.0) return total;
  for (Tensor g : grads) mul_(g, coef);
  return total;
}

// The sum of squares of every element, in f64: partial sums per chunk, keyed by the chunk's
// position, then added in order (the same total whatever the threads' schedule).
double sum_of_squares(const std::vector<FusedParam>& fused) {
  constexpr int64_t kChunk = 1 << 16;
  std::vector<size_t> first_chunk(fused.size());
  size_t n_chunks = 0;
  for (size_t i = 0; i < fused.size(); ++i) {
    first_chunk[i] = n_chunks;
    n_chunks += static_cast<size_t>((fused[i].numel + kChunk - 1) / kChunk);
  }
  std::vector<double> partial(n_chunks, 0.0);
  auto index_of = [&](const FusedParam& f) { return static_cast<size_t>(&f - fused.data()); };
  for_each_fused_chunk(
      fused,
      [&](const FusedParam& f, int64_t b, int64_t e) {
        double s = 0.0;
        if (f.dtype == DType::kF64) {
          const double* x = static_cast<const double*>(f.param);
          for (int64_t i = b; i < e; ++i) s += x[i] * x[i];
        } else {
          const float* x = static_cast<const float*>(f.param);
          for (int64_t i = b; i < e; ++i) s += static_cast<double>(x[i]) * x[i];
        }
        partial[first_chunk[index_of(f)] + static_cast<size_t>(b / kChunk)] = s;
      },
      kChunk);
  double sum_sq = 0.0;
  for (double s : partial) sum_sq += s;
  return sum_sq;
}

// Multiplies every element by coef, in place.
void scale_in_place(const std::vector<FusedParam>& fused, double coef) {
  for_each_fused_chunk(fused, [&](const FusedParam& f, int64_t b, int64_t e) {
    if (f.dtype == DType::kF64) {
      double* x = static_cast<double*>(f.param);
      for (int64_t i = b; i < e; ++i) x[i] *= coef;
    } else {
      float* x = static_cast<float*>(f.param);
      const float c = static_cast<float>(coef);
      for (int64_t i = b; i < e; ++i) x[i] *= c;
    }
  });
}

}  // namespace

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm) {
  TANDEM_CHECK_T(ConfigError, std::isfinite(max_norm) && max_norm > 0.0,
                 "clip_grad_norm: max_norm must be finite and > 0, got ", max_norm);
  std::vector<Tensor> device_grads;
  for (const Tensor& p : params)
    if (p.defined() && p.grad().defined() && p.grad().is_cuda()) device_grads.push_back(p.grad());
  if (!device_grads.empty()) return clip_grad_norm_device(device_grads, max_norm);
  std::vector<FusedParam> fused;
  std::vector<Tensor> grads, keep_alive;
  for (const Tensor& p : params) {
    if (!p.defined() || !p.grad().defined()) continue;
    const Tensor& g = p.grad();
    TANDEM_CHECK_T(Unimplemented, g.device().is_cpu(), "clip_grad_norm on ", g.device().str());
    TANDEM_CHECK_T(TypeError, g.dtype() == DType::kF32 || g.dtype() == DType::kF64,
                   "clip_grad_norm needs f32 or f64 grads, got ", dtype_name(g.dtype()));
    Tensor c = g.is_contiguous() ? g : g.detach().contiguous();
    keep_alive.push_back(c);
    grads.push_back(g);
    FusedParam f;
    f.param = c.raw_data();  // the kernel below reads and scales `param`
    f.dtype = c.dtype();
    f.numel = c.numel();
    fused.push_back(std::move(f));
  }
  if (fused.empty()) return 0.0;

  const double total = std::sqrt(sum_of_squares(fused));
  if (!std::isfinite(total)) return total;

  const double coef = max_norm / (total + 1e-6);  // 1e-6: torch's guard against a zero norm
  if (coef >= 1.0) return total;
  for (size_t i = 0; i < grads.size(); ++i) {
    if (keep_alive[i].is_same(grads[i])) continue;
    Tensor g = grads[i];
    mul_(g, coef);  // non-contiguous grad: scaled through its strides, not via the copy
    fused[i].numel = 0;
  }
  scale_in_place(fused, coef);
  return total;
}

double clip_grad_norm(const NamedTensors& params, double max_norm) {
  std::vector<Tensor> ts;
  ts.reserve(params.size());
  for (const auto& [name, p] : params) ts.push_back(p);
  return clip_grad_norm(ts, max_norm);
}

}  // namespace tandem
