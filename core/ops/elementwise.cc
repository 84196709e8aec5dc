// Elementwise arithmetic, activations and comparisons on the CPU, with broadcasting. Contiguous
// same-shape inputs, a scalar operand, and a row vector broadcast over a matrix (biases) take flat
// vectorisable loops; anything else walks strided views.
#include <cmath>

#include "core/autograd/grad_mode.h"
#include "core/autograd/node.h"
#include "core/backends/device_backend.h"
#include "core/ops/dispatch.h"
#include "core/ops/ops.h"
#include "core/parallel/parallel.h"

namespace tandem {

constexpr int64_t kGrain =
    1 << 15;  // elements per task: below this threads cost more than they give

Shape broadcast_shapes(const Shape& a, const Shape& b) {
  size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    TANDEM_CHECK_SHAPE(da == db || da == 1 || db == 1, "shapes ", shape_str(a), " and ",
                       shape_str(b), " cannot be broadcast together");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

Tensor sum_to(const Tensor& g, const Shape& shape) {
  if (g.shape() == shape) return g;
  std::vector<int64_t> dims;
  size_t lead = g.shape().size() - shape.size();
  for (size_t i = 0; i < g.shape().size(); ++i) {
    if (i < lead || (shape[i - lead] == 1 && g.shape()[i] != 1))
      dims.push_back(static_cast<int64_t>(i));
  }
  Tensor s = dims.empty() ? g : sum(g, dims, true);
  return s.reshape(shape);
}

namespace {

// out[i] = f(a[i], b[i]) over the broadcast shape. Output dtype = OutT.
template <typename T, typename OutT, typename F>
void binary_kernel(const Tensor& a, const Tensor& b, Tensor& out, F f) {
  const int64_t n = out.numel();
  if (n == 0) return;
  OutT* o = static_cast<OutT*>(out.raw_data());
  const T* pa = static_cast<const T*>(a.raw_data());
  const T* pb = static_cast<const T*>(b.raw_data());
  const bool ac = a.is_contiguous(), bc = b.is_contiguous();
  if (ac && bc && a.numel() == n && b.numel() == n) {
    parallel_for(0, n, kGrain, [&](int64_t s, int64_t e) {
      for (int64_t i = s; i < e; ++i) o[i] = f(pa[i], pb[i]);
    });
    return;
  }
  if (ac && a.numel() == n && b.numel() == 1) {
    const T y = pb[0];
    parallel_for(0, n, kGrain, [&](int64_t s, int64_t e) {
      for (int64_t i = s; i < e; ++i) o[i] = f(pa[i], y);
    });
    return;
  }
  if (bc && b.numel() == n && a.numel() == 1) {
    const T x = pa[0];
    parallel_for(0, n, kGrain, [&](int64_t s, int64_t e) {
      for (int64_t i = s; i < e; ++i) o[i] = f(x, pb[i]);
    });
    return;
  }
  // Row broadcast: a is (..., M) contiguous, b is (M) (biases, per-feature scales).
  if (ac && bc && a.numel() == n && b.dim() >= 1 && a.dim() >= 1 && b.numel() == a.shape().back() &&
      b.shape().back() == b.numel()) {
    const int64_t m = b.numel(), rows = n / m;
    parallel_for(0, rows, std::max<int64_t>(1, kGrain / std::max<int64_t>(m, 1)),
                 [&](int64_t s, int64_t e) {
                   for (int64_t r = s; r < e; ++r)
                     for (int64_t j = 0; j < m; ++j) o[r * m + j] = f(pa[r * m + j], pb[j]);
                 });
    return;
  }
  Tensor ea = a.detach().expand(out.shape());
  Tensor eb = b.detach().expand(out.shape());
  parallel_for(0, n, kGrain, [&](int64_t s, int64_t e) {
    std::vector<int64_t> boff(static_cast<size_t>(e - s));
    for_each_offset(out.shape(), eb.strides(), s, e,
                    [&](int64_t i, int64_t off) { boff[i - s] = off; });
    const T* ba = static_cast<const T*>(ea.raw_data());
    for_each_offset(out.shape(), ea.strides(), s, e,
                    [&](int64_t i, int64_t off) { o[i] = f(ba[off], pb[boff[i - s]]); });
  });
}

// The device of a binary op: a CUDA operand decides (the other may be a CPU scalar).
Device op_device(const Tensor& a, const Tensor& b) {
  return a.is_cuda() ? a.device() : b.device();
}

template <typename F>
Tensor binary_float(const char* name, BinaryOp op, const Tensor& a, const Tensor& b, F f) {
  check_same_dtype(name, {&a, &b});
  if (a.is_cuda() || b.is_cuda()) {
    const Device dev = op_device(a, b);
    Tensor out = empty(broadcast_shapes(a.shape(), b.shape()), a.dtype(), dev);
    backend_for(name, dev).binary(op, a.detach(), b.detach(), out);
    return out;
  }
  Tensor out = empty(broadcast_shapes(a.shape(), b.shape()), a.dtype());
  TANDEM_DISPATCH_ALL(a.dtype(), name, [&] { binary_kernel<scalar_t, scalar_t>(a, b, out, f); });
  return out;
}

template <typename F>
Tensor compare(const char* name, BinaryOp op, const Tensor& a, const Tensor& b, F f) {
  check_same_dtype(name, {&a, &b});
  if (a.is_cuda() || b.is_cuda()) {
    const Device dev = op_device(a, b);
    Tensor out = empty(broadcast_shapes(a.shape(), b.shape()), DType::kU8, dev);
    backend_for(name, dev).binary(op, a.detach(), b.detach(), out);
    return out;
  }
  Tensor out = empty(broadcast_shapes(a.shape(), b.shape()), DType::kU8);
  TANDEM_DISPATCH_ALL(a.dtype(), name, [&] {
    binary_kernel<scalar_t, uint8_t>(
        a, b, out, [&](scalar_t x, scalar_t y) -> uint8_t { return f(x, y) ? 1 : 0; });
  });
  return out;
}

// out[i] = f(a[i]) for a float tensor (a made contiguous).
template <typename F>
Tensor unary_float(const char* name, UnaryOp op, double arg, const Tensor& a_in, F f) {
  if (a_in.is_cuda()) {
    Tensor out = empty(a_in.shape(), a_in.dtype(), a_in.device());
    backend_for(name, a_in.device()).unary(op, a_in.detach(), arg, out);
    return out;
  }
  Tensor a = a_in.detach().contiguous();
  Tensor out = empty(a.shape(), a.dtype());
  const int64_t n = a.numel();
  TANDEM_DISPATCH_FLOAT(a.dtype(), name, [&] {
    const scalar_t* x = a.data<scalar_t>();
    scalar_t* o = out.data<scalar_t>();
    parallel_for(0, n, kGrain, [&](int64_t s, int64_t e) {
      for (int64_t i = s; i < e; ++i) o[i] = f(x[i]);
    });
  });
  return out;
}

// r[i] = f(x[i], y[i], g[i]) for three same-shape float tensors: fused backward formulas.
// (x and y are the same tensor at every call site; the CUDA path reads x and g.)
template <typename F>
Tensor ternary_float(const char* name, BackwardOp op, double arg, const Tensor& x_in,
                     const Tensor& y_in, const Tensor& g_in, F f) {
  if (x_in.is_cuda()) {
    Tensor out = empty(x_in.shape(), x_in.dtype(), x_in.device());
    backend_for(name, x_in.device()).backward(op, x_in.detach(), g_in.detach(), arg, out);
    return out;
  }
  Tensor x = x_in.contiguous(), y = y_in.contiguous(), g = g_in.contiguous();
  Tensor out = empty(x.shape(), x.dtype());
  const int64_t n = x.numel();
  TANDEM_DISPATCH_FLOAT(x.dtype(), name, [&] {
    const scalar_t* px = x.data<scalar_t>();
    const scalar_t* py = y.data<scalar_t>();
    const scalar_t* pg = g.data<scalar_t>();
    scalar_t* o = out.data<scalar_t>();
    parallel_for(0, n, kGrain, [&](int64_t s, int64_t e) {
      for (int64_t i = s; i < e; ++i) o[i] = f(px[i], py[i], pg[i]);
    });
  });
  return out;
}

Tensor scalar_like(const Tensor& a, double v) {
  return scalar_tensor(v, a.dtype());
}

}  // namespace

// ------------------------------------------------------------------ arithmetic
Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out = binary_float("add", BinaryOp::kAdd, a, b, [](auto x, auto y) { return x + y; });
  Shape sa = a.shape(), sb = b.shape();
  record("AddBackward", {a, b}, {out}, [sa, sb](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{sum_to(g[0], sa), sum_to(g[0], sb)};
  });
  return out;
}

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor out = binary_float("sub", BinaryOp::kSub, a, b, [](auto x, auto y) { return x - y; });
  Shape sa = a.shape(), sb = b.shape();
  record("SubBackward", {a, b}, {out}, [sa, sb](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{sum_to(g[0], sa), sum_to(neg(g[0]), sb)};
  });
  return out;
}

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = binary_float("mul", BinaryOp::kMul, a, b, [](auto x, auto y) { return x * y; });
  Tensor ad = a.detach(), bd = b.detach();
  bool na = a.requires_grad(), nb = b.requires_grad();
  record("MulBackward", {a, b}, {out}, [ad, bd, na, nb](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{na ? sum_to(mul(g[0], bd), ad.shape()) : Tensor(),
                               nb ? sum_to(mul(g[0], ad), bd.shape()) : Tensor()};
  });
  return out;
}

