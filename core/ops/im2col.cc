// im2col / col2im kernels (see im2col.h). For each kernel offset the range of output columns that
// reads inside the image is computed once, so the inner loops carry no bounds checks, and the
// in-bounds runs move with the inline vector helpers of im2col.h.
#include "core/ops/im2col.h"

#include <algorithm>

namespace tandem {
namespace {

// Output columns [lo, hi) whose input column ow * stride + offset lies in [0, width).
inline void valid_range(int64_t offset, int64_t stride, int64_t width, int64_t out_w, int64_t* lo,
                        int64_t* hi) {
  int64_t l = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
  int64_t h = width - 1 - offset < 0 ? 0 : (width - 1 - offset) / stride + 1;
  l = std::min(l, out_w);
  h = std::clamp(h, l, out_w);
  *lo = l;
  *hi = h;
}

}  // namespace

template <typename T>
void im2col(const T* x, const ConvGeometry& g, T* cols) {
  const int64_t H = g.height, W = g.width, OH = g.out_h, OW = g.out_w, ohw = OH * OW;
  const int64_t sw = g.stride_w;
  for (int64_t c = 0; c < g.channels; ++c) {
    const T* xc = x + c * H * W;
    for (int64_t ki = 0; ki < g.kernel_h; ++ki) {
      for (int64_t kj = 0; kj < g.kernel_w; ++kj) {
        T* row = cols + ((c * g.kernel_h + ki) * g.kernel_w + kj) * ohw;
        const int64_t w_off = kj * g.dilation_w - g.pad_w;
        int64_t lo, hi;
        valid_range(w_off, sw, W, OW, &lo, &hi);
        for (int64_t oh = 0; oh < OH; ++oh) {
          T* r = row + oh * OW;
          const int64_t ih = oh * g.stride_h - g.pad_h + ki * g.dilation_h;
          if (ih < 0 || ih >= H) {
            vec::fill(r, T(0), OW);
            continue;
          }
          const T* xr = xc + ih * W;
          for (int64_t ow = 0; ow < lo; ++ow) r[ow] = T(0);
          if (sw == 1) {
            vec::copy(r + lo, xr + lo + w_off, hi - lo);
          } else {
            for (int64_t ow = lo; ow < hi; ++ow) r[ow] = xr[ow * sw + w_off];
          }
          for (int64_t ow = hi; ow < OW; ++ow) r[ow] = T(0);
        }
      }
    }
  }
}

template <typename T>
void col2im_add(const T* cols, const ConvGeometry& g, T* x) {
  const int64_t H = g.height, W = g.width, OH = g.out_h, OW = g.out_w, ohw = OH * OW;
  const int64_t sw = g.stride_w;
  for (int64_t c = 0; c < g.channels; ++c) {
    T* xc = x + c * H * W;
    for (int64_t ki = 0; ki < g.kernel_h; ++ki) {
      for (int64_t kj = 0; kj < g.kernel_w; ++kj) {
        const T* row = cols + ((c * g.kernel_h + ki) * g.kernel_w + kj) * ohw;
        const int64_t w_off = kj * g.dilation_w - g.pad_w;
        int64_t lo, hi;
        valid_range(w_off, sw, W, OW, &lo, &hi);
        for (int64_t oh = 0; oh < OH; ++oh) {
          const int64_t ih = oh * g.stride_h - g.pad_h + ki * g.dilation_h;
          if (ih < 0 || ih >= H) continue;
          const T* r = row + oh * OW;
          T* xr = xc + ih * W;
          if (sw == 1) {
            vec::add(xr + lo + w_off, r + lo, hi - lo);
          } else {
            for (int64_t ow = lo; ow < hi; ++ow) xr[ow * sw + w_off] += r[ow];
          }
        }
      }
    }
  }
}

template void im2col<float>(const float*, const ConvGeometry&, float*);
template void im2col<double>(const double*, const ConvGeometry&, double*);
template void col2im_add<float>(const float*, const ConvGeometry&, float*);
template void col2im_add<double>(const double*, const ConvGeometry&, double*);

}  // namespace tandem
