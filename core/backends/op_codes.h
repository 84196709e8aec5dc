// Op codes shared by the ops (core/ops) and device backends: an op tells a backend *which*
// elementwise function to run by code, because the CPU kernels' lambdas cannot cross into device
// code. Plain enums with no dependencies, so nvcc compiles this header cheaply.
#pragma once

#include <cstdint>

namespace tandem {

enum class BinaryOp : uint8_t {
  kAdd,
  kSub,
  kMul,
  kDiv,
  kMaximum,
  kPow,
  // comparisons: u8 output
  kEq,
  kNe,
  kLt,
  kLe,
  kGt,
  kGe,
};

enum class UnaryOp : uint8_t {
  kNeg,
  kExp,
  kLog,
  kSqrt,
  kAbs,
  kRelu,
  kGelu,
  kTanh,
  kSigmoid,
  kPowScalar,  // x ^ arg
  kLeakyRelu,  // x > 0 ? x : arg * x
};

// Fused backward formulas r = f(x, g): x is the saved input or output the formula names.
enum class BackwardOp : uint8_t {
  kPow,        // x = input:  g * arg * x^(arg-1) (0 when arg == 0)
  kSqrt,       // x = output: g / (2 y)
  kAbs,        // x = input:  g * sign(x)
  kRelu,       // x = output: y > 0 ? g : 0
  kGelu,       // x = input:  g * (Phi(x) + x phi(x))
  kTanh,       // x = output: g * (1 - y^2)
  kSigmoid,    // x = output: g * y * (1 - y)
  kLeakyRelu,  // x = input: x > 0 ? g : arg * g
};

bool is_comparison(BinaryOp op);

}  // namespace tandem