Tensor div(const Tensor& a, const Tensor& b) {
  Tensor out = binary_float("div", BinaryOp::kDiv, a, b, [](auto x, auto y) { return x / y; });
  Tensor ad = a.detach(), bd = b.detach();
  bool na = a.requires_grad(), nb = b.requires_grad();
  record("DivBackward", {a, b}, {out}, [ad, bd, na, nb](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{
        na ? sum_to(div(g[0], bd), ad.shape()) : Tensor(),
        nb ? sum_to(neg(div(mul(g[0], ad), mul(bd, bd))), bd.shape()) : Tensor()};
  });
  return out;
}

Tensor add(const Tensor& a, double b) {
  Tensor out = binary_float("add", BinaryOp::kAdd, a, scalar_like(a, b),
                            [](auto x, auto y) { return x + y; });
  record("AddScalarBackward", {a}, {out},
         [](const std::vector<Tensor>& g) { return std::vector<Tensor>{g[0]}; });
  return out;
}

Tensor mul(const Tensor& a, double b) {
  Tensor out = binary_float("mul", BinaryOp::kMul, a, scalar_like(a, b),
                            [](auto x, auto y) { return x * y; });
  record("MulScalarBackward", {a}, {out},
         [b](const std::vector<Tensor>& g) { return std::vector<Tensor>{mul(g[0], b)}; });
  return out;
}

