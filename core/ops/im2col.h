// im2col / col2im for 2-D convolution on the CPU (one sample, NCHW, contiguous). The column
// matrix has one row per (channel, kernel row, kernel column) and one column per output pixel,
// (C * kh * kw) x (OH * OW) row-major, so a convolution is W (O x C*kh*kw) @ cols and each group's
// rows are one contiguous block. Rows are filled a kernel offset at a time: the in-bounds run of
// an output row is one copy (stride 1) or a strided gather, padding is written as zeros.
//
// The runs are short (an output row: 14 to 112 pixels), so they are copied with the inline
// 32-byte vector helpers below, not memcpy/memset calls: at -O2 GCC neither vectorises loops of
// unknown length nor inlines the library calls, and the call overhead dominated these kernels.
#pragma once

#include <cstdint>

namespace tandem {

struct ConvGeometry {
  int64_t channels = 0, height = 0, width = 0;  // input of one sample
  int64_t kernel_h = 1, kernel_w = 1;
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;
  int64_t dilation_h = 1, dilation_w = 1;
  int64_t out_h = 0, out_w = 0;

  int64_t col_rows() const { return channels * kernel_h * kernel_w; }
  int64_t col_cols() const { return out_h * out_w; }
  // True when the column matrix of a sample is the sample itself (1x1, stride 1, no padding).
  bool is_pointwise() const {
    return kernel_h == 1 && kernel_w == 1 && stride_h == 1 && stride_w == 1 && pad_h == 0 &&
           pad_w == 0;
  }
};

// cols (col_rows x col_cols) = the patches of x (channels x height x width).
template <typename T>
void im2col(const T* x, const ConvGeometry& g, T* cols);

// x (channels x height x width) += the patches in cols scattered back (the adjoint of im2col).
template <typename T>
void col2im_add(const T* cols, const ConvGeometry& g, T* x);

// ---- short vectorised runs (GCC/Clang vector extensions: AVX on x86-64-v3, NEON pairs on Arm)
namespace vec {

template <typename T>
struct VecOf;  // (GCC ignores vector_size on a dependent alias, hence the specialisations)
template <>
struct VecOf<float> {
  typedef float type __attribute__((vector_size(32)));
};
template <>
struct VecOf<double> {
  typedef double type __attribute__((vector_size(32)));
};
template <typename T>
using V = typename VecOf<T>::type;
template <typename T>
constexpr int64_t kLanes = 32 / sizeof(T);

// Unaligned loads and stores: fixed-size memcpy compiles to one vector move.
template <typename T>
inline V<T> load(const T* p) {
  V<T> v;
  __builtin_memcpy(&v, p, sizeof(v));
  return v;
}
template <typename T>
inline void store(T* p, V<T> v) {
  __builtin_memcpy(p, &v, sizeof(v));
}

template <typename T>
inline void copy(T* dst, const T* src, int64_t n) {
  int64_t i = 0;
  for (; i + kLanes<T> <= n; i += kLanes<T>) store(dst + i, load(src + i));
  for (; i < n; ++i) dst[i] = src[i];
}

template <typename T>
inline void fill(T* dst, T value, int64_t n) {
  const V<T> v = value - V<T>{};  // broadcast
  int64_t i = 0;
  for (; i + kLanes<T> <= n; i += kLanes<T>) store(dst + i, v);
  for (; i < n; ++i) dst[i] = value;
}

template <typename T>
inline void add(T* dst, const T* src, int64_t n) {  // dst += src
  int64_t i = 0;
  for (; i + kLanes<T> <= n; i += kLanes<T>) store(dst + i, load(dst + i) + load(src + i));
  for (; i < n; ++i) dst[i] += src[i];
}

template <typename T>
inline void add_scalar(T* dst, T value, int64_t n) {  // dst += value
  const V<T> v = value - V<T>{};
  int64_t i = 0;
  for (; i + kLanes<T> <= n; i += kLanes<T>) store(dst + i, load(dst + i) + v);
  for (; i < n; ++i) dst[i] += value;
}

// Sum of n elements, accumulated in kLanes partial sums of T, then in double.
template <typename T>
inline double sum(const T* src, int64_t n) {
  V<T> acc{};
  int64_t i = 0;
  for (; i + kLanes<T> <= n; i += kLanes<T>) acc += load(src + i);
  double s = 0;
  for (int64_t l = 0; l < kLanes<T>; ++l) s += acc[l];
  for (; i < n; ++i) s += src[i];
  return s;
}

}  // namespace vec
}  // namespace tandem
