// Batch normalisation on the CPU for x (N, C, ...), viewed as (N, C, S) with S the product of the
// trailing dims. Key decision: statistics accumulate in double from a per-channel shift (the
// channel's first value), so one pass over the data gives mean and variance without cancellation;
// reductions run in parallel over channels, elementwise passes over (n, c) planes, and (N, C)
// inputs (S == 1) vectorise across channels instead of along a plane of one. Forward and backward
// are each one fused kernel (no chain of elementwise ops); the backward is the closed form of
// PyTorch's batch_norm_backward.
#include <cmath>

#include "core/autograd/grad_mode.h"
#include "core/autograd/node.h"
#include "core/backends/device_backend.h"
#include "core/ops/dispatch.h"
#include "core/ops/ops.h"
#include "core/parallel/parallel.h"

namespace tandem {
namespace {

struct BnDims {
  int64_t n = 0, c = 0, s = 1;
  int64_t count() const { return n * s; }  // values per channel
};

// Channels per task: enough work per task that threads pay off.
int64_t channel_grain(const BnDims& d) {
  return std::max<int64_t>(1, (1 << 15) / std::max<int64_t>(d.count(), 1));
}

void check_param(const Tensor& t, const char* what, const Tensor& x, int64_t c) {
  if (!t.defined()) return;
  TANDEM_CHECK_SHAPE(t.dim() == 1 && t.shape()[0] == c, "batch_norm: ", what, " has shape ",
                     shape_str(t.shape()), ", expected [", c, "] for input ", shape_str(x.shape()));
  TANDEM_CHECK_T(TypeError, t.dtype() == x.dtype(), "batch_norm: ", what, " is ",
                 dtype_name(t.dtype()), " but the input is ", dtype_name(x.dtype()));
}

// Per-channel scale and shift so that y = x * scale + shift: scale = w * invstd,
// shift = b - mean * scale. Undefined weight/bias act as 1/0.
template <typename T>
void affine_coefficients(const BnDims& d, const T* mean, const T* invstd, const Tensor& weight,
                         const Tensor& bias, T* scale, T* shift) {
  Tensor w = weight.defined() ? weight.detach().contiguous() : Tensor();
  Tensor b = bias.defined() ? bias.detach().contiguous() : Tensor();
  const T* pw = w.defined() ? w.data<T>() : nullptr;
  const T* pb = b.defined() ? b.data<T>() : nullptr;
  for (int64_t c = 0; c < d.c; ++c) {
    T sc = (pw ? pw[c] : T(1)) * invstd[c];
    scale[c] = sc;
    shift[c] = (pb ? pb[c] : T(0)) - mean[c] * sc;
  }
}

// The kernels below spell out both layouts as plain loops over local pointers (the shape GCC
// vectorises reliably): (N, C) inputs (S == 1) vectorise across channels, (N, C, S) inputs along
// each plane of S values.

// Per channel: sums of v = x - k[c] and of v * v, in double.
template <typename T>
void shifted_sums(const BnDims& d, const T* x, const double* k, double* s1, double* s2) {
  parallel_for(0, d.c, channel_grain(d), [&](int64_t c0, int64_t c1) {
    const T* const px = x;
    const double* const pk = k;
    double* const a = s1;
    double* const b = s2;
    if (d.s == 1) {
      for (int64_t c = c0; c < c1; ++c) a[c] = b[c] = 0;
      for (int64_t n = 0; n < d.n; ++n) {
        const T* row = px + n * d.c;
#pragma omp simd
        for (int64_t c = c0; c < c1; ++c) {
          const double v = static_cast<double>(row[c]) - pk[c];
          a[c] += v;
          b[c] += v * v;
        }
      }
      return;
    }
    for (int64_t c = c0; c < c1; ++c) {
      const double kc = pk[c];
      double sa = 0, sb = 0;
      for (int64_t n = 0; n < d.n; ++n) {
        const T* p = px + (n * d.c + c) * d.s;
#pragma omp simd reduction(+ : sa, sb)
        for (int64_t i = 0; i < d.s; ++i) {
          const double v = static_cast<double>(p[i]) - kc;
          sa += v;
          sb += v * v;
        }
      }
      a[c] = sa;
      b[c] = sb;
    }
  });
}

// Per channel: sum of g and of g * (x - mean[c]), in double.
template <typename T>
void grad_sums(const BnDims& d, const T* x, const T* g, const T* mean, double* sum_g,
               double* sum_gx) {
  parallel_for(0, d.c, channel_grain(d), [&](int64_t c0, int64_t c1) {
    const T* const px = x;
    const T* const pg = g;
    const T* const mu = mean;
    double* const a = sum_g;
    double* const b = sum_gx;
    if (d.s == 1) {
      for (int64_t c = c0; c < c1; ++c) a[c] = b[c] = 0;
      for (int64_t n = 0; n < d.n; ++n) {
        const T* xr = px + n * d.c;
        const T* gr = pg + n * d.c;
#pragma omp simd
        for (int64_t c = c0; c < c1; ++c) {
          const double gi = static_cast<double>(gr[c]);
          a[c] += gi;
          b[c] += gi * static_cast<double>(xr[c] - mu[c]);
        }
      }
      return;
    }
    for (int64_t c = c0; c < c1; ++c) {
      const T m = mu[c];
      double sa = 0, sb = 0;
      for (int64_t n = 0; n < d.n; ++n) {
        const int64_t base = (n * d.c + c) * d.s;
        const T* xr = px + base;
        const T* gr = pg + base;
#pragma omp simd reduction(+ : sa, sb)
        for (int64_t i = 0; i < d.s; ++i) {
          const double gi = static_cast<double>(gr[i]);
          sa += gi;
          sb += gi * static_cast<double>(xr[i] - m);
        }
      }
      a[c] = sa;
      b[c] = sb;
    }
  });
}

// out = scale[c] * (u - mg[c] - (v - mu[c]) * k[c]), elementwise; with v = nullptr,
// out = u * scale[c] + mg[c] (the forward affine map).
template <typename T>
void channel_map(const BnDims& d, const T* u, const T* v, const T* scale, const T* mg, const T* mu,
                 const T* k, T* out) {
  if (d.s == 1) {
    parallel_for(0, d.n, std::max<int64_t>(1, (1 << 15) / std::max<int64_t>(d.c, 1)),
                 [&](int64_t n0, int64_t n1) {
                   const T *const sc = scale, *const sh = mg, *const m = mu, *const kk = k;
                   for (int64_t n = n0; n < n1; ++n) {
                     const T* ur = u + n * d.c;
                     T* o = out + n * d.c;
                     if (v == nullptr) {
#pragma omp simd
                       for (int64_t c = 0; c < d.c; ++c) o[c] = ur[c] * sc[c] + sh[c];
                     } else {
                       const T* vr = v + n * d.c;
#pragma omp simd
                       for (int64_t c = 0; c < d.c; ++c)
                         o[c] = sc[c] * (ur[c] - sh[c] - (vr[c] - m[c]) * kk[c]);
                     }
                   }
                 });
    return;
  }
  parallel_for(0, d.n * d.c, std::max<int64_t>(1, (1 << 15) / d.s), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t c = r % d.c, base = r * d.s;
      const T* ur = u + base;
      T* o = out + base;
      const T sc = scale[c], sh = mg[c];
      if (v == nullptr) {
#pragma omp simd
        for (int64_t i = 0; i < d.s; ++i) o[i] = ur[i] * sc + sh;
      } else {
        const T* vr = v + base;
        const T m = mu[c], kc = k[c];
#pragma omp simd
        for (int64_t i = 0; i < d.s; ++i) o[i] = sc * (ur[i] - sh - (vr[i] - m) * kc);
      }
    }
  });
}