Tensor neg(const Tensor& a) {
  Tensor out = unary_float("neg", UnaryOp::kNeg, 0.0, a, [](auto x) { return -x; });
  record("NegBackward", {a}, {out},
         [](const std::vector<Tensor>& g) { return std::vector<Tensor>{neg(g[0])}; });
  return out;
}

Tensor pow(const Tensor& a, double e) {
  Tensor out = unary_float("pow", UnaryOp::kPowScalar, e, a,
                           [e](auto x) { return static_cast<decltype(x)>(std::pow(x, e)); });
  Tensor ad = a.detach();
  record("PowBackward", {a}, {out}, [ad, e](const std::vector<Tensor>& g) {
    Tensor d = ternary_float(
        "pow_backward", BackwardOp::kPow, e, ad, ad, g[0], [e](auto x, auto, auto gg) {
          using T = decltype(x);
          return e == 0.0 ? T(0) : static_cast<T>(gg * e * std::pow(x, e - 1.0));
        });
    return std::vector<Tensor>{d};
  });
  return out;
}

Tensor pow(const Tensor& a, const Tensor& e) {
  Tensor out = binary_float("pow", BinaryOp::kPow, a, e, [](auto x, auto y) {
    return static_cast<decltype(x)>(std::pow(x, y));
  });
  Tensor ad = a.detach(), ed = e.detach(), od = out.detach();
  record("PowTensorBackward", {a, e}, {out}, [ad, ed, od](const std::vector<Tensor>& g) {
    Tensor ga = mul(g[0], mul(ed, pow(ad, sub(ed, scalar_like(ed, 1.0)))));
    Tensor ge = mul(g[0], mul(od, log(ad)));
    return std::vector<Tensor>{sum_to(ga, ad.shape()), sum_to(ge, ed.shape())};
  });
  return out;
}

