// Softmax, log-softmax and the losses on the CPU. Key decision: every kernel views its input as
// (outer, D, inner) with the reduced dim D in the middle; inner == 1 (the last dim of a contiguous
// tensor, the case of every classifier) takes a row loop over contiguous memory, anything else a
// strided loop. Cross-entropy is fused with log-softmax: the forward keeps only each row's
// max and log-sum-exp, and the backward (softmax - smoothed one-hot) / N is one pass over the
// logits. Maxima are subtracted before exp and sums accumulate in double, so nothing overflows.
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "core/autograd/node.h"
#include "core/backends/device_backend.h"
#include "core/ops/dispatch.h"
#include "core/ops/ops.h"
#include "core/parallel/parallel.h"

namespace tandem {
namespace {

struct Rows {
  int64_t outer = 1, d = 1, inner = 1;
};

Rows rows_of(const Tensor& x, int64_t dim) {
  Rows r;
  for (int64_t i = 0; i < dim; ++i) r.outer *= x.shape()[i];
  r.d = x.dim() == 0 ? 1 : x.shape()[dim];
  for (int64_t i = dim + 1; i < x.dim(); ++i) r.inner *= x.shape()[i];
  return r;
}

int64_t wrap(int64_t dim, int64_t ndim, const char* op) {
  const int64_t n = std::max<int64_t>(ndim, 1);
  TANDEM_CHECK_SHAPE(dim >= -n && dim < n, op, ": dimension ", dim, " out of range for a ", ndim,
                     "-d tensor");
  return dim < 0 ? dim + n : dim;
}

// Rows per task so that each task touches about 32k values.
int64_t row_grain(int64_t row_len) {
  return std::max<int64_t>(1, (1 << 15) / std::max<int64_t>(row_len, 1));
}

// exp in f32: Cephes' expf (range reduction by ln 2 in two parts, degree-5 polynomial on
// [-ln2/2, ln2/2], 2^n from the exponent bits), within 2 ulp of std::exp on [-87.3, 88]; 0 below,
// inf above 88.72, NaN kept. Written once for V = float and once for 8-lane GCC/Clang vectors
// (auto-vectorisers leave the selects as branches); f64 (gradient checks) keeps std::exp.
using F32x8 = float __attribute__((vector_size(32)));
using I32x8 = int32_t __attribute__((vector_size(32)));

template <typename V>
V select(bool c, V a, V b) {
  return c ? a : b;
}
inline F32x8 select(I32x8 c, F32x8 a, F32x8 b) {
  return c ? a : b;
}

template <typename V, typename I>
V exp_f32(V x) {
  const V zero = V{} + 0.0f, lo = zero - 87.33654475f, hi = zero + 88.0f;
  V xc = select(x >= lo, x, lo);  // NaN too: the integer conversion below needs a number
  xc = select(xc > hi, hi, xc);
  const V n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round(x / ln 2)
  const V r = xc - n * 0.693359375f + n * 2.12194440e-4f;
  V p = zero + 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const V e = p * r * r + r + 1.0f;
  I ni;
  if constexpr (std::is_same_v<V, float>)
    ni = static_cast<int32_t>(n);
  else
    ni = __builtin_convertvector(n, I);
  V two_n;
  const I bits = (ni + 127) << 23;
  std::memcpy(&two_n, &bits, sizeof(V));
  V res = select(x < lo, zero, e * two_n);
  res = select(x > 88.72283935546875f, zero + std::numeric_limits<float>::infinity(), res);
  return select(x != x, x, res);
}

// out[j] = exp((x[j] - a) - b) for a contiguous row (out may be x).
inline void exp_row(const float* x, float a, float b, float* out, int64_t n) {
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    F32x8 v;
    std::memcpy(&v, x + j, sizeof(v));
    v = exp_f32<F32x8, I32x8>((v - a) - b);
    std::memcpy(out + j, &v, sizeof(v));
  }
  for (; j < n; ++j) out[j] = exp_f32<float, int32_t>((x[j] - a) - b);
}
inline void exp_row(const double* x, double a, double b, double* out, int64_t n) {
  for (int64_t j = 0; j < n; ++j) out[j] = std::exp((x[j] - a) - b);
}
inline float exp_one(float x) {
  return exp_f32<float, int32_t>(x);
}
inline double exp_one(double x) {
  return std::exp(x);
}

template <typename T>
T row_max(const T* x, int64_t n, int64_t st) {
  T m = -std::numeric_limits<T>::infinity();
#pragma omp simd reduction(max : m)
  for (int64_t j = 0; j < n; ++j)
    m = x[j * st] > m ? x[j * st] : m;  // not std::max: GCC vectorises this
  return m;
}

template <typename T>
double row_sum(const T* x, int64_t n) {
  double s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t j = 0; j < n; ++j) s += static_cast<double>(x[j]);
  return s;
}

