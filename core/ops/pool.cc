// 2-D pooling on the CPU (max, average, adaptive average), NCHW, parallel over the N*C planes.
// Output sizes, window clipping, ceil_mode and count_include_pad follow PyTorch exactly. Max
// pooling keeps the argmax of every window (an i32 offset inside the plane) from forward, so its
// backward is a scatter-add with no comparisons; its forward selects without branches (the argmax
// of random data is unpredictable), eight windows at a time for the common 2x2/2 in f32.
#include <algorithm>
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

struct PlaneShape {
  int64_t planes = 0, height = 0, width = 0, out_h = 0, out_w = 0;
  Shape in_shape, out_shape;  // as the caller sees them (3-D or 4-D)
};

// (C, H, W) or (N, C, H, W) input.
PlaneShape plane_shape(const char* op, const Tensor& x) {
  TANDEM_CHECK_SHAPE(x.dim() == 3 || x.dim() == 4, op,
                     ": input must be (N, C, H, W) or (C, H, W), got ", shape_str(x.shape()));
  PlaneShape p;
  p.in_shape = x.shape();
  p.height = x.size(-2);
  p.width = x.size(-1);
  p.planes = x.dim() == 4 ? x.size(0) * x.size(1) : x.size(0);
  return p;
}

void set_out_shape(PlaneShape& p, int64_t oh, int64_t ow) {
  p.out_h = oh;
  p.out_w = ow;
  p.out_shape = p.in_shape;
  p.out_shape[p.out_shape.size() - 2] = oh;
  p.out_shape[p.out_shape.size() - 1] = ow;
}

// PyTorch's pooling_output_shape (dilation 1).
int64_t pooled_size(int64_t in, int64_t k, int64_t pad, int64_t stride, bool ceil_mode) {
  int64_t num = in + 2 * pad - (k - 1) - 1 + (ceil_mode ? stride - 1 : 0);
  int64_t out = (num >= 0 ? num / stride : -((-num + stride - 1) / stride)) + 1;
  // In ceil mode the last window must start inside the image (or its left padding).
  if (ceil_mode && (out - 1) * stride >= in + pad) --out;
  return out;
}

PlaneShape pool_shape(const char* op, const Tensor& x, const Pool2dOptions& o) {
  PlaneShape p = plane_shape(op, x);
  TANDEM_CHECK(o.kernel_h >= 1 && o.kernel_w >= 1 && o.stride_h >= 1 && o.stride_w >= 1 &&
                   o.pad_h >= 0 && o.pad_w >= 0,
               op, ": kernel (", o.kernel_h, ", ", o.kernel_w, ") and stride (", o.stride_h, ", ",
               o.stride_w, ") must be >= 1 and padding (", o.pad_h, ", ", o.pad_w, ") >= 0");
  TANDEM_CHECK_SHAPE(o.pad_h <= o.kernel_h / 2 && o.pad_w <= o.kernel_w / 2, op, ": padding (",
                     o.pad_h, ", ", o.pad_w, ") must be at most half the kernel (", o.kernel_h,
                     ", ", o.kernel_w, ")");
  const int64_t oh = pooled_size(p.height, o.kernel_h, o.pad_h, o.stride_h, o.ceil_mode);
  const int64_t ow = pooled_size(p.width, o.kernel_w, o.pad_w, o.stride_w, o.ceil_mode);
  TANDEM_CHECK_SHAPE(oh >= 1 && ow >= 1, op, ": input ", shape_str(x.shape()),
                     " is too small for kernel (", o.kernel_h, ", ", o.kernel_w, ") with padding (",
                     o.pad_h, ", ", o.pad_w, "): output would be ", oh, "x", ow);
  set_out_shape(p, oh, ow);
  return p;
}

int64_t plane_grain(const PlaneShape& p) {
  return std::max<int64_t>(1, 32768 / std::max<int64_t>(p.height * p.width, 1));
}

// ---------------------------------------------------------------- max pooling

// PyTorch's rule: a later element wins when greater, or when NaN (NaN propagates). Written with
// bit masks because GCC turns the float selects into branches, and on random data the argmax is
// unpredictable: mispredictions cost more than all the loads.
template <typename T>
inline void take_if_greater(T v, int32_t i, T& best, int32_t& bi) {
  using Bits = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;
  const Bits take = -static_cast<Bits>(v > best) | -static_cast<Bits>(__builtin_isunordered(v, v));
  Bits vb, bb;
  std::memcpy(&vb, &v, sizeof(T));
  std::memcpy(&bb, &best, sizeof(T));
  bb = (vb & take) | (bb & ~take);
  std::memcpy(&best, &bb, sizeof(T));
  const int32_t take32 = static_cast<int32_t>(take);
  bi = (i & take32) | (bi & ~take32);
}