Tensor maximum(const Tensor& a, const Tensor& b) {
  Tensor out = binary_float("maximum", BinaryOp::kMaximum, a, b,
                            [](auto x, auto y) { return x >= y ? x : y; });
  Tensor ad = a.detach(), bd = b.detach();
  record("MaximumBackward", {a, b}, {out}, [ad, bd](const std::vector<Tensor>& g) {
    Tensor mask = ge(ad, bd).to(g[0].dtype());
    Tensor ga = mul(g[0], mask);
    Tensor gb = sub(g[0], ga);
    return std::vector<Tensor>{sum_to(ga, ad.shape()), sum_to(gb, bd.shape())};
  });
  return out;
}

// ------------------------------------------------------------------ activations
Tensor exp(const Tensor& a) {
  Tensor out = unary_float("exp", UnaryOp::kExp, 0.0, a, [](auto x) { return std::exp(x); });
  Tensor od = out.detach();
  record("ExpBackward", {a}, {out},
         [od](const std::vector<Tensor>& g) { return std::vector<Tensor>{mul(g[0], od)}; });
  return out;
}

Tensor log(const Tensor& a) {
  Tensor out = unary_float("log", UnaryOp::kLog, 0.0, a, [](auto x) { return std::log(x); });
  Tensor ad = a.detach();
  record("LogBackward", {a}, {out},
         [ad](const std::vector<Tensor>& g) { return std::vector<Tensor>{div(g[0], ad)}; });
  return out;
}

Tensor sqrt(const Tensor& a) {
  Tensor out = unary_float("sqrt", UnaryOp::kSqrt, 0.0, a, [](auto x) { return std::sqrt(x); });
  Tensor od = out.detach();
  record("SqrtBackward", {a}, {out}, [od](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{ternary_float("sqrt_backward", BackwardOp::kSqrt, 0.0, od, od, g[0],
                                             [](auto y, auto, auto gg) { return gg / (y + y); })};
  });
  return out;
}

Tensor abs(const Tensor& a) {
  Tensor out = unary_float("abs", UnaryOp::kAbs, 0.0, a, [](auto x) { return std::abs(x); });
  Tensor ad = a.detach();
  record("AbsBackward", {a}, {out}, [ad](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{ternary_float("abs_backward", BackwardOp::kAbs, 0.0, ad, ad, g[0],
                                             [](auto x, auto, auto gg) {
                                               using T = decltype(x);
                                               return x > T(0) ? gg : (x < T(0) ? -gg : T(0));
                                             })};
  });
  return out;
}

Tensor relu(const Tensor& a) {
  Tensor out = unary_float("relu", UnaryOp::kRelu, 0.0, a,
                           [](auto x) { return x > decltype(x)(0) ? x : decltype(x)(0); });
  Tensor od = out.detach();
  record("ReluBackward", {a}, {out}, [od](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{ternary_float(
        "relu_backward", BackwardOp::kRelu, 0.0, od, od, g[0],
        [](auto y, auto, auto gg) { return y > decltype(y)(0) ? gg : decltype(y)(0); })};
  });
  return out;
}