// (log-)softmax of one row of length n with stride st (kUnit: st is 1, known to the compiler).
template <typename T, bool kLog, bool kUnit>
void softmax_row(const T* x, T* y, int64_t n, int64_t st_in) {
  const int64_t st = kUnit ? 1 : st_in;
  T m = row_max(x, n, st);
  if (std::isinf(m) && m < 0) m = 0;  // all -inf: exp gives 0s, log gives -inf / NaN like PyTorch
  double s = 0;
  if (kUnit) {
    exp_row(x, m, T(0), y, n);  // y holds exp(x - m) for now
    s = row_sum(y, n);
  } else {
    for (int64_t j = 0; j < n; ++j) {
      y[j * st] = exp_one(x[j * st] - m);
      s += static_cast<double>(y[j * st]);
    }
  }
  if (kLog) {
    const T log_s = static_cast<T>(std::log(s));  // (x - m) - log_s: exact for huge logits
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) y[j * st] = (x[j * st] - m) - log_s;
  } else {
    const T inv = static_cast<T>(1.0 / s);
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) y[j * st] *= inv;
  }
}

// Backward of one row: softmax gx = y * (g - sum(g * y)); log-softmax gx = g - exp(y) * sum(g).
template <typename T, bool kLog, bool kUnit>
void softmax_backward_row(const T* y, const T* g, T* gx, int64_t n, int64_t st_in) {
  const int64_t st = kUnit ? 1 : st_in;
  double s = 0;
  if (kLog) {
#pragma omp simd reduction(+ : s)
    for (int64_t j = 0; j < n; ++j) s += static_cast<double>(g[j * st]);
    const T ts = static_cast<T>(s);
    if (kUnit) {
      exp_row(y, T(0), T(0), gx, n);
#pragma omp simd
      for (int64_t j = 0; j < n; ++j) gx[j] = g[j] - gx[j] * ts;
    } else {
      for (int64_t j = 0; j < n; ++j) gx[j * st] = g[j * st] - exp_one(y[j * st]) * ts;
    }
  } else {
#pragma omp simd reduction(+ : s)
    for (int64_t j = 0; j < n; ++j)
      s += static_cast<double>(g[j * st]) * static_cast<double>(y[j * st]);
    const T ts = static_cast<T>(s);
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) gx[j * st] = y[j * st] * (g[j * st] - ts);
  }
}

// Cross-entropy of one row of c logits (scratch: c values): stores the row's max and
// log(sum(exp(x - max))) and returns (1 - ls) * (-logp[target]) + ls * mean_j(-logp[j]).
template <typename T>
double cross_entropy_row(const T* row, int64_t c, int64_t target, double ls, T* scratch, T* max_out,
                         T* log_s_out) {
  const T m = row_max(row, c, 1);
  exp_row(row, m, T(0), scratch, c);
  const double log_s = std::log(row_sum(scratch, c)), lse = static_cast<double>(m) + log_s;
  *max_out = m;
  *log_s_out = static_cast<T>(log_s);
  return (1.0 - ls) * (lse - static_cast<double>(row[target])) +
         ls * (lse - row_sum(row, c) / static_cast<double>(c));
}

// Its gradient: scale * (softmax - smoothed one-hot).
template <typename T>
void cross_entropy_backward_row(const T* row, int64_t c, int64_t target, T m, T log_s, T scale,
                                T off, T hit, T* out) {
  exp_row(row, m, log_s, out, c);
#pragma omp simd
  for (int64_t j = 0; j < c; ++j) out[j] = scale * (out[j] - off);
  out[target] -= scale * hit;
}

