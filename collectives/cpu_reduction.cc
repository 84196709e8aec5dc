// Rank-order elementwise reduction. Works block by block: a block of the accumulator stays in L1,
// each input is streamed once, and every loop is a plain loop the compiler vectorises.
#include "collectives/cpu_reduction.h"

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "core/base/error.h"

namespace tandem {
namespace {

constexpr int64_t kBlock = 2048;

// Accumulator type and conversions for each storage type.
template <typename T>
struct Acc {
  using type = T;
  static type load(T v) { return v; }
  static T store(type v) { return v; }
};
template <>
struct Acc<BFloat16> {
  using type = float;
  static float load(BFloat16 v) { return bf16_to_float(v); }
  static BFloat16 store(float v) { return float_to_bf16(v); }
};
template <>
struct Acc<Half> {
  using type = float;
  static float load(Half v) { return half_to_float(v); }
  static Half store(float v) { return float_to_half(v); }
};

// Sum that wraps on integer overflow instead of being undefined.
template <typename A>
A add(A a, A b) {
  if constexpr (std::is_integral_v<A>)
    return static_cast<A>(static_cast<std::make_unsigned_t<A>>(a) +
                          static_cast<std::make_unsigned_t<A>>(b));
  else
    return a + b;
}

// Max that propagates NaN, so a diverged rank is visible everywhere.
template <typename A>
A max_of(A a, A b) {
  if constexpr (std::is_floating_point_v<A>)
    return (b > a || b != b) ? b : a;
  else
    return b > a ? b : a;
}

template <typename T>
void reduce_typed(ReduceOp op, const std::vector<const void*>& inputs,
                  const std::vector<void*>& outputs, int64_t n) {
  using A = typename Acc<T>::type;
  const int ranks = static_cast<int>(inputs.size());
  A acc[kBlock];
  for (int64_t begin = 0; begin < n; begin += kBlock) {
    const int64_t m = std::min(kBlock, n - begin);
    const T* first = static_cast<const T*>(inputs[0]) + begin;
    for (int64_t j = 0; j < m; ++j) acc[j] = Acc<T>::load(first[j]);
    for (int r = 1; r < ranks; ++r) {
      const T* in = static_cast<const T*>(inputs[r]) + begin;
      if (op == ReduceOp::kMax) {
        for (int64_t j = 0; j < m; ++j) acc[j] = max_of<A>(acc[j], Acc<T>::load(in[j]));
      } else {
        for (int64_t j = 0; j < m; ++j) acc[j] = add<A>(acc[j], Acc<T>::load(in[j]));
      }
    }
    if (op == ReduceOp::kAvg) {
      if constexpr (std::is_floating_point_v<A>) {
        const A w = static_cast<A>(ranks);
        for (int64_t j = 0; j < m; ++j) acc[j] = acc[j] / w;
      }
    }
    for (void* out_void : outputs) {
      T* out = static_cast<T*>(out_void) + begin;
      for (int64_t j = 0; j < m; ++j) out[j] = Acc<T>::store(acc[j]);
    }
  }
}

template <typename T, bool kMax>
void pair_typed(void* out_void, const void* a_void, const void* b_void, size_t n) {
  using A = typename Acc<T>::type;
  T* out = static_cast<T*>(out_void);
  const T* a = static_cast<const T*>(a_void);
  const T* b = static_cast<const T*>(b_void);
  for (size_t i = 0; i < n; ++i) {
    const A x = Acc<T>::load(a[i]), y = Acc<T>::load(b[i]);
    out[i] = Acc<T>::store(kMax ? max_of<A>(x, y) : add<A>(x, y));
  }
}

template <typename T>
PairReduceFn pair_for(ReduceOp op) {
  return op == ReduceOp::kMax ? &pair_typed<T, true> : &pair_typed<T, false>;
}

template <typename T>
void divide_typed(void* data, int64_t n, int divisor) {
  using A = typename Acc<T>::type;
  T* x = static_cast<T*>(data);
  const A d = static_cast<A>(divisor);
  for (int64_t i = 0; i < n; ++i) x[i] = Acc<T>::store(Acc<T>::load(x[i]) / d);
}

}  // namespace

void check_reducible(DType dtype, ReduceOp op, const std::string& what) {
  switch (dtype) {
    case DType::kF32:
    case DType::kF64:
    case DType::kBF16:
    case DType::kF16:
      return;
    case DType::kI32:
    case DType::kI64:
      TANDEM_CHECK_T(TypeError, op != ReduceOp::kAvg, what, ": avg of ", dtype_name(dtype),
                     " tensors is not supported: reduce with sum and divide, or use a float type");
      return;
    default:
      throw TypeError(str(what, ": ", dtype_name(dtype),
                          " tensors cannot be reduced: use f32, f64, bf16, f16, i32 or i64"));
  }
}

void reduce_buffers(DType dtype, ReduceOp op, const std::vector<const void*>& inputs,
                    const std::vector<void*>& outputs, int64_t n) {
  TANDEM_ASSERT(!inputs.empty(), "reduce_buffers needs at least one input");
  if (n == 0) return;
  switch (dtype) {
    case DType::kF32:
      return reduce_typed<float>(op, inputs, outputs, n);
    case DType::kF64:
      return reduce_typed<double>(op, inputs, outputs, n);
    case DType::kBF16:
      return reduce_typed<BFloat16>(op, inputs, outputs, n);
    case DType::kF16:
      return reduce_typed<Half>(op, inputs, outputs, n);
    case DType::kI32:
      return reduce_typed<int32_t>(op, inputs, outputs, n);
    case DType::kI64:
      return reduce_typed<int64_t>(op, inputs, outputs, n);
    default:
      TANDEM_ASSERT(false, "reduce_buffers: unsupported dtype ", dtype_name(dtype));
  }
}

PairReduceFn pair_reduce_fn(DType dtype, ReduceOp op) {
  switch (dtype) {
    case DType::kF32:
      return pair_for<float>(op);
    case DType::kF64:
      return pair_for<double>(op);
    case DType::kBF16:
      return pair_for<BFloat16>(op);
    case DType::kF16:
      return pair_for<Half>(op);
    case DType::kI32:
      return pair_for<int32_t>(op);
    case DType::kI64:
      return pair_for<int64_t>(op);
    default:
      return nullptr;
  }
}

void divide_in_place(DType dtype, void* data, int64_t n, int divisor) {
  switch (dtype) {
    case DType::kF32:
      return divide_typed<float>(data, n, divisor);
    case DType::kF64:
      return divide_typed<double>(data, n, divisor);
    case DType::kBF16:
      return divide_typed<BFloat16>(data, n, divisor);
    case DType::kF16:
      return divide_typed<Half>(data, n, divisor);
    default:
      TANDEM_ASSERT(false, "divide_in_place: ", dtype_name(dtype), " is not a floating dtype");
  }
}

}  // namespace tandem