// Outputs [ow, OW) of one output row of 2x2 / stride 2 max pooling: r0 is the first of the two
// input rows, base the plane offset of r0[0].
template <typename T>
void max_pool_2x2_scalar(const T* r0, int32_t base, int64_t W, int64_t OW, T* op, int32_t* ip,
                         int64_t ow) {
  const T* r1 = r0 + W;
  for (; ow < OW; ++ow) {
    const int64_t c = 2 * ow;
    const int32_t i00 = base + static_cast<int32_t>(c), i10 = i00 + static_cast<int32_t>(W);
    T best = r0[c];
    int32_t bi = i00;
    take_if_greater(r0[c + 1], i00 + 1, best, bi);
    take_if_greater(r1[c], i10, best, bi);
    take_if_greater(r1[c + 1], i10 + 1, best, bi);
    op[ow] = best;
    ip[ow] = bi;
  }
}

template <typename T>
void max_pool_2x2_row(const T* r0, int32_t base, int64_t W, int64_t OW, T* op, int32_t* ip) {
  max_pool_2x2_scalar(r0, base, W, OW, op, ip, 0);
}

// f32: eight windows at a time with vector selects. On random data the argmax is unpredictable,
// and the scalar version's mispredicted branches cost more than everything else.
template <>
void max_pool_2x2_row<float>(const float* r0, int32_t base, int64_t W, int64_t OW, float* op,
                             int32_t* ip) {
  typedef float F8 __attribute__((vector_size(32)));
  typedef int32_t I8 __attribute__((vector_size(32)));
  auto load = [](const float* p) {
    F8 v;
    __builtin_memcpy(&v, p, sizeof(v));
    return v;
  };
  auto take = [](F8 v, I8 i, F8& best, I8& bi) {
    const I8 t = (v > best) | (v != v);  // PyTorch's rule, as take_if_greater
    best = t ? v : best;
    bi = t ? i : bi;
  };
#if defined(__clang__)
#define TANDEM_EVEN(a, b) __builtin_shufflevector(a, b, 0, 2, 4, 6, 8, 10, 12, 14)
#define TANDEM_ODD(a, b) __builtin_shufflevector(a, b, 1, 3, 5, 7, 9, 11, 13, 15)
#else
#define TANDEM_EVEN(a, b) __builtin_shuffle(a, b, I8{0, 2, 4, 6, 8, 10, 12, 14})
#define TANDEM_ODD(a, b) __builtin_shuffle(a, b, I8{1, 3, 5, 7, 9, 11, 13, 15})
#endif
  const float* r1 = r0 + W;
  const I8 lanes = {0, 2, 4, 6, 8, 10, 12, 14};
  const int32_t w32 = static_cast<int32_t>(W);
  int64_t ow = 0;
  for (; ow + 8 <= OW; ow += 8) {  // reads r0[2 ow, 2 ow + 16) <= 2 OW <= W
    const int64_t c = 2 * ow;
    const F8 a0 = load(r0 + c), b0 = load(r0 + c + 8), a1 = load(r1 + c), b1 = load(r1 + c + 8);
    const I8 i00 = (base + static_cast<int32_t>(c)) + lanes;
    F8 best = TANDEM_EVEN(a0, b0);
    I8 bi = i00;
    take(TANDEM_ODD(a0, b0), i00 + 1, best, bi);
    take(TANDEM_EVEN(a1, b1), i00 + w32, best, bi);
    take(TANDEM_ODD(a1, b1), i00 + (w32 + 1), best, bi);
    __builtin_memcpy(op + ow, &best, sizeof(best));
    __builtin_memcpy(ip + ow, &bi, sizeof(bi));
  }
#undef TANDEM_EVEN
#undef TANDEM_ODD
  max_pool_2x2_scalar(r0, base, W, OW, op, ip, ow);
}

