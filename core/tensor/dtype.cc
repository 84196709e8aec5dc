#include "core/tensor/dtype.h"

#include <cmath>

#include "core/base/error.h"

namespace tandem {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::kF32:
      return 4;
    case DType::kF64:
      return 8;
    case DType::kF16:
      return 2;
    case DType::kBF16:
      return 2;
    case DType::kI32:
      return 4;
    case DType::kI64:
      return 8;
    case DType::kU8:
      return 1;
  }
  TANDEM_ASSERT(false, "bad dtype");
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::kF32:
      return "f32";
    case DType::kF64:
      return "f64";
    case DType::kF16:
      return "f16";
    case DType::kBF16:
      return "bf16";
    case DType::kI32:
      return "i32";
    case DType::kI64:
      return "i64";
    case DType::kU8:
      return "u8";
  }
  TANDEM_ASSERT(false, "bad dtype");
}

bool is_floating(DType t) {
  return t == DType::kF32 || t == DType::kF64 || t == DType::kF16 || t == DType::kBF16;
}

// IEEE 754 binary16 conversions, round-to-nearest-even, with subnormals, infinities and NaN.
float half_to_float(Half h) {
  uint32_t sign = static_cast<uint32_t>(h.bits & 0x8000u) << 16;
  uint32_t exp = (h.bits >> 10) & 0x1fu;
  uint32_t mant = h.bits & 0x3ffu;
  uint32_t u;
  if (exp == 0) {
    if (mant == 0) {
      u = sign;
    } else {  // subnormal: normalise
      int e = -1;
      do {
        ++e;
        mant <<= 1;
      } while ((mant & 0x400u) == 0);
      u = sign | static_cast<uint32_t>(127 - 15 - e) << 23 | (mant & 0x3ffu) << 13;
    }
  } else if (exp == 0x1f) {
    u = sign | 0x7f800000u | mant << 13;
  } else {
    u = sign | (exp + 127 - 15) << 23 | mant << 13;
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

Half float_to_half(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return Half{static_cast<uint16_t>(sign | 0x7e00u)};   // NaN
  if (abs >= 0x477ff000u) return Half{static_cast<uint16_t>(sign | 0x7c00u)};  // overflow: inf
  if (abs < 0x38800000u) {  // result is subnormal or zero: scale into the subnormal grid
    float a;
    std::memcpy(&a, &abs, 4);
    float scaled = a * 16777216.0f;  // 2^24: one unit = smallest subnormal
    uint32_t m = static_cast<uint32_t>(std::nearbyint(scaled));
    return Half{static_cast<uint16_t>(sign | m)};
  }
  uint32_t mant = abs & 0x7fffffu;
  uint32_t exp = (abs >> 23) - 127 + 15;
  uint32_t h = exp << 10 | mant >> 13;
  uint32_t rest = mant & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;  // may carry into exponent: correct
  return Half{static_cast<uint16_t>(sign | h)};
}

double load_as_double(const void* p, DType t) {
  switch (t) {
    case DType::kF32:
      return *static_cast<const float*>(p);
    case DType::kF64:
      return *static_cast<const double*>(p);
    case DType::kF16:
      return half_to_float(*static_cast<const Half*>(p));
    case DType::kBF16:
      return bf16_to_float(*static_cast<const BFloat16*>(p));
    case DType::kI32:
      return *static_cast<const int32_t*>(p);
    case DType::kI64:
      return static_cast<double>(*static_cast<const int64_t*>(p));
    case DType::kU8:
      return *static_cast<const uint8_t*>(p);
  }
  TANDEM_ASSERT(false, "bad dtype");
}

void store_from_double(void* p, DType t, double v) {
  switch (t) {
    case DType::kF32:
      *static_cast<float*>(p) = static_cast<float>(v);
      return;
    case DType::kF64:
      *static_cast<double*>(p) = v;
      return;
    case DType::kF16:
      *static_cast<Half*>(p) = float_to_half(static_cast<float>(v));
      return;
    case DType::kBF16:
      *static_cast<BFloat16*>(p) = float_to_bf16(static_cast<float>(v));
      return;
    case DType::kI32:
      *static_cast<int32_t*>(p) = static_cast<int32_t>(v);
      return;
    case DType::kI64:
      *static_cast<int64_t*>(p) = static_cast<int64_t>(v);
      return;
    case DType::kU8:
      *static_cast<uint8_t*>(p) = static_cast<uint8_t>(v);
      return;
  }
  TANDEM_ASSERT(false, "bad dtype");
}

}  // namespace tandem