// Runs row_fn(std::bool_constant<unit stride>, offset, stride) over every row of an
// (outer, D, inner) contiguous layout.
template <typename F>
void for_each_row(const Rows& r, F row_fn) {
  if (r.inner == 1) {
    parallel_for(0, r.outer, row_grain(r.d), [&](int64_t b, int64_t e) {
      for (int64_t o = b; o < e; ++o) row_fn(std::true_type{}, o * r.d, 1);
    });
    return;
  }
  parallel_for(0, r.outer * r.inner, row_grain(r.d), [&](int64_t b, int64_t e) {
    for (int64_t k = b; k < e; ++k) {
      const int64_t o = k / r.inner, i = k % r.inner;
      row_fn(std::false_type{}, o * r.d * r.inner + i, r.inner);
    }
  });
}

// On a device: softmax over the last dim of a contiguous tensor (others are permuted there).
template <bool kLog>
Tensor softmax_device(const char* name, const Tensor& x_in, int64_t dim) {
  const int64_t last = std::max<int64_t>(x_in.dim() - 1, 0);
  Tensor x = x_in.detach();
  if (dim != last) x = x.transpose(dim, last);
  x = x.contiguous();
  Tensor y = empty(x.shape(), x.dtype(), x.device());
  backend_for(name, x.device()).softmax(x, kLog, y);
  Tensor yd = y.detach();
  Tensor out = dim != last ? y.transpose(dim, last) : y;
  record(kLog ? "LogSoftmaxBackward" : "SoftmaxBackward", {x_in}, {out},
         [yd, dim, last, name](const std::vector<Tensor>& g) {
           Tensor gc = (dim != last ? g[0].transpose(dim, last) : g[0]).contiguous();
           Tensor gx = empty(yd.shape(), yd.dtype(), yd.device());
           backend_for(name, yd.device()).softmax_backward(yd, gc, kLog, gx);
           return std::vector<Tensor>{dim != last ? gx.transpose(dim, last) : gx};
         });
  return out;
}

template <bool kLog>
Tensor softmax_impl(const char* name, const Tensor& x_in, int64_t dim_in) {
  const int64_t dim = wrap(dim_in, x_in.dim(), name);
  if (x_in.is_cuda()) return softmax_device<kLog>(name, x_in, dim);
  Tensor x = x_in.detach().contiguous();
  Tensor y = empty(x.shape(), x.dtype());
  const Rows r = rows_of(x, dim);
  TANDEM_DISPATCH_FLOAT(x.dtype(), name, [&] {
    const scalar_t* px = x.data<scalar_t>();
    scalar_t* py = y.data<scalar_t>();
    for_each_row(r, [&](auto unit, int64_t off, int64_t st) {
      softmax_row<scalar_t, kLog, decltype(unit)::value>(px + off, py + off, r.d, st);
    });
  });
  Tensor yd = y.detach();
  record(kLog ? "LogSoftmaxBackward" : "SoftmaxBackward", {x_in}, {y},
         [yd, r](const std::vector<Tensor>& g) {
           Tensor gc = g[0].contiguous();
           Tensor gx = empty(yd.shape(), yd.dtype());
           TANDEM_DISPATCH_FLOAT(yd.dtype(), "softmax_backward", [&] {
             const scalar_t* py = yd.data<scalar_t>();
             const scalar_t* pg = gc.data<scalar_t>();
             scalar_t* o = gx.data<scalar_t>();
             for_each_row(r, [&](auto unit, int64_t off, int64_t st) {
               softmax_backward_row<scalar_t, kLog, decltype(unit)::value>(py + off, pg + off,
                                                                           o + off, r.d, st);
             });
           });
           return std::vector<Tensor>{gx};
         });
  return y;
}

// Class indices of a cross-entropy target as i64, checked against [0, classes).
Tensor checked_targets(const Tensor& target, int64_t n, int64_t classes) {
  TANDEM_CHECK_T(TypeError, target.dtype() == DType::kI64 || target.dtype() == DType::kI32,
                 "cross_entropy: target must hold i64 class indices, got ",
                 dtype_name(target.dtype()));
  TANDEM_CHECK_SHAPE(target.dim() == 1 && target.shape()[0] == n,
                     "cross_entropy: target has shape ", shape_str(target.shape()), ", expected [",
                     n, "] (one class index per row)");
  Tensor t = target.detach().to(DType::kI64).contiguous();
  // On a device, checked on a host copy: a bad label must be named, not read out of bounds.
  const Tensor host = t.is_cuda() ? t.to(Device::cpu()) : t;
  const int64_t* p = host.data<int64_t>();
  for (int64_t i = 0; i < n; ++i)
    TANDEM_CHECK(p[i] >= 0 && p[i] < classes, "cross_entropy: target ", p[i], " at position ", i,
                 " is out of range for ", classes, " classes (expected 0 <= target < ", classes,
                 ")");
  return t;
}