// Batch mean and biased variance per channel, accumulated from a shift k (the channel's first
// value) so that one pass gives both without cancellation.
template <typename T>
void batch_stats(const BnDims& d, const T* x, double* mean, double* var) {
  Tensor shift_t = empty({d.c}, DType::kF64);
  double* k = shift_t.data<double>();
  for (int64_t c = 0; c < d.c; ++c) k[c] = static_cast<double>(x[c * d.s]);
  shifted_sums(d, x, k, mean, var);
  const double m = static_cast<double>(d.count());
  for (int64_t c = 0; c < d.c; ++c) {
    const double dm = mean[c] / m;
    var[c] = std::max(0.0, var[c] / m - dm * dm);
    mean[c] = k[c] + dm;
  }
}

// grad x. Training: gx = scale * (g - mean(g) - (x - mu) * invstd^2 * mean(g * (x - mu)));
// eval: gx = scale * g. scale = w * invstd.
template <typename T>
void grad_input(const BnDims& d, bool training, const T* x, const T* g, const T* mean,
                const T* invstd, const T* w, const double* sum_g, const double* sum_gx, T* gx) {
  const double m = static_cast<double>(d.count());
  Tensor coef_t = empty({3, d.c}, DTypeOf<T>::value);
  T* scale = coef_t.data<T>();
  T* mg = scale + d.c;
  T* k = mg + d.c;
  for (int64_t c = 0; c < d.c; ++c) {
    const double is = static_cast<double>(invstd[c]);
    scale[c] = static_cast<T>((w ? static_cast<double>(w[c]) : 1.0) * is);
    mg[c] = training ? static_cast<T>(sum_g[c] / m) : T(0);
    k[c] = training ? static_cast<T>(sum_gx[c] / m * is * is) : T(0);
  }
  channel_map(d, g, x, scale, mg, mean, k, gx);
}

