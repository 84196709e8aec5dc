// Helpers for CPU kernels: dtype dispatch and iteration over strided views.
#pragma once

#include <cstdint>
#include <vector>

#include "core/base/error.h"
#include "core/tensor/dtype_switch.h"
#include "core/tensor/tensor.h"

namespace tandem {

// Runs BODY with `scalar_t` bound to float or double according to DTYPE.
#define TANDEM_DISPATCH_FLOAT(DTYPE, OPNAME, ...)                                                 \
  TANDEM_SWITCH_FLOAT(                                                                            \
      DTYPE,                                                                                      \
      (::tandem::TypeError(::tandem::str(OPNAME, " needs f32 or f64 tensors, got ",               \
                                         ::tandem::dtype_name(DTYPE), " (convert with .to())"))), \
      __VA_ARGS__)

// Same, for every dtype tensors can compute in (f32, f64, i32, i64, u8).
#define TANDEM_DISPATCH_ALL(DTYPE, OPNAME, ...)                                                   \
  TANDEM_SWITCH_ALL(                                                                              \
      DTYPE,                                                                                      \
      (::tandem::TypeError(::tandem::str(OPNAME, " does not support ",                            \
                                         ::tandem::dtype_name(DTYPE), " (convert with .to())"))), \
      __VA_ARGS__)

// Throws Unimplemented unless every defined tensor is on the CPU.
void check_cpu(const char* op, std::initializer_list<const Tensor*> tensors);
// Throws ValueError unless every defined tensor is on the device of the first.
void check_same_device(const char* op, std::initializer_list<const Tensor*> tensors);
// Throws TypeError unless every defined tensor has the dtype of the first.
void check_same_dtype(const char* op, std::initializer_list<const Tensor*> tensors);

// Visits every element of a strided view in row-major order: fn(linear_index, element_offset),
// element_offset relative to the view's data pointer. Serial; for parallel use call per range.
template <typename F>
void for_each_offset(const Shape& shape, const Shape& strides, int64_t begin, int64_t end, F fn) {
  const int64_t nd = static_cast<int64_t>(shape.size());
  if (nd == 0) {
    if (begin < end) fn(0, 0);
    return;
  }
  std::vector<int64_t> idx(nd);
  int64_t rem = begin, off = 0;
  for (int64_t d = nd - 1; d >= 0; --d) {
    idx[d] = shape[d] == 0 ? 0 : rem % shape[d];
    rem = shape[d] == 0 ? 0 : rem / shape[d];
    off += idx[d] * strides[d];
  }
  const int64_t inner = shape[nd - 1], inner_stride = strides[nd - 1];
  int64_t i = begin;
  while (i < end) {
    int64_t run = std::min(inner - idx[nd - 1], end - i);
    for (int64_t k = 0; k < run; ++k) fn(i + k, off + k * inner_stride);
    i += run;
    off += run * inner_stride;
    idx[nd - 1] += run;
    for (int64_t d = nd - 1; d > 0 && idx[d] == shape[d]; --d) {
      off -= idx[d] * strides[d];
      idx[d] = 0;
      idx[d - 1] += 1;
      off += strides[d - 1];
    }
  }
}

}  // namespace tandem