template <typename T>
void max_pool_forward(const PlaneShape& p, const Pool2dOptions& o, const T* x, T* out,
                      int32_t* idx) {
  const int64_t H = p.height, W = p.width, OH = p.out_h, OW = p.out_w;
  parallel_for(0, p.planes, plane_grain(p), [&](int64_t b, int64_t e) {
    for (int64_t pl = b; pl < e; ++pl) {
      const T* xp = x + pl * H * W;
      T* op = out + pl * OH * OW;
      int32_t* ip = idx + pl * OH * OW;
      if (o.kernel_h == 2 && o.kernel_w == 2 && o.stride_h == 2 && o.stride_w == 2 &&
          o.pad_h == 0 && o.pad_w == 0 && 2 * OH <= H && 2 * OW <= W) {
        // The common 2x2/2 case: every window is whole.
        for (int64_t oh = 0; oh < OH; ++oh)
          max_pool_2x2_row(xp + 2 * oh * W, static_cast<int32_t>(2 * oh * W), W, OW, op + oh * OW,
                           ip + oh * OW);
        continue;
      }
      // Any window: a whole output row at a time, one kernel offset after another, so the
      // running maxima of different outputs are independent (no loop-carried latency chain).
      // Each output still sees its window in PyTorch's order (rows, then columns).
      for (int64_t oh = 0; oh < OH; ++oh) {
        int64_t h0 = oh * o.stride_h - o.pad_h;
        const int64_t h1 = std::min(h0 + o.kernel_h, H);
        h0 = std::max<int64_t>(h0, 0);
        T* best = op + oh * OW;
        int32_t* bi = ip + oh * OW;
        for (int64_t ow = 0; ow < OW; ++ow) {
          best[ow] = -std::numeric_limits<T>::infinity();
          bi[ow] = static_cast<int32_t>(h0 * W + std::max<int64_t>(ow * o.stride_w - o.pad_w, 0));
        }
        for (int64_t ih = h0; ih < h1; ++ih) {
          const T* xr = xp + ih * W;
          for (int64_t kj = 0; kj < o.kernel_w; ++kj) {
            // Outputs whose column ow * stride + kj - pad lies inside the row.
            const int64_t off = kj - o.pad_w;
            const int64_t lo = off >= 0 ? 0 : (-off + o.stride_w - 1) / o.stride_w;
            const int64_t hi = std::min(OW, W - 1 - off < 0 ? 0 : (W - 1 - off) / o.stride_w + 1);
            for (int64_t ow = lo; ow < hi; ++ow) {
              const int64_t iw = ow * o.stride_w + off;
              take_if_greater(xr[iw], static_cast<int32_t>(ih * W + iw), best[ow], bi[ow]);
            }
          }
        }
      }
    }
  });
}

template <typename T>
void max_pool_backward(const PlaneShape& p, const T* gout, const int32_t* idx, T* gin) {
  const int64_t hw = p.height * p.width, ohw = p.out_h * p.out_w;
  parallel_for(0, p.planes, plane_grain(p), [&](int64_t b, int64_t e) {
    for (int64_t pl = b; pl < e; ++pl) {
      T* gp = gin + pl * hw;
      std::fill(gp, gp + hw, T(0));
      const T* go = gout + pl * ohw;
      const int32_t* ip = idx + pl * ohw;
      for (int64_t i = 0; i < ohw; ++i) gp[ip[i]] += go[i];
    }
  });
}

// ---------------------------------------------------------------- average pooling

// Window [h0, h1) x [w0, w1) of output (oh, ow), clipped to the image, and its divisor.
struct Window {
  int64_t h0, h1, w0, w1;
  double divisor;
};

Window avg_window(const PlaneShape& p, const Pool2dOptions& o, int64_t oh, int64_t ow) {
  int64_t h0 = oh * o.stride_h - o.pad_h, w0 = ow * o.stride_w - o.pad_w;
  int64_t h1 = std::min(h0 + o.kernel_h, p.height + o.pad_h);
  int64_t w1 = std::min(w0 + o.kernel_w, p.width + o.pad_w);
  const int64_t padded_size = (h1 - h0) * (w1 - w0);
  h0 = std::max<int64_t>(h0, 0);
  w0 = std::max<int64_t>(w0, 0);
  h1 = std::min(h1, p.height);
  w1 = std::min(w1, p.width);
  const int64_t size = std::max<int64_t>(h1 - h0, 0) * std::max<int64_t>(w1 - w0, 0);
  return {h0, h1, w0, w1, static_cast<double>(o.count_include_pad ? padded_size : size)};
}