constexpr int64_t kChunk = 1 << 14;  // mse partial sums

// out[k] = sum of (a - b)^2 over chunk k of kChunk elements, in double.
template <typename T>
void squared_error_chunks(const T* a, const T* b, int64_t n, double* out) {
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  parallel_for(0, chunks, 1, [&](int64_t cb, int64_t ce) {
    for (int64_t k = cb; k < ce; ++k) {
      double s = 0;
      const int64_t e = std::min(n, (k + 1) * kChunk);
#pragma omp simd reduction(+ : s)
      for (int64_t i = k * kChunk; i < e; ++i) {
        const double d = static_cast<double>(a[i]) - static_cast<double>(b[i]);
        s += d * d;
      }
      out[k] = s;
    }
  });
}

// cross_entropy on a device backend; x is the logits' contiguous copy, tgt the checked targets.
Tensor cross_entropy_device(const Tensor& logits_in, const Tensor& x, const Tensor& tgt,
                            double ls) {
  const int64_t n = x.shape()[0];
  Tensor loss = empty({}, x.dtype(), x.device());
  Tensor lse = empty({2, n}, x.dtype(), x.device());
  backend_for("cross_entropy", x.device()).cross_entropy(x, tgt, ls, loss, lse);
  record("CrossEntropyBackward", {logits_in}, {loss},
         [x, tgt, lse, ls](const std::vector<Tensor>& g) {
           Tensor gx = empty(x.shape(), x.dtype(), x.device());
           backend_for("cross_entropy_backward", x.device())
               .cross_entropy_backward(x, tgt, lse, ls, g[0], gx);
           return std::vector<Tensor>{gx};
         });
  return loss;
}

// The CPU backward: the logits' gradient from each row's max and log-sum-exp (lse).
Tensor cross_entropy_cpu_backward(const Tensor& x, const Tensor& tgt, const Tensor& lse_t,
                                  double ls, const Tensor& grad) {
  const int64_t n = x.shape()[0], c = x.shape()[1];
  Tensor gx = empty(x.shape(), x.dtype());
  TANDEM_DISPATCH_FLOAT(x.dtype(), "cross_entropy_backward", [&] {
    using T = scalar_t;
    const T* px = x.data<T>();
    const int64_t* pt = tgt.data<int64_t>();
    const T* lse = lse_t.data<T>();
    T* o = gx.data<T>();
    const T scale = static_cast<T>(grad.item() / static_cast<double>(n));
    const T off = static_cast<T>(ls / static_cast<double>(c));
    const T hit = static_cast<T>(1.0 - ls);
    parallel_for(0, n, row_grain(c), [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        cross_entropy_backward_row<T>(px + i * c, c, pt[i], lse[i], lse[n + i], scale, off, hit,
                                      o + i * c);
      }
    });
  });
  return gx;
}

Tensor cross_entropy_cpu(const Tensor& logits_in, const Tensor& x, const Tensor& tgt, double ls) {
  const int64_t n = x.shape()[0], c = x.shape()[1];
  Tensor loss = empty({}, x.dtype());
  Tensor lse_t = empty({2, n}, x.dtype());  // per row: max and log(sum(exp(x - max)))
  TANDEM_DISPATCH_FLOAT(x.dtype(), "cross_entropy", [&] {
    using T = scalar_t;
    const T* px = x.data<T>();
    const int64_t* pt = tgt.data<int64_t>();
    T* lse = lse_t.data<T>();
    Tensor row_loss = empty({n}, DType::kF64);  // summed serially: same result at any thread count
    double* rl = row_loss.data<double>();
    parallel_for(0, n, row_grain(c), [&](int64_t b, int64_t e) {
      Tensor scratch = empty({c}, x.dtype());
      for (int64_t i = b; i < e; ++i)
        rl[i] =
            cross_entropy_row<T>(px + i * c, c, pt[i], ls, scratch.data<T>(), &lse[i], &lse[n + i]);
    });
    double total = 0;
    for (int64_t i = 0; i < n; ++i) total += rl[i];
    loss.data<T>()[0] = static_cast<T>(total / static_cast<double>(n));
  });
  record("CrossEntropyBackward", {logits_in}, {loss},
         [x, tgt, lse_t, ls](const std::vector<Tensor>& g) {
           return std::vector<Tensor>{cross_entropy_cpu_backward(x, tgt, lse_t, ls, g[0])};
         });
  return loss;
}

}  // namespace

