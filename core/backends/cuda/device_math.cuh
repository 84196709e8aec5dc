// Device helpers shared by the .cu files: dtype loads/stores through f32 (f16, bf16) or natively,
// strided offsets, launch geometry and the dtype switch.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "core/backends/cuda/kernels.h"
#include "core/base/error.h"
#include "core/tensor/dtype_switch.h"

namespace tandem::cuda {

constexpr int kThreads = 256;

inline unsigned blocks_for(int64_t n, int64_t per_thread = 1) {
  int64_t b = (n + kThreads * per_thread - 1) / (kThreads * per_thread);
  if (b < 1) b = 1;
  return static_cast<unsigned>(b < 65535 * 32 ? b : 65535 * 32);  // grid-stride covers the rest
}

__device__ inline int64_t strided_offset(const Strided& v, int64_t i) {
  int64_t off = 0;
  for (int d = v.ndim - 1; d >= 0; --d) {
    const int64_t s = v.size[d];
    off += (i % s) * v.stride[d];
    i /= s;
  }
  return off;
}

// Element i of an array of dtype dt, as double (conversions and generic paths).
__device__ inline double load_double(const void* p, DType dt, int64_t i) {
  switch (dt) {
    case DType::kF32:
      return static_cast<const float*>(p)[i];
    case DType::kF64:
      return static_cast<const double*>(p)[i];
    case DType::kF16:
      return __half2float(static_cast<const __half*>(p)[i]);
    case DType::kBF16:
      return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
    case DType::kI32:
      return static_cast<const int32_t*>(p)[i];
    case DType::kI64:
      return static_cast<double>(static_cast<const int64_t*>(p)[i]);
    case DType::kU8:
      return static_cast<const uint8_t*>(p)[i];
  }
  return 0;
}

// Stores as the CPU's store_from_double does: 16-bit floats round once from f32 (nearest even).
__device__ inline void store_double(void* p, DType dt, int64_t i, double v) {
  switch (dt) {
    case DType::kF32:
      static_cast<float*>(p)[i] = static_cast<float>(v);
      break;
    case DType::kF64:
      static_cast<double*>(p)[i] = v;
      break;
    case DType::kF16:
      static_cast<__half*>(p)[i] = __float2half_rn(static_cast<float>(v));
      break;
    case DType::kBF16:
      static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(static_cast<float>(v));
      break;
    case DType::kI32:
      static_cast<int32_t*>(p)[i] = static_cast<int32_t>(v);
      break;
    case DType::kI64:
      static_cast<int64_t*>(p)[i] = static_cast<int64_t>(v);
      break;
    case DType::kU8:
      static_cast<uint8_t*>(p)[i] = static_cast<uint8_t>(v);
      break;
  }
}

void check_launch(const char* kernel);  // throws with the kernel's name on a launch error

}  // namespace tandem::cuda

// Binds scalar_t to float or double (the float kernels; f16/bf16 go through .to() as on the CPU).
#define TANDEM_CUDA_FLOAT_TYPES(DTYPE, NAME, ...)                                                 \
  TANDEM_SWITCH_FLOAT(DTYPE,                                                                      \
                      (::tandem::TypeError(::tandem::str(NAME, " on cuda needs f32 or f64, got ", \
                                                         ::tandem::dtype_name(DTYPE)))),          \
                      __VA_ARGS__)

// Binds scalar_t to any type tensors compute in.
#define TANDEM_CUDA_ALL_TYPES(DTYPE, NAME, ...)                                            \
  TANDEM_SWITCH_ALL(DTYPE,                                                                 \
                    (::tandem::TypeError(::tandem::str(NAME, " on cuda does not support ", \
                                                       ::tandem::dtype_name(DTYPE)))),     \
                    __VA_ARGS__)