// What the backward closure needs, all detached and contiguous.
struct BnSaved {
  Tensor x, weight, mean, invstd;  // mean/invstd (C) in x's dtype: batch or running statistics
  BnDims dims;
  bool training = false;
  bool need_x = false, need_w = false, need_b = false;
};

std::vector<Tensor> batch_norm_backward(const BnSaved& sv, const Tensor& g_in) {
  const BnDims& d = sv.dims;
  Tensor g = g_in.contiguous();
  std::vector<Tensor> out(3);
  TANDEM_DISPATCH_FLOAT(sv.x.dtype(), "batch_norm_backward", [&] {
    using T = scalar_t;
    const T* x = sv.x.data<T>();
    const T* pg = g.data<T>();
    const T* mean = sv.mean.data<T>();
    const T* invstd = sv.invstd.data<T>();
    const T* w = sv.weight.defined() ? sv.weight.data<T>() : nullptr;
    Tensor sums = empty({2, d.c}, DType::kF64);
    double* sum_g = sums.data<double>();
    double* sum_gx = sum_g + d.c;
    grad_sums<T>(d, x, pg, mean, sum_g, sum_gx);
    if (sv.need_w) {
      Tensor gw = empty({d.c}, sv.x.dtype());
      T* p = gw.data<T>();
      for (int64_t c = 0; c < d.c; ++c)
        p[c] = static_cast<T>(sum_gx[c] * static_cast<double>(invstd[c]));
      out[1] = gw;
    }
    if (sv.need_b) {
      Tensor gb = empty({d.c}, sv.x.dtype());
      T* p = gb.data<T>();
      for (int64_t c = 0; c < d.c; ++c) p[c] = static_cast<T>(sum_g[c]);
      out[2] = gb;
    }
    if (!sv.need_x) return;
    Tensor gx = empty(sv.x.shape(), sv.x.dtype());
    grad_input<T>(d, sv.training, x, pg, mean, invstd, w, sum_g, sum_gx, gx.data<T>());
    out[0] = gx;
  });
  return out;
}

}  // namespace

