// ONNX operators at run time (run_step): each compiled Step as core/ops calls on the values of
// one forward pass, so autograd records it like any hand-written model. Constants (not
// registered, so Module::to left them alone) meet activations in the activations' dtype and
// device; integer (shape) tensors stay on the CPU.
#include <algorithm>
#include <array>
#include <limits>
#include <optional>

#include "core/autograd/grad_mode.h"
#include "core/base/error.h"
#include "core/nn/onnx_ops.h"
#include "core/nn/random_context.h"

namespace tandem::onnx_internal {

namespace {

bool is_float(DType d) {
  return d == DType::kF32 || d == DType::kF64 || d == DType::kF16 || d == DType::kBF16;
}

// A constant (not registered, so Module::to did not convert it) in the dtype and on the device
// of the activation it meets.
Tensor like(const Tensor& c, const Tensor& ref) {
  Tensor t = c;
  if (is_float(t.dtype()) && is_float(ref.dtype()) && t.dtype() != ref.dtype())
    t = t.to(ref.dtype());
  if (t.device() != ref.device() && t.numel() > 0) t = t.to(ref.device());
  return t;
}

int64_t wrap(int64_t axis, int64_t rank, const char* what) {
  const int64_t a = axis < 0 ? axis + rank : axis;
  TANDEM_CHECK_SHAPE(a >= 0 && a < rank, what, " ", axis, " is out of range for rank ", rank);
  return a;
}

// Zero (or `value`) padding of an (N, C, H, W) tensor, differentiable (cat of constant blocks).
Tensor pad2d(const Tensor& x, int64_t top, int64_t left, int64_t bottom, int64_t right,
             double value) {
  Tensor y = x;
  const int64_t n = y.size(0), c = y.size(1);
  if (left > 0 || right > 0) {
    std::vector<Tensor> parts;
    if (left > 0) parts.push_back(full({n, c, y.size(2), left}, value, y.dtype(), y.device()));
    parts.push_back(y);
    if (right > 0) parts.push_back(full({n, c, y.size(2), right}, value, y.dtype(), y.device()));
    y = cat(parts, 3);
  }
  if (top > 0 || bottom > 0) {
    std::vector<Tensor> parts;
    if (top > 0) parts.push_back(full({n, c, top, y.size(3)}, value, y.dtype(), y.device()));
    parts.push_back(y);
    if (bottom > 0) parts.push_back(full({n, c, bottom, y.size(3)}, value, y.dtype(), y.device()));
    y = cat(parts, 2);
  }
  return y;
}

// The pads of `w` for input (h, w) with kernel extents (kh, kw) after dilation: explicit ones, or
// the SAME_* / VALID rule.
std::array<int64_t, 4> resolve_pads(const Window& w, int64_t h, int64_t wd, int64_t kh,
                                    int64_t kw) {
  if (w.auto_pad == "NOTSET") return {w.pad_top, w.pad_left, w.pad_bottom, w.pad_right};
  if (w.auto_pad == "VALID") return {0, 0, 0, 0};
  auto same = [&](int64_t in, int64_t k, int64_t s) {
    const int64_t out = (in + s - 1) / s;
    return std::max<int64_t>((out - 1) * s + k - in, 0);
  };
  const int64_t th = same(h, kh, w.stride_h), tw = same(wd, kw, w.stride_w);
  if (w.auto_pad == "SAME_UPPER") return {th / 2, tw / 2, th - th / 2, tw - tw / 2};
  return {th - th / 2, tw - tw / 2, th / 2, tw / 2};  // SAME_LOWER
}

// Symmetric pads go to the op (pad_h, pad_w); asymmetric ones are applied to x, filled with `fill`.
Tensor pad_for_window(const Tensor& x, const std::array<int64_t, 4>& p, int64_t& pad_h,
                      int64_t& pad_w, double fill) {
  if (p[0] == p[2] && p[1] == p[3]) {
    pad_h = p[0];
    pad_w = p[1];
    return x;
  }
  return pad2d(x, p[0], p[1], p[2], p[3], fill);
}

void check_image(const Tensor& x, const char* op) {
  TANDEM_CHECK_SHAPE(x.dim() == 4, op, ": expected an (N, C, H, W) input, got ",
                     shape_str(x.shape()));
}

Tensor run_conv(const Step& s, const Tensor& x, const Tensor& w_in, const Tensor& b_in) {
  check_image(x, "Conv");
  Tensor w = like(w_in, x), b = b_in.defined() ? like(b_in, x) : Tensor();
  TANDEM_CHECK_SHAPE(w.dim() == 4, "Conv: expected a 4-D weight, got ", shape_str(w.shape()));
  const Window& win = s.window;
  const int64_t kh = (w.size(2) - 1) * win.dilation_h + 1,
                kw = (w.size(3) - 1) * win.dilation_w + 1;
  auto p = resolve_pads(win, x.size(2), x.size(3), kh, kw);
  Conv2dOptions o;
  o.stride_h = win.stride_h;
  o.stride_w = win.stride_w;
  o.dilation_h = win.dilation_h;
  o.dilation_w = win.dilation_w;
  o.groups = s.group;
  return conv2d(pad_for_window(x, p, o.pad_h, o.pad_w, 0.0), w, b, o);
}

Tensor run_pool(const Step& s, const Tensor& x, bool max) {
  check_image(x, max ? "MaxPool" : "AveragePool");
  const Window& win = s.window;
  auto p = resolve_pads(win, x.size(2), x.size(3), win.kernel_h, win.kernel_w);
  Pool2dOptions o;
  o.kernel_h = win.kernel_h;
  o.kernel_w = win.kernel_w;
  o.stride_h = win.stride_h;
  o.stride_w = win.stride_w;
  o.ceil_mode = win.ceil_mode;
  o.count_include_pad = s.count_include_pad;
  const bool symmetric = p[0] == p[2] && p[1] == p[3];
  TANDEM_CHECK_T(Unimplemented, symmetric || max || s.count_include_pad,
                 "AveragePool: asymmetric pads with count_include_pad = 0 are not supported");
  Tensor in =
      pad_for_window(x, p, o.pad_h, o.pad_w, max ? -std::numeric_limits<double>::infinity() : 0.0);
  return max ? max_pool2d(in, o) : avg_pool2d(in, o);
}

Tensor run_gemm(const Step& s, const Tensor& a, const Tensor& b_in, const Tensor& c_in) {
  Tensor b = like(b_in, a), c = c_in.defined() ? like(c_in, a) : Tensor();
  TANDEM_CHECK_SHAPE(a.dim() == 2 && b.dim() == 2, "Gemm: expected 2-D A and B, got ",
                     shape_str(a.shape()), " and ", shape_str(b.shape()));
  // torch.nn.Linear's export: one GEMM with the bias folded in.
  if (!s.trans_a && s.trans_b && s.alpha == 1.0 && s.beta == 1.0 &&
      (!c.defined() || (c.dim() == 1 && c.size(0) == b.size(0))))
    return linear(a, b, c);
  Tensor y = matmul(s.trans_a ? a.t() : a, s.trans_b ? b.t() : b);
  if (s.alpha != 1.0) y = mul(y, s.alpha);
  if (c.defined()) y = add(y, s.beta != 1.0 ? mul(c, s.beta) : c);
  return y;
}

// The dims of `x` after ONNX Reshape with target `spec` (0 copies the input dim unless allowzero,
// -1 is inferred).
Shape reshape_target(const Tensor& x, const std::vector<int64_t>& spec, bool allowzero) {
  Shape out(spec.size());
  int64_t infer = -1, known = 1;
  for (size_t i = 0; i < spec.size(); ++i) {
    int64_t d = spec[i];
    if (d == 0 && !allowzero) {
      TANDEM_CHECK_SHAPE(static_cast<int64_t>(i) < x.dim(), "Reshape: 0 at position ", i,
                         " but the input ", shape_str(x.shape()), " has no such dimension");
      d = x.size(static_cast<int64_t>(i));
    }
    if (d == -1) {
      TANDEM_CHECK_SHAPE(infer < 0, "Reshape: more than one -1 in ", shape_str(spec));
      infer = static_cast<int64_t>(i);
      out[i] = 1;
      continue;
    }
    TANDEM_CHECK_SHAPE(d >= 0, "Reshape: bad dimension ", d, " in ", shape_str(spec));
    out[i] = d;
    known *= d;
  }
  if (infer >= 0) {
    TANDEM_CHECK_SHAPE(known > 0 && x.numel() % known == 0, "Reshape: cannot reshape ",
                       shape_str(x.shape()), " to ", shape_str(spec));
    out[static_cast<size_t>(infer)] = x.numel() / known;
  }
  TANDEM_CHECK_SHAPE(shape_numel(out) == x.numel(), "Reshape: cannot reshape ",
                     shape_str(x.shape()), " (", x.numel(), " elements) to ", shape_str(spec));
  return out;
}

Tensor run_gather(const Step& s, const Tensor& x, const Tensor& idx_in) {
  const int64_t axis = wrap(s.axis, x.dim(), "Gather: axis");
  const std::vector<int64_t> idx = idx_in.values<int64_t>();
  const int64_t n = x.size(axis);
  std::vector<double> fixed;
  for (int64_t i : idx) {
    const int64_t j = i < 0 ? i + n : i;
    TANDEM_CHECK_SHAPE(j >= 0 && j < n, "Gather: index ", i, " is out of range for size ", n);
    fixed.push_back(static_cast<double>(j));
  }
  if (idx_in.dim() == 0) return x.select(axis, static_cast<int64_t>(fixed[0]));
  Tensor index = from_vector(fixed, {static_cast<int64_t>(fixed.size())}, DType::kI64);
  Tensor y = index_select(x, axis, x.is_cuda() ? index.to(x.device()) : index);
  if (idx_in.dim() == 1) return y;
  Shape shape;  // x.shape[:axis] + idx.shape + x.shape[axis+1:]
  for (int64_t d = 0; d < axis; ++d) shape.push_back(x.size(d));
  for (int64_t d : idx_in.shape()) shape.push_back(d);
  for (int64_t d = axis + 1; d < x.dim(); ++d) shape.push_back(x.size(d));
  return y.reshape(shape);
}

Tensor binary(Kind k, const Tensor& a_in, const Tensor& b_in) {
  // Constants meet activations in the activation's dtype and device.
  Tensor a = a_in, b = b_in;
  if (is_float(a.dtype()) && is_float(b.dtype())) {
    if (!a.requires_grad() && b.requires_grad())
      a = like(a, b);
    else
      b = like(b, a);
    if (a.dtype() != b.dtype() || a.device() != b.device()) a = like(a, b);
  }
  switch (k) {
    case Kind::kAdd:
      return add(a, b);
    case Kind::kSub:
      return sub(a, b);
    case Kind::kMul:
      return mul(a, b);
    case Kind::kDiv:
      return div(a, b);
    default:
      return matmul(a, b);
  }
}

}  // namespace

// Long: one case per supported ONNX operator (a dispatch table); each case is a line or two.
void run_step(const Step& s, RunState& st) {
  std::vector<Tensor>& v = st.values;
  auto in = [&](size_t i) -> const Tensor& {
    static const Tensor undefined;
    if (i >= s.in.size() || s.in[i] < 0) return undefined;
    const Tensor& t = v[static_cast<size_t>(s.in[i])];
    TANDEM_CHECK(t.defined(), "input ", i,
                 " has no value (it comes from an output this "
                 "importer does not produce)");
    return t;
  };
  auto set = [&](size_t i, Tensor t) {
    if (i < s.out.size() && s.out[i] >= 0) v[static_cast<size_t>(s.out[i])] = std::move(t);
  };
  switch (s.kind) {
    case Kind::kConv:
      set(0, run_conv(s, in(0), in(1), in(2)));
      break;
    case Kind::kGemm:
      set(0, run_gemm(s, in(0), in(1), in(2)));
      break;
    case Kind::kMatMul:
    case Kind::kAdd:
    case Kind::kSub:
    case Kind::kMul:
    case Kind::kDiv:
      set(0, binary(s.kind, in(0), in(1)));
      break;
    case Kind::kRelu:
      set(0, relu(in(0)));
      break;
    case Kind::kLeakyRelu:
      set(0, leaky_relu(in(0), s.alpha));
      break;
    case Kind::kSigmoid:
      set(0, sigmoid(in(0)));
      break;
    case Kind::kTanh:
      set(0, tanh(in(0)));
      break;
    case Kind::kSoftmax:
      set(0, softmax(in(0), s.axis));
      break;
    case Kind::kLogSoftmax:
      set(0, log_softmax(in(0), s.axis));
      break;
    case Kind::kMaxPool:
      set(0, run_pool(s, in(0), true));
      break;
    case Kind::kAveragePool:
      set(0, run_pool(s, in(0), false));
      break;
    case Kind::kGlobalAveragePool: {
      const Tensor& x = in(0);
      TANDEM_CHECK_SHAPE(x.dim() >= 3, "GlobalAveragePool: expected (N, C, ...), got ",
                         shape_str(x.shape()));
      std::vector<int64_t> dims;
      for (int64_t d = 2; d < x.dim(); ++d) dims.push_back(d);
      set(0, mean(x, dims, /*keepdim=*/true));
      break;
    }
    case Kind::kBatchNorm: {
      const Tensor& x = in(0);
      Tensor mean_buf = v[static_cast<size_t>(s.in[3])], var_buf = v[static_cast<size_t>(s.in[4])];
      if (st.training) {
        TANDEM_CHECK_SHAPE(x.dim() >= 2 && x.numel() / std::max<int64_t>(x.size(1), 1) > 1,
                           "BatchNormalization: expected more than 1 value per channel when "
                           "training, got input ",
                           shape_str(x.shape()));
        if (s.bn_counter >= 0) {
          NoGradGuard no_grad;
          Tensor& c = st.bn_counters[static_cast<size_t>(s.bn_counter)];
          if (c.is_cuda())
            c.copy_(add(c, 1.0));
          else
            c.data<int64_t>()[0] += 1;
        }
      }
      set(0, batch_norm(x, mean_buf, var_buf, like(in(1), x), like(in(2), x), st.training,
                        s.momentum, s.eps));
      set(1, mean_buf);
      set(2, var_buf);
      break;
    }
    case Kind::kDropout: {
      const Tensor& x = in(0);
      if (!st.training) {
        set(0, x);
        break;
      }
      std::optional<DropoutKey> key = next_dropout_key();
      if (!key) key = DropoutKey{0, kUnscopedDropoutStream + st.unscoped_dropout_calls++, 0};
      set(0, s.ratio == 0 ? x : dropout(x, s.ratio, true, *key));
      break;
    }
    case Kind::kFlatten: {
      const Tensor& x = in(0);
      const int64_t axis = s.axis < 0 ? s.axis + x.dim() : s.axis;
      TANDEM_CHECK_SHAPE(axis >= 0 && axis <= x.dim(), "Flatten: axis ", s.axis,
                         " is out of range for rank ", x.dim());
      int64_t outer = 1;
      for (int64_t d = 0; d < axis; ++d) outer *= x.size(d);
      set(0, x.reshape({outer, outer == 0 ? 0 : x.numel() / outer}));
      break;
    }
    case Kind::kReshape: {
      const Tensor& x = in(0);
      set(0, x.reshape(reshape_target(x, in(1).values<int64_t>(), s.allowzero)));
      break;
    }
    case Kind::kConcat: {
      std::vector<Tensor> parts;
      for (size_t i = 0; i < s.in.size(); ++i) parts.push_back(in(i));
      for (Tensor& p : parts) p = like(p, parts[0]);
      set(0, parts.size() == 1 ? parts[0] : cat(parts, s.axis));
      break;
    }
    case Kind::kIdentity:
      set(0, in(0));
      break;
    case Kind::kConstant:
      set(0, s.constant);
      break;
    case Kind::kShape: {
      const Tensor& x = in(0);
      const int64_t r = x.dim();
      auto clamp = [r](int64_t i) { return std::clamp<int64_t>(i < 0 ? i + r : i, 0, r); };
      std::vector<double> dims;
      for (int64_t d = clamp(s.shape_start); d < clamp(s.shape_end); ++d)
        dims.push_back(static_cast<double>(x.size(d)));
      set(0, from_vector(dims, {static_cast<int64_t>(dims.size())}, DType::kI64));
      break;
    }
    case Kind::kGather:
      set(0, run_gather(s, in(0), in(1)));
      break;
    case Kind::kUnsqueeze: {
      Tensor y = in(0);
      const int64_t rank = y.dim() + static_cast<int64_t>(s.ints.size());
      std::vector<int64_t> axes;
      for (int64_t a : s.ints) axes.push_back(wrap(a, rank, "Unsqueeze: axis"));
      std::sort(axes.begin(), axes.end());
      for (int64_t a : axes) y = y.unsqueeze(a);
      set(0, y);
      break;
    }
    case Kind::kSqueeze: {
      Tensor y = in(0);
      std::vector<int64_t> axes;
      if (s.has_ints) {
        for (int64_t a : s.ints) axes.push_back(wrap(a, y.dim(), "Squeeze: axis"));
      } else {
        for (int64_t d = 0; d < y.dim(); ++d)
          if (y.size(d) == 1) axes.push_back(d);
      }
      std::sort(axes.rbegin(), axes.rend());
      for (int64_t a : axes) {
        TANDEM_CHECK_SHAPE(y.size(a) == 1, "Squeeze: dimension ", a, " of ", shape_str(y.shape()),
                           " is not 1");
        y = y.squeeze(a);
      }
      set(0, y);
      break;
    }
    case Kind::kTranspose: {
      const Tensor& x = in(0);
      std::vector<int64_t> perm = s.ints;
      if (!s.has_ints)
        for (int64_t d = x.dim() - 1; d >= 0; --d) perm.push_back(d);
      set(0, x.permute(perm));
      break;
    }
    case Kind::kPad: {
      const Tensor& x = in(0);
      TANDEM_CHECK_SHAPE(x.dim() * 2 == static_cast<int64_t>(s.ints.size()) && x.dim() == 4,
                         "Pad: pads ", shape_str(s.ints), " do not fit input ",
                         shape_str(x.shape()));
      // ONNX pads: [x1_begin, x2_begin, ..., x1_end, x2_end, ...].
      set(0, pad2d(x, s.ints[2], s.ints[3], s.ints[6], s.ints[7], s.alpha));
      break;
    }
    case Kind::kReduceMean: {
      const Tensor& x = in(0);
      std::vector<int64_t> axes = s.ints;
      if (!s.has_ints)
        for (int64_t d = 0; d < x.dim(); ++d) axes.push_back(d);
      set(0, mean(x, axes, s.keepdims));
      break;
    }
  }
}

}  // namespace tandem::onnx_internal