// Adaptive bins: [floor(i * in / out), ceil((i + 1) * in / out)).
Window adaptive_window(const PlaneShape& p, int64_t oh, int64_t ow) {
  const int64_t h0 = oh * p.height / p.out_h, h1 = ((oh + 1) * p.height + p.out_h - 1) / p.out_h;
  const int64_t w0 = ow * p.width / p.out_w, w1 = ((ow + 1) * p.width + p.out_w - 1) / p.out_w;
  return {h0, h1, w0, w1, static_cast<double>((h1 - h0) * (w1 - w0))};
}

template <typename T, typename WindowFn>
void avg_forward(const PlaneShape& p, const T* x, T* out, WindowFn window) {
  const int64_t H = p.height, W = p.width, OH = p.out_h, OW = p.out_w;
  parallel_for(0, p.planes, plane_grain(p), [&](int64_t b, int64_t e) {
    for (int64_t pl = b; pl < e; ++pl) {
      const T* xp = x + pl * H * W;
      T* op = out + pl * OH * OW;
      for (int64_t oh = 0; oh < OH; ++oh)
        for (int64_t ow = 0; ow < OW; ++ow) {
          const Window w = window(oh, ow);
          double acc = 0;
          for (int64_t ih = w.h0; ih < w.h1; ++ih)
            for (int64_t iw = w.w0; iw < w.w1; ++iw) acc += xp[ih * W + iw];
          op[oh * OW + ow] = w.h0 < w.h1 && w.w0 < w.w1 ? static_cast<T>(acc / w.divisor) : T(0);
        }
    }
  });
}

template <typename T, typename WindowFn>
void avg_backward(const PlaneShape& p, const T* gout, T* gin, WindowFn window) {
  const int64_t H = p.height, W = p.width, OH = p.out_h, OW = p.out_w;
  parallel_for(0, p.planes, plane_grain(p), [&](int64_t b, int64_t e) {
    for (int64_t pl = b; pl < e; ++pl) {
      T* gp = gin + pl * H * W;
      std::fill(gp, gp + H * W, T(0));
      const T* go = gout + pl * OH * OW;
      for (int64_t oh = 0; oh < OH; ++oh)
        for (int64_t ow = 0; ow < OW; ++ow) {
          const Window w = window(oh, ow);
          const T g = static_cast<T>(go[oh * OW + ow] / w.divisor);
          for (int64_t ih = w.h0; ih < w.h1; ++ih)
            for (int64_t iw = w.w0; iw < w.w1; ++iw) gp[ih * W + iw] += g;
        }
    }
  });
}

// Runs an average-style pooling (window(oh, ow) -> Window) forward and records its backward.
template <typename MakeWindow>
Tensor avg_like(const char* op, const char* node_name, const Tensor& x, const PlaneShape& p,
                MakeWindow make_window) {
  Tensor xd = x.detach().contiguous();
  Tensor out = empty(p.out_shape, x.dtype());
  TANDEM_DISPATCH_FLOAT(x.dtype(), op, [&] {
    avg_forward<scalar_t>(p, xd.data<scalar_t>(), out.data<scalar_t>(), make_window);
  });
  const DType dtype = x.dtype();
  record(node_name, {x}, {out}, [p, dtype, make_window, op](const std::vector<Tensor>& g) {
    Tensor go = g[0].contiguous();
    Tensor gin = empty(p.in_shape, dtype);
    TANDEM_DISPATCH_FLOAT(dtype, op, [&] {
      avg_backward<scalar_t>(p, go.data<scalar_t>(), gin.data<scalar_t>(), make_window);
    });
    return std::vector<Tensor>{gin};
  });
  return out;
}

// Pooling on a device backend (cuDNN on CUDA), whose windows are PyTorch's in floor mode; ceil
// mode is supported where it gives the same output size.
Tensor pool_device(bool max, const char* op, const Tensor& x, const PlaneShape& p,
                   const Pool2dOptions& opt) {
  Pool2dOptions floor_opt = opt;
  floor_opt.ceil_mode = false;
  const int64_t fh = pooled_size(p.height, opt.kernel_h, opt.pad_h, opt.stride_h, false);
  const int64_t fw = pooled_size(p.width, opt.kernel_w, opt.pad_w, opt.stride_w, false);
  if (fh != p.out_h || fw != p.out_w)
    throw Unimplemented(str(op, " with ceil_mode on ", x.device().str(), " for input ",
                            shape_str(x.shape()), " (ceil and floor sizes differ)"));
  Tensor xd = x.detach().contiguous();
  Tensor out = empty(p.out_shape, x.dtype(), x.device());
  if (out.numel() > 0) backend_for(op, x.device()).pool2d(max, xd, floor_opt, out);
  Tensor od = out.detach();
  record(max ? "MaxPool2dBackward" : "AvgPool2dBackward", {x}, {out},
         [max, op, xd, od, floor_opt](const std::vector<Tensor>& g) {
           Tensor gin = empty(xd.shape(), xd.dtype(), xd.device());
           if (od.numel() == 0) {
             gin.zero_();
           } else {
             backend_for(op, xd.device())
                 .pool2d_backward(max, xd, od, g[0].contiguous(), floor_opt, gin);
           }
           return std::vector<Tensor>{gin};
         });
  return out;
}

}  // namespace