namespace {

// The batch's per-channel mean and 1 / sqrt(var + eps); the running statistics, when given, move
// towards them as PyTorch's do: running = (1 - momentum) * running + momentum * stat, with the
// unbiased variance.
template <typename T>
void batch_statistics(const BnDims& d, const T* x, double eps, T* mean, T* invstd,
                      Tensor* running_mean, Tensor* running_var, double momentum) {
  Tensor stats = empty({2, d.c}, DType::kF64);
  double* bm = stats.data<double>();
  double* bv = bm + d.c;
  batch_stats<T>(d, x, bm, bv);
  for (int64_t c = 0; c < d.c; ++c) {
    mean[c] = static_cast<T>(bm[c]);
    invstd[c] = static_cast<T>(1.0 / std::sqrt(bv[c] + eps));
  }
  if (running_mean == nullptr) return;
  T* rm = running_mean->data<T>();
  T* rv = running_var->data<T>();
  const int64_t sm = running_mean->stride(0), sv = running_var->stride(0);
  const double m = static_cast<double>(d.count()), unbias = m / (m - 1.0);
  for (int64_t c = 0; c < d.c; ++c) {
    rm[c * sm] = static_cast<T>((1.0 - momentum) * rm[c * sm] + momentum * bm[c]);
    rv[c * sv] = static_cast<T>((1.0 - momentum) * rv[c * sv] + momentum * bv[c] * unbias);
  }
}

// Inference: the per-channel mean and 1 / sqrt(var + eps) of the running statistics.
template <typename T>
void running_statistics(const BnDims& d, const Tensor& running_mean, const Tensor& running_var,
                        double eps, T* mean, T* invstd) {
  const T* rm = running_mean.data<T>();
  const T* rv = running_var.data<T>();
  const int64_t sm = running_mean.stride(0), sv = running_var.stride(0);
  for (int64_t c = 0; c < d.c; ++c) {
    mean[c] = rm[c * sm];
    invstd[c] = static_cast<T>(1.0 / std::sqrt(static_cast<double>(rv[c * sv]) + eps));
  }
}

// Records the CPU batch norm's backward: x is x_in's contiguous copy, y the output.
void record_backward(const Tensor& x_in, const Tensor& x, const Tensor& weight, const Tensor& bias,
                     const Tensor& y, const Tensor& mean, const Tensor& invstd, const BnDims& d,
                     bool use_batch_stats) {
  BnSaved sv;
  sv.x = x;
  sv.weight = weight.defined() ? weight.detach().contiguous() : Tensor();
  sv.mean = mean;
  sv.invstd = invstd;
  sv.dims = d;
  sv.training = use_batch_stats;
  sv.need_x = x_in.requires_grad();
  sv.need_w = weight.defined() && weight.requires_grad();
  sv.need_b = bias.defined() && bias.requires_grad();
  record("BatchNormBackward", {x_in, weight, bias}, {y},
         [sv](const std::vector<Tensor>& g) { return batch_norm_backward(sv, g[0]); });
}

// batch_norm on a device backend (cuDNN's spatial batch norm on CUDA), after the checks below.
Tensor batch_norm_device(const Tensor& x_in, const Tensor& running_mean, const Tensor& running_var,
                         const Tensor& weight, const Tensor& bias, bool use_batch_stats,
                         bool update_running, double momentum, double eps, int64_t c) {
  check_same_device("batch_norm", {&x_in, &running_mean, &running_var, &weight, &bias});
  for (const Tensor* t : {&running_mean, &running_var})
    TANDEM_CHECK(!t->defined() || t->is_contiguous(),
                 "batch_norm on cuda needs contiguous running statistics");
  Tensor x = x_in.detach().contiguous();
  const Device dev = x.device();
  Tensor w = weight.defined() ? weight.detach().contiguous() : ones({c}, x.dtype(), dev);
  Tensor b = bias.defined() ? bias.detach().contiguous() : zeros({c}, x.dtype(), dev);
  Tensor y = empty(x.shape(), x.dtype(), dev);
  Tensor save_mean = empty({c}, w.dtype(), dev), save_invstd = empty({c}, w.dtype(), dev);
  backend_for("batch_norm", dev)
      .batch_norm(x, w, b, update_running ? running_mean : Tensor(),
                  update_running ? running_var : Tensor(), use_batch_stats, momentum, eps, y,
                  save_mean, save_invstd);
  const bool nx = x_in.requires_grad(), nw = weight.defined() && weight.requires_grad();
  const bool nb = bias.defined() && bias.requires_grad();
  if (nx || nw || nb) {
    record("BatchNormBackward", {x_in, weight, bias}, {y},
           [x, w, save_mean, save_invstd, eps, use_batch_stats, nx, nw,
            nb](const std::vector<Tensor>& g) {
             if (!use_batch_stats) throw Unimplemented("batch_norm backward in eval mode on cuda");
             Tensor gx = empty(x.shape(), x.dtype(), x.device());
             Tensor gw = empty(w.shape(), w.dtype(), w.device());
             Tensor gb = empty(w.shape(), w.dtype(), w.device());
             backend_for("batch_norm backward", x.device())
                 .batch_norm_backward(x, g[0].contiguous(), w, save_mean, save_invstd, eps, gx, gw,
                                      gb);
             return std::vector<Tensor>{nx ? gx : Tensor(), nw ? gw : Tensor(), nb ? gb : Tensor()};
           });
  }
  return y;
}

}  // namespace

