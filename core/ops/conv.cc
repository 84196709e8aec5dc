// 2-D convolution on the CPU, by one of two backends (the rule and its evidence: conv.h). This
// file checks the arguments, picks the backend, runs the forward and records the one autograd
// node; the backward closure calls the same backend the forward used.
//
// im2col + GEMM (here), parallel over the batch: each thread takes a chunk of samples, unfolds
// one sample at a time into its own column scratch and runs a single-threaded GEMM (OpenBLAS is
// single-threaded inside a parallel region) straight into out[n]; 1x1 stride-1 unpadded
// convolutions use the sample itself as the column matrix. Backward recomputes the columns
// instead of keeping them from forward (they are C*kh*kw times the input), accumulates the weight
// and bias gradients per thread and adds the partial sums in chunk order (the result does not
// depend on scheduling), and computes the input gradient (W^T @ gout[n], then col2im) only when
// the input required grad at forward time.
//
// oneDNN (conv_dnnl.h) for f32 convolutions with many channels per group: 1.2-2.8x faster there
// (benchmarks/conv_backends.cc); its backward also skips the input gradient when not needed.
#include <strings.h>

#include <algorithm>
#include <mutex>

#include "core/autograd/node.h"
#include "core/backends/autocast.h"
#include "core/backends/device_backend.h"
#include "core/ops/blas.h"
#include "core/ops/conv.h"
#include "core/ops/conv_dnnl.h"
#include "core/ops/dispatch.h"
#include "core/ops/im2col.h"
#include "core/ops/ops.h"
#include "core/parallel/parallel.h"

