// The dtype switch behind the CPU and CUDA kernels' dispatch macros (core/ops/dispatch.h,
// core/backends/cuda/device_math.cuh): each case binds `scalar_t` to the element type and runs the
// body; any other dtype throws ERROR, a parenthesised exception expression.
#pragma once

#include <cstdint>

#include "core/tensor/dtype.h"

#define TANDEM_DTYPE_CASE(ENUM, TYPE, ...) \
  case ::tandem::DType::ENUM: {            \
    using scalar_t = TYPE;                 \
    return __VA_ARGS__();                  \
  }

// scalar_t is float or double.
#define TANDEM_SWITCH_FLOAT(DTYPE, ERROR, ...)     \
  [&] {                                            \
    switch (DTYPE) {                               \
      TANDEM_DTYPE_CASE(kF32, float, __VA_ARGS__)  \
      TANDEM_DTYPE_CASE(kF64, double, __VA_ARGS__) \
      default:                                     \
        throw ERROR;                               \
    }                                              \
  }()

// scalar_t is any type tensors compute in: f32, f64, i32, i64, u8.
#define TANDEM_SWITCH_ALL(DTYPE, ERROR, ...)        \
  [&] {                                             \
    switch (DTYPE) {                                \
      TANDEM_DTYPE_CASE(kF32, float, __VA_ARGS__)   \
      TANDEM_DTYPE_CASE(kF64, double, __VA_ARGS__)  \
      TANDEM_DTYPE_CASE(kI32, int32_t, __VA_ARGS__) \
      TANDEM_DTYPE_CASE(kI64, int64_t, __VA_ARGS__) \
      TANDEM_DTYPE_CASE(kU8, uint8_t, __VA_ARGS__)  \
      default:                                      \
        throw ERROR;                                \
    }                                               \
  }()