Tensor leaky_relu(const Tensor& a, double slope) {
  Tensor out = unary_float("leaky_relu", UnaryOp::kLeakyRelu, slope, a, [slope](auto x) {
    using T = decltype(x);
    return x > T(0) ? x : static_cast<T>(slope) * x;
  });
  Tensor ad = a.detach();
  record("LeakyReluBackward", {a}, {out}, [ad, slope](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{ternary_float("leaky_relu_backward", BackwardOp::kLeakyRelu, slope,
                                             ad, ad, g[0], [slope](auto x, auto, auto gg) {
                                               using T = decltype(x);
                                               return x > T(0) ? gg : static_cast<T>(slope) * gg;
                                             })};
  });
  return out;
}

Tensor gelu(const Tensor& a) {
  Tensor out = unary_float("gelu", UnaryOp::kGelu, 0.0, a, [](auto x) {
    using T = decltype(x);
    return static_cast<T>(0.5 * x * (1.0 + std::erf(x * M_SQRT1_2)));
  });
  Tensor ad = a.detach();
  record("GeluBackward", {a}, {out}, [ad](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{ternary_float(
        "gelu_backward", BackwardOp::kGelu, 0.0, ad, ad, g[0], [](auto x, auto, auto gg) {
          using T = decltype(x);
          double cdf = 0.5 * (1.0 + std::erf(x * M_SQRT1_2));
          double pdf = std::exp(-0.5 * x * x) * 0.3989422804014327;  // 1/sqrt(2 pi)
          return static_cast<T>(gg * (cdf + x * pdf));
        })};
  });
  return out;
}

Tensor tanh(const Tensor& a) {
  Tensor out = unary_float("tanh", UnaryOp::kTanh, 0.0, a, [](auto x) { return std::tanh(x); });
  Tensor od = out.detach();
  record("TanhBackward", {a}, {out}, [od](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{
        ternary_float("tanh_backward", BackwardOp::kTanh, 0.0, od, od, g[0],
                      [](auto y, auto, auto gg) { return gg * (1 - y * y); })};
  });
  return out;
}

Tensor sigmoid(const Tensor& a) {
  Tensor out = unary_float("sigmoid", UnaryOp::kSigmoid, 0.0, a, [](auto x) {
    using T = decltype(x);
    return x >= T(0) ? T(1) / (T(1) + std::exp(-x)) : std::exp(x) / (T(1) + std::exp(x));
  });
  Tensor od = out.detach();
  record("SigmoidBackward", {a}, {out}, [od](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{
        ternary_float("sigmoid_backward", BackwardOp::kSigmoid, 0.0, od, od, g[0],
                      [](auto y, auto, auto gg) { return gg * y * (1 - y); })};
  });
  return out;
}