namespace tandem {
namespace {

struct ConvShape {
  ConvGeometry geo;  // of one sample, all channels
  int64_t batch = 0, out_channels = 0, groups = 1;
  int64_t group_in() const { return geo.channels / groups; }
  int64_t group_out() const { return out_channels / groups; }
  int64_t group_k() const { return group_in() * geo.kernel_h * geo.kernel_w; }  // GEMM depth
};

ConvShape conv_shape(const Tensor& x, const Tensor& w, const Tensor& bias, const Conv2dOptions& o) {
  TANDEM_CHECK_SHAPE(x.dim() == 4, "conv2d: input must be (N, C, H, W), got ",
                     shape_str(x.shape()));
  TANDEM_CHECK_SHAPE(w.dim() == 4, "conv2d: weight must be (O, C / groups, kh, kw), got ",
                     shape_str(w.shape()));
  TANDEM_CHECK(o.stride_h >= 1 && o.stride_w >= 1 && o.dilation_h >= 1 && o.dilation_w >= 1 &&
                   o.pad_h >= 0 && o.pad_w >= 0 && o.groups >= 1,
               "conv2d: stride (", o.stride_h, ", ", o.stride_w, ") and dilation (", o.dilation_h,
               ", ", o.dilation_w, ") must be >= 1, padding (", o.pad_h, ", ", o.pad_w,
               ") >= 0 and groups (", o.groups, ") >= 1");
  ConvShape s;
  s.batch = x.size(0);
  s.groups = o.groups;
  s.out_channels = w.size(0);
  const int64_t C = x.size(1);
  TANDEM_CHECK_SHAPE(C % o.groups == 0 && s.out_channels % o.groups == 0,
                     "conv2d: groups = ", o.groups, " must divide both the input channels (", C,
                     ") and the output channels (", s.out_channels, "); input ",
                     shape_str(x.shape()), ", weight ", shape_str(w.shape()));
  TANDEM_CHECK_SHAPE(w.size(1) * o.groups == C, "conv2d: input ", shape_str(x.shape()), " has ", C,
                     " channels but weight ", shape_str(w.shape()), " with groups = ", o.groups,
                     " expects ", w.size(1) * o.groups);
  TANDEM_CHECK_SHAPE(!bias.defined() || (bias.dim() == 1 && bias.size(0) == s.out_channels),
                     "conv2d: bias must be (", s.out_channels, "), got ",
                     bias.defined() ? shape_str(bias.shape()) : std::string());
  ConvGeometry& g = s.geo;
  g.channels = C;
  g.height = x.size(2);
  g.width = x.size(3);
  g.kernel_h = w.size(2);
  g.kernel_w = w.size(3);
  g.stride_h = o.stride_h;
  g.stride_w = o.stride_w;
  g.pad_h = o.pad_h;
  g.pad_w = o.pad_w;
  g.dilation_h = o.dilation_h;
  g.dilation_w = o.dilation_w;
  const int64_t eff_h = o.dilation_h * (g.kernel_h - 1) + 1,
                eff_w = o.dilation_w * (g.kernel_w - 1) + 1;
  TANDEM_CHECK_SHAPE(g.kernel_h >= 1 && g.kernel_w >= 1 && eff_h <= g.height + 2 * o.pad_h &&
                         eff_w <= g.width + 2 * o.pad_w,
                     "conv2d: kernel ", eff_h, "x", eff_w,
                     " (dilated) is larger than the padded input ", g.height + 2 * o.pad_h, "x",
                     g.width + 2 * o.pad_w, "; input ", shape_str(x.shape()), ", weight ",
                     shape_str(w.shape()));
  g.out_h = (g.height + 2 * o.pad_h - eff_h) / o.stride_h + 1;
  g.out_w = (g.width + 2 * o.pad_w - eff_w) / o.stride_w + 1;
  return s;
}

// Column scratch for one thread, or null when the sample is its own column matrix.
template <typename T>
T* col_scratch(const ConvShape& s, DType dtype, Tensor* holder) {
  if (s.geo.is_pointwise()) return nullptr;
  *holder = empty({s.geo.col_rows() * s.geo.col_cols()}, dtype);
  return holder->data<T>();
}

template <typename T>
void conv_forward(const ConvShape& s, const T* x, const T* w, const T* bias, T* out, DType dtype) {
  const ConvGeometry& g = s.geo;
  const int64_t ohw = g.col_cols(), in_size = g.channels * g.height * g.width;
  const int64_t og = s.group_out(), kg = s.group_k(), O = s.out_channels;
  parallel_for(0, s.batch, 1, [&](int64_t b, int64_t e) {
    Tensor holder;
    T* cols = col_scratch<T>(s, dtype, &holder);
    for (int64_t n = b; n < e; ++n) {
      const T* src = x + n * in_size;
      if (cols != nullptr) {
        im2col(src, g, cols);
        src = cols;
      }
      T* on = out + n * O * ohw;
      // The bias is folded into the GEMM: rows start as the bias and the product adds on (beta
      // = 1), which costs no more than the zeroing OpenBLAS does for beta = 0.
      T beta = T(0);
      if (bias != nullptr) {
        for (int64_t o = 0; o < O; ++o) vec::fill(on + o * ohw, bias[o], ohw);
        beta = T(1);
      }
      for (int64_t grp = 0; grp < s.groups; ++grp)
        gemm(false, false, og, ohw, kg, T(1), w + grp * og * kg, kg, src + grp * kg * ohw, ohw,
             beta, on + grp * og * ohw, ohw);
    }
  });
}

struct ConvGrads {
  Tensor input, weight, bias;
};

// One chunk of the batch's share of the weight gradient (O x kg) and bias gradient (O), each in its
// own tensor (a gradient may end up as a leaf's .grad, so it must own its storage).
struct ConvPartial {
  int64_t begin;
  Tensor weight, bias;
};

// Where conv_backward_sample reads and writes; a null gradient is one not asked for.
template <typename T>
struct ConvBackwardBuffers {
  const T* x;
  const T* w;
  const T* gout;
  T* gin;   // batch x in_size
  T* gw;    // this chunk's weight gradient
  T* gb;    // this chunk's bias gradient
  T* cols;  // im2col scratch, null for a pointwise convolution
};

// Sample n's gradients: its weight and bias gradients are added to the chunk's (the weight's
// overwrites it when `first`), its input gradient is written.
template <typename T>
void conv_backward_sample(const ConvShape& s, const ConvBackwardBuffers<T>& p, int64_t n,
                          bool first) {
  const ConvGeometry& g = s.geo;
  const int64_t ohw = g.col_cols(), in_size = g.channels * g.height * g.width;
  const int64_t og = s.group_out(), kg = s.group_k(), O = s.out_channels;
  const T* gon = p.gout + n * O * ohw;
  if (p.gw != nullptr) {
    const T* src = p.x + n * in_size;
    if (p.cols != nullptr) {
      im2col(src, g, p.cols);
      src = p.cols;
    }
    for (int64_t grp = 0; grp < s.groups; ++grp)
      gemm(false, true, og, kg, ohw, T(1), gon + grp * og * ohw, ohw, src + grp * kg * ohw, ohw,
           first ? T(0) : T(1), p.gw + grp * og * kg, kg);
  }
  if (p.gb != nullptr) {
    for (int64_t o = 0; o < O; ++o) p.gb[o] += static_cast<T>(vec::sum(gon + o * ohw, ohw));
  }
  if (p.gin != nullptr) {
    T* gn = p.gin + n * in_size;
    // Pointwise: W^T @ gout[n] is the input gradient itself; otherwise columns, then col2im.
    T* dst = p.cols != nullptr ? p.cols : gn;
    for (int64_t grp = 0; grp < s.groups; ++grp)
      gemm(true, false, kg, ohw, og, T(1), p.w + grp * og * kg, kg, gon + grp * og * ohw, ohw, T(0),
           dst + grp * kg * ohw, ohw);
    if (p.cols != nullptr) {
      std::fill(gn, gn + in_size, T(0));
      col2im_add(p.cols, g, gn);
    }
  }
}

// Adds the chunks' partial sums in batch order, so the result does not depend on scheduling.
template <typename T>
void sum_partials(std::vector<ConvPartial>* partials, ConvGrads* r) {
  std::sort(partials->begin(), partials->end(),
            [](const ConvPartial& a, const ConvPartial& c) { return a.begin < c.begin; });
  for (size_t i = 0; i < partials->size(); ++i) {
    const ConvPartial& part = (*partials)[i];
    if (part.weight.defined()) {
      if (i == 0)
        r->weight = part.weight;
      else
        vec::add(r->weight.data<T>(), part.weight.data<T>(), part.weight.numel());
    }
    if (part.bias.defined()) {
      if (i == 0)
        r->bias = part.bias;
      else
        vec::add(r->bias.data<T>(), part.bias.data<T>(), part.bias.numel());
    }
  }
}

template <typename T>
ConvGrads conv_backward(const ConvShape& s, const Tensor& xt, const Tensor& wt, const Tensor& got,
                        bool need_x, bool need_w, bool need_b) {
  const ConvGeometry& g = s.geo;
  const DType dtype = xt.dtype();
  ConvGrads r;
  if (need_x) r.input = empty({s.batch, g.channels, g.height, g.width}, dtype);
  std::mutex mu;
  std::vector<ConvPartial> partials;
  parallel_for(0, s.batch, 1, [&](int64_t b, int64_t e) {
    Tensor holder;
    ConvBackwardBuffers<T> p{xt.data<T>(), wt.data<T>(), got.data<T>(), nullptr,
                             nullptr,      nullptr,      nullptr};
    if (need_x) p.gin = r.input.data<T>();
    if (need_w || need_x) p.cols = col_scratch<T>(s, dtype, &holder);
    ConvPartial part{b, Tensor(), Tensor()};
    if (need_w) {
      part.weight = empty({s.out_channels, s.group_in(), g.kernel_h, g.kernel_w}, dtype);
      p.gw = part.weight.data<T>();
    }
    if (need_b) {
      part.bias = zeros({s.out_channels}, dtype);
      p.gb = part.bias.data<T>();
    }
    for (int64_t n = b; n < e; ++n) conv_backward_sample(s, p, n, n == b);
    if (need_w || need_b) {
      std::lock_guard<std::mutex> lock(mu);
      partials.push_back(part);
    }
  });
  sum_partials<T>(&partials, &r);
  return r;
}

// ---------------------------------------------------------------- oneDNN

onednn::ConvProblem onednn_problem(const ConvShape& s, bool has_bias) {
  onednn::ConvProblem p;
  p.geo = s.geo;
  p.batch = s.batch;
  p.out_channels = s.out_channels;
  p.groups = s.groups;
  p.bias = has_bias;
  return p;
}

ConvGrads onednn_backward(const ConvShape& s, bool has_bias, const Tensor& xt, const Tensor& wt,
                          const Tensor& got, bool need_x, bool need_w, bool need_b) {
  const onednn::ConvProblem p = onednn_problem(s, has_bias);
  ConvGrads r;
  if (need_x) {
    r.input = empty(xt.shape());
    onednn::conv_backward_data(p, wt.data<float>(), got.data<float>(), r.input.data<float>());
  }
  if (need_w) r.weight = empty(wt.shape());
  if (need_b) r.bias = empty({s.out_channels});
  onednn::conv_backward_weights(p, xt.data<float>(), got.data<float>(),
                                need_w ? r.weight.data<float>() : nullptr,
                                need_b ? r.bias.data<float>() : nullptr);
  return r;
}

// ---------------------------------------------------------------- the rule

// The name of the GEMM kernel set OpenBLAS chose when it loaded ("Haswell", "SkylakeX", ...).
extern "C" char* openblas_get_corename(void);

thread_local ConvBackend t_forced = ConvBackend::kAuto;  // ScopedConvBackend

ConvBackend choose_backend(const ConvShape& s, DType dtype) {
  switch (t_forced) {
    case ConvBackend::kIm2col:
      return ConvBackend::kIm2col;
    case ConvBackend::kOnednn:
      TANDEM_CHECK_T(Unimplemented, dtype == DType::kF32,
                     "conv2d: the oneDNN backend does not support ", dtype_name(dtype),
                     " (f32 only); use ConvBackend::kAuto or kIm2col");
      return ConvBackend::kOnednn;
    case ConvBackend::kAuto:
      break;
  }
  const bool one_by_one = s.geo.kernel_h == 1 && s.geo.kernel_w == 1;
  return dtype == DType::kF32 && s.batch > 0 && s.group_in() >= kOnednnMinGroupChannels &&
                 (!one_by_one || conv2d_onednn_for_1x1())
             ? ConvBackend::kOnednn
             : ConvBackend::kIm2col;
}

}  // namespace

bool conv2d_onednn_for_1x1() {
  static const bool avx2_gemm = [] {
    const char* core = openblas_get_corename();
    for (const char* avx512 : {"SkylakeX", "Cooperlake", "SapphireRapids"})
      if (core != nullptr && strcasecmp(core, avx512) == 0) return false;
    return true;
  }();
  return avx2_gemm;
}

ScopedConvBackend::ScopedConvBackend(ConvBackend backend) : saved_(t_forced) {
  t_forced = backend;
}
ScopedConvBackend::~ScopedConvBackend() {
  t_forced = saved_;
}

const char* conv2d_backend_for(const Tensor& x, const Tensor& weight, const Conv2dOptions& opt) {
  return choose_backend(conv_shape(x, weight, Tensor(), opt), x.dtype()) == ConvBackend::kOnednn
             ? "onednn"
             : "im2col";
}

// conv2d on a device backend (cuDNN on CUDA): same shapes and autograd as the CPU path.
Tensor conv2d_device(const ConvShape& s, const Tensor& x, const Tensor& weight, const Tensor& bias,
                     const Conv2dOptions& opt) {
  Tensor xd = x.detach().contiguous(), wd = weight.detach().contiguous();
  Tensor bd = bias.defined() ? bias.detach().contiguous() : Tensor();
  Tensor out = empty({s.batch, s.out_channels, s.geo.out_h, s.geo.out_w}, x.dtype(), x.device());
  if (out.numel() > 0) backend_for("conv2d", x.device()).conv2d(xd, wd, bd, opt, out);
  const bool nx = x.requires_grad(), nw = weight.requires_grad();
  const bool has_bias = bias.defined(), nb = has_bias && bias.requires_grad();
  std::vector<Tensor> inputs{x, weight};
  if (has_bias) inputs.push_back(bias);
  record(
      "Conv2dBackward", inputs, {out},
      [xd, wd, opt, nx, nw, nb, has_bias](const std::vector<Tensor>& gr) {
        Tensor go = gr[0].contiguous();
        Tensor gx = nx ? empty(xd.shape(), xd.dtype(), xd.device()) : Tensor();
        Tensor gw = nw ? empty(wd.shape(), wd.dtype(), wd.device()) : Tensor();
        Tensor gb = nb ? empty({wd.shape()[0]}, wd.dtype(), wd.device()) : Tensor();
        if (go.numel() == 0) {
          for (Tensor* t : {&gx, &gw, &gb})
            if (t->defined()) t->zero_();
        } else {
          backend_for("conv2d backward", xd.device()).conv2d_backward(xd, wd, go, opt, gx, gw, gb);
        }
        std::vector<Tensor> grads{gx, gw};
        if (has_bias) grads.push_back(gb);
        return grads;
      });
  return out;
}

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dOptions& opt) {
  if (autocast_applies({&x, &weight, &bias}) && weight.dim() == 4) {
    // cuDNN in the low dtype; the bias is added in f32 (its gradient is a reduction).
    const DType lo = autocast_dtype();
    Tensor y = conv2d(x.to(lo), weight.to(lo), Tensor(), opt).to(DType::kF32);
    return bias.defined() ? add(y, bias.view({1, -1, 1, 1})) : y;
  }
  check_same_dtype("conv2d", {&x, &weight, &bias});
  if (x.is_cuda() || weight.is_cuda()) {
    check_same_device("conv2d", {&x, &weight, &bias});
    return conv2d_device(conv_shape(x, weight, bias, opt), x, weight, bias, opt);
  }
  check_cpu("conv2d", {&x, &weight, &bias});
  ConvShape s = conv_shape(x, weight, bias, opt);
  const ConvGeometry& g = s.geo;
  const ConvBackend backend = choose_backend(s, x.dtype());
  Tensor xd = x.detach().contiguous(), wd = weight.detach().contiguous();
  Tensor bd = bias.defined() ? bias.detach().contiguous() : Tensor();
  Tensor out = empty({s.batch, s.out_channels, g.out_h, g.out_w}, x.dtype());
  if (out.numel() > 0) {
    if (backend == ConvBackend::kOnednn) {
      onednn::conv_forward(onednn_problem(s, bd.defined()), xd.data<float>(), wd.data<float>(),
                           bd.defined() ? bd.data<float>() : nullptr, out.data<float>());
    } else {
      TANDEM_DISPATCH_FLOAT(x.dtype(), "conv2d", [&] {
        conv_forward<scalar_t>(s, xd.data<scalar_t>(), wd.data<scalar_t>(),
                               bd.defined() ? bd.data<scalar_t>() : nullptr, out.data<scalar_t>(),
                               x.dtype());
      });
    }
  }
  const bool nx = x.requires_grad(), nw = weight.requires_grad();
  const bool has_bias = bias.defined(), nb = has_bias && bias.requires_grad();
  std::vector<Tensor> inputs{x, weight};
  if (bias.defined()) inputs.push_back(bias);
  // The backward uses the forward's backend: both halves of a step round the same way.
  record("Conv2dBackward", inputs, {out},
         [s, xd, wd, nx, nw, nb, has_bias, backend](const std::vector<Tensor>& gr) {
           Tensor go = gr[0].contiguous();
           ConvGrads cg;
           if (s.batch == 0 || go.numel() == 0) {
             if (nx) cg.input = zeros(xd.shape(), xd.dtype());
             if (nw) cg.weight = zeros(wd.shape(), wd.dtype());
             if (nb) cg.bias = zeros({s.out_channels}, wd.dtype());
           } else if (backend == ConvBackend::kOnednn) {
             cg = onednn_backward(s, has_bias, xd, wd, go, nx, nw, nb);
           } else {
             cg = TANDEM_DISPATCH_FLOAT(xd.dtype(), "conv2d backward", [&] {
               return conv_backward<scalar_t>(s, xd, wd, go, nx, nw, nb);
             });
           }
           std::vector<Tensor> grads{cg.input, cg.weight};
           if (has_bias) grads.push_back(cg.bias);
           return grads;
         });
  return out;
}

}  // namespace tandem