Tensor softmax(const Tensor& x, int64_t dim) {
  return softmax_impl<false>("softmax", x, dim);
}
Tensor log_softmax(const Tensor& x, int64_t dim) {
  return softmax_impl<true>("log_softmax", x, dim);
}

Tensor cross_entropy(const Tensor& logits_in, const Tensor& target, double label_smoothing) {
  if (logits_in.is_cuda() || target.is_cuda())
    check_same_device("cross_entropy", {&logits_in, &target});
  else
    check_cpu("cross_entropy", {&logits_in, &target});
  TANDEM_CHECK_SHAPE(logits_in.dim() == 2, "cross_entropy: logits must be (N, C), got ",
                     shape_str(logits_in.shape()));
  TANDEM_CHECK(label_smoothing >= 0.0 && label_smoothing <= 1.0,
               "cross_entropy: label_smoothing must be in [0, 1], got ", label_smoothing);
  const int64_t n = logits_in.shape()[0], c = logits_in.shape()[1];
  TANDEM_CHECK_SHAPE(n > 0 && c > 0, "cross_entropy: empty logits ", shape_str(logits_in.shape()));
  Tensor tgt = checked_targets(target, n, c);
  Tensor x = logits_in.detach().contiguous();
  Tensor loss = x.is_cuda() ? cross_entropy_device(logits_in, x, tgt, label_smoothing)
                            : cross_entropy_cpu(logits_in, x, tgt, label_smoothing);
  return loss;
}

Tensor mse_loss(const Tensor& input, const Tensor& target) {
  check_same_dtype("mse_loss", {&input, &target});
  if (input.is_cuda() || target.is_cuda()) {
    // On a device: composed from the elementwise ops and one reduction (all differentiable).
    check_same_device("mse_loss", {&input, &target});
    TANDEM_CHECK_SHAPE(input.numel() > 0, "mse_loss of empty tensors ", shape_str(input.shape()));
    Tensor d = sub(input, target);
    return mean(mul(d, d));
  }
  check_cpu("mse_loss", {&input, &target});
  if (input.shape() != target.shape()) {
    // Broadcasting (rare): compose differentiable ops.
    broadcast_shapes(input.shape(), target.shape());
    Tensor d = sub(input, target);
    return mean(mul(d, d));
  }
  const int64_t n = input.numel();
  TANDEM_CHECK_SHAPE(n > 0, "mse_loss of empty tensors ", shape_str(input.shape()));
  Tensor a = input.detach().contiguous(), b = target.detach().contiguous();
  Tensor loss = empty({}, a.dtype());
  TANDEM_DISPATCH_FLOAT(a.dtype(), "mse_loss", [&] {
    const scalar_t* pa = a.data<scalar_t>();
    const scalar_t* pb = b.data<scalar_t>();
    const int64_t chunks = (n + kChunk - 1) / kChunk;
    Tensor part = empty({chunks}, DType::kF64);
    double* pp = part.data<double>();
    squared_error_chunks<scalar_t>(pa, pb, n, pp);
    double total = 0;  // fixed chunks summed in order: the same result at any thread count
    for (int64_t k = 0; k < chunks; ++k) total += pp[k];
    loss.data<scalar_t>()[0] = static_cast<scalar_t>(total / static_cast<double>(n));
  });
  const bool na = input.requires_grad(), nb = target.requires_grad();
  record("MseLossBackward", {input, target}, {loss}, [a, b, na, nb](const std::vector<Tensor>& g) {
    const int64_t n = a.numel();
    Tensor ga = empty(a.shape(), a.dtype());
    TANDEM_DISPATCH_FLOAT(a.dtype(), "mse_loss_backward", [&] {
      const scalar_t* pa = a.data<scalar_t>();
      const scalar_t* pb = b.data<scalar_t>();
      scalar_t* o = ga.data<scalar_t>();
      const scalar_t k = static_cast<scalar_t>(2.0 * g[0].item() / static_cast<double>(n));
      parallel_for(0, n, 1 << 15, [&](int64_t s, int64_t e) {
        for (int64_t i = s; i < e; ++i) o[i] = k * (pa[i] - pb[i]);
      });
    });
    return std::vector<Tensor>{na ? ga : Tensor(), nb ? neg(ga) : Tensor()};
  });
  return loss;
}

}  // namespace tandem