Tensor batch_norm(const Tensor& x_in, Tensor running_mean, Tensor running_var, const Tensor& weight,
                  const Tensor& bias, bool training, double momentum, double eps) {
  TANDEM_CHECK_SHAPE(x_in.dim() >= 2, "batch_norm: input must be (N, C, ...), got ",
                     shape_str(x_in.shape()));
  TANDEM_CHECK_SHAPE(running_mean.defined() == running_var.defined(),
                     "batch_norm: give both running_mean and running_var, or neither");
  BnDims d;
  d.n = x_in.shape()[0];
  d.c = x_in.shape()[1];
  for (int64_t i = 2; i < x_in.dim(); ++i) d.s *= x_in.shape()[i];
  check_param(weight, "weight", x_in, d.c);
  check_param(bias, "bias", x_in, d.c);
  check_param(running_mean, "running_mean", x_in, d.c);
  check_param(running_var, "running_var", x_in, d.c);
  const bool use_batch_stats = training || !running_mean.defined();
  TANDEM_CHECK(!use_batch_stats || d.count() > 1,
               "batch_norm: expected more than 1 value per channel when training, got input ",
               shape_str(x_in.shape()));
  TANDEM_CHECK(eps > 0, "batch_norm: eps must be positive, got ", eps);
  if (x_in.is_cuda()) {
    // Inference reads the running statistics; training updates them when given.
    const bool pass_running = use_batch_stats ? (training && running_mean.defined()) : true;
    return batch_norm_device(x_in, running_mean, running_var, weight, bias, use_batch_stats,
                             pass_running, momentum, eps, d.c);
  }
  check_cpu("batch_norm", {&x_in, &running_mean, &running_var, &weight, &bias});

  Tensor x = x_in.detach().contiguous();
  Tensor y = empty(x.shape(), x.dtype());
  Tensor mean_t = empty({d.c}, x.dtype()), invstd_t = empty({d.c}, x.dtype());
  TANDEM_DISPATCH_FLOAT(x.dtype(), "batch_norm", [&] {
    using T = scalar_t;
    const T* px = x.data<T>();
    T* mean = mean_t.data<T>();
    T* invstd = invstd_t.data<T>();
    if (use_batch_stats)
      batch_statistics<T>(d, px, eps, mean, invstd,
                          training && running_mean.defined() ? &running_mean : nullptr,
                          &running_var, momentum);
    else
      running_statistics<T>(d, running_mean, running_var, eps, mean, invstd);
    Tensor coef = empty({2, d.c}, x.dtype());
    T* scale = coef.data<T>();
    T* shift = scale + d.c;
    affine_coefficients<T>(d, mean, invstd, weight, bias, scale, shift);
    channel_map<T>(d, px, nullptr, scale, shift, nullptr, nullptr, y.data<T>());
  });

  if (any_requires_grad({&x_in, &weight, &bias}))
    record_backward(x_in, x, weight, bias, y, mean_t, invstd_t, d, use_batch_stats);
  return y;
}

}  // namespace tandem