Tensor max_pool2d(const Tensor& x, const Pool2dOptions& opt) {
  if (x.is_cuda()) return pool_device(true, "max_pool2d", x, pool_shape("max_pool2d", x, opt), opt);
  check_cpu("max_pool2d", {&x});
  PlaneShape p = pool_shape("max_pool2d", x, opt);
  TANDEM_CHECK_SHAPE(p.height * p.width <= std::numeric_limits<int32_t>::max(),
                     "max_pool2d: planes of ", p.height, "x", p.width, " are too large");
  Tensor xd = x.detach().contiguous();
  Tensor out = empty(p.out_shape, x.dtype());
  Tensor idx = empty(p.out_shape, DType::kI32);
  TANDEM_DISPATCH_FLOAT(x.dtype(), "max_pool2d", [&] {
    max_pool_forward<scalar_t>(p, opt, xd.data<scalar_t>(), out.data<scalar_t>(),
                               idx.data<int32_t>());
  });
  const DType dtype = x.dtype();
  record("MaxPool2dBackward", {x}, {out}, [p, idx, dtype](const std::vector<Tensor>& g) {
    Tensor go = g[0].contiguous();
    Tensor gin = empty(p.in_shape, dtype);
    TANDEM_DISPATCH_FLOAT(dtype, "max_pool2d backward", [&] {
      max_pool_backward<scalar_t>(p, go.data<scalar_t>(), idx.data<int32_t>(),
                                  gin.data<scalar_t>());
    });
    return std::vector<Tensor>{gin};
  });
  return out;
}

Tensor avg_pool2d(const Tensor& x, const Pool2dOptions& opt) {
  if (x.is_cuda())
    return pool_device(false, "avg_pool2d", x, pool_shape("avg_pool2d", x, opt), opt);
  check_cpu("avg_pool2d", {&x});
  PlaneShape p = pool_shape("avg_pool2d", x, opt);
  return avg_like("avg_pool2d", "AvgPool2dBackward", x, p,
                  [p, opt](int64_t oh, int64_t ow) { return avg_window(p, opt, oh, ow); });
}

Tensor adaptive_avg_pool2d(const Tensor& x, int64_t out_h, int64_t out_w) {
  PlaneShape p = plane_shape("adaptive_avg_pool2d", x);
  TANDEM_CHECK_SHAPE(out_h >= 1 && out_w >= 1, "adaptive_avg_pool2d: output size (", out_h, ", ",
                     out_w, ") must be positive");
  TANDEM_CHECK_SHAPE(p.height >= 1 && p.width >= 1, "adaptive_avg_pool2d: input ",
                     shape_str(x.shape()), " has an empty plane");
  set_out_shape(p, out_h, out_w);
  if (x.is_cuda()) {
    // Equal windows (the input divides evenly, as global pooling does) are a plain average pool.
    if (p.height % out_h != 0 || p.width % out_w != 0)
      throw Unimplemented(str("adaptive_avg_pool2d on ", x.device().str(), " from ", p.height, "x",
                              p.width, " to ", out_h, "x", out_w, " (uneven windows)"));
    Pool2dOptions o;
    o.kernel_h = o.stride_h = p.height / out_h;
    o.kernel_w = o.stride_w = p.width / out_w;
    return pool_device(false, "adaptive_avg_pool2d", x, p, o);
  }
  check_cpu("adaptive_avg_pool2d", {&x});
  return avg_like("adaptive_avg_pool2d", "AdaptiveAvgPool2dBackward", x, p,
                  [p](int64_t oh, int64_t ow) { return adaptive_window(p, oh, ow); });
}

}  // namespace tandem