// ------------------------------------------------------------------ comparisons
Tensor eq(const Tensor& a, const Tensor& b) {
  return compare("eq", BinaryOp::kEq, a, b, [](auto x, auto y) { return x == y; });
}
Tensor ne(const Tensor& a, const Tensor& b) {
  return compare("ne", BinaryOp::kNe, a, b, [](auto x, auto y) { return x != y; });
}
Tensor lt(const Tensor& a, const Tensor& b) {
  return compare("lt", BinaryOp::kLt, a, b, [](auto x, auto y) { return x < y; });
}
Tensor le(const Tensor& a, const Tensor& b) {
  return compare("le", BinaryOp::kLe, a, b, [](auto x, auto y) { return x <= y; });
}
Tensor gt(const Tensor& a, const Tensor& b) {
  return compare("gt", BinaryOp::kGt, a, b, [](auto x, auto y) { return x > y; });
}
Tensor ge(const Tensor& a, const Tensor& b) {
  return compare("ge", BinaryOp::kGe, a, b, [](auto x, auto y) { return x >= y; });
}

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  TANDEM_CHECK_T(TypeError, cond.dtype() == DType::kU8, "where: condition must be u8, got ",
                 dtype_name(cond.dtype()));
  check_same_dtype("where", {&a, &b});
  Shape s = broadcast_shapes(broadcast_shapes(cond.shape(), a.shape()), b.shape());
  Tensor c = cond.detach().expand(s).contiguous();
  Tensor out = empty(s, a.dtype(), a.device());
  if (a.is_cuda()) {
    backend_for("where", a.device()).where(c, a.detach(), b.detach(), out);
  } else {
    check_cpu("where", {&cond, &a, &b});
    Tensor ea = a.detach().expand(s).contiguous(), eb = b.detach().expand(s).contiguous();
    TANDEM_DISPATCH_ALL(a.dtype(), "where", [&] {
      const uint8_t* pc = c.data<uint8_t>();
      const scalar_t* pa = ea.data<scalar_t>();
      const scalar_t* pb = eb.data<scalar_t>();
      scalar_t* o = out.data<scalar_t>();
      for (int64_t i = 0; i < out.numel(); ++i) o[i] = pc[i] ? pa[i] : pb[i];
    });
  }
  Tensor cd = c;
  Shape sa = a.shape(), sb = b.shape();
  record("WhereBackward", {a, b}, {out}, [cd, sa, sb](const std::vector<Tensor>& g) {
    Tensor z = zeros_like(g[0]);
    return std::vector<Tensor>{sum_to(where(cd, g[0], z), sa), sum_to(where(cd, z, g[0]), sb)};
  });
  return out;
}

// ------------------------------------------------------------------ in place
void add_(Tensor& a, const Tensor& b, double alpha) {
  check_same_dtype("add_", {&a, &b});
  TANDEM_CHECK_SHAPE(broadcast_shapes(a.shape(), b.shape()) == a.shape(), "add_: cannot add ",
                     shape_str(b.shape()), " into ", shape_str(a.shape()));
  if (a.is_cuda()) {
    backend_for("add_", a.device()).add_(a, b.detach(), alpha);
    return;
  }
  check_cpu("add_", {&a, &b});
  TANDEM_DISPATCH_FLOAT(a.dtype(), "add_", [&] {
    const scalar_t al = static_cast<scalar_t>(alpha);
    if (a.is_contiguous() && b.is_contiguous() && a.numel() == b.numel()) {
      scalar_t* pa = a.data<scalar_t>();
      const scalar_t* pb = b.data<scalar_t>();
      parallel_for(0, a.numel(), kGrain, [&](int64_t s, int64_t e) {
        for (int64_t i = s; i < e; ++i) pa[i] += al * pb[i];
      });
    } else {
      Tensor tmp = b.detach().expand(a.shape()).contiguous();
      const scalar_t* pb = tmp.data<scalar_t>();
      scalar_t* pa = a.data<scalar_t>();
      for_each_offset(a.shape(), a.strides(), 0, a.numel(),
                      [&](int64_t i, int64_t off) { pa[off] += al * pb[i]; });
    }
  });
}

void mul_(Tensor& a, double s) {
  if (a.is_cuda()) {
    backend_for("mul_", a.device()).mul_(a, s);
    return;
  }
  check_cpu("mul_", {&a});
  TANDEM_DISPATCH_FLOAT(a.dtype(), "mul_", [&] {
    scalar_t* pa = a.data<scalar_t>();
    const scalar_t v = static_cast<scalar_t>(s);
    if (a.is_contiguous()) {
      parallel_for(0, a.numel(), kGrain, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) pa[i] *= v;
      });
    } else {
      for_each_offset(a.shape(), a.strides(), 0, a.numel(),
                      [&](int64_t, int64_t off) { pa[off] *= v; });
    }
  });
}

}  // namespace tandem
