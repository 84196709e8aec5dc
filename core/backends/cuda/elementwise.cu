// Elementwise kernels of the CUDA backend: copies with conversion, fills, binary ops with
// broadcasting, activations and their fused backward formulas, in-place updates, dropout.
// Key decision: one kernel per dtype with the op as a runtime switch (uniform across a launch, so
// no divergence) instead of one instantiation per (op, dtype): a few dozen kernels instead of
// hundreds keeps nvcc's time for two architectures within CI's budget. Contiguous operands take a
// vectorised path (four elements per thread, 128-bit loads for f32 when aligned).
#include <cmath>

#include "core/backends/cuda/device_math.cuh"

namespace tandem::cuda {

void check_launch(const char* kernel) {
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess)
    throw Error(str("CUDA kernel ", kernel, " failed to launch: ", cudaGetErrorName(e), " (",
                    cudaGetErrorString(e), ")"));
}

namespace {

// ------------------------------------------------------------------ copy and fill
__global__ void copy_kernel(void* dst, DType dd, Strided dv, bool dc, const void* src, DType sd,
                            Strided sv, bool sc, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t so = sc ? i : strided_offset(sv, i);
    const int64_t d = dc ? i : strided_offset(dv, i);
    store_double(dst, dd, d, load_double(src, sd, so));
  }
}

__global__ void fill_kernel(void* dst, DType dt, Strided v, bool contiguous, int64_t n,
                            double value) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    store_double(dst, dt, contiguous ? i : strided_offset(v, i), value);
}

bool is_contiguous(const Strided& v) {
  int64_t expected = 1;
  for (int d = v.ndim - 1; d >= 0; --d) {
    if (v.size[d] == 1) continue;
    if (v.stride[d] != expected) return false;
    expected *= v.size[d];
  }
  return true;
}

// ------------------------------------------------------------------ binary
template <typename T>
__device__ inline T apply_binary(BinaryOp op, T x, T y) {
  switch (op) {
    case BinaryOp::kAdd:
      return x + y;
    case BinaryOp::kSub:
      return x - y;
    case BinaryOp::kMul:
      return x * y;
    case BinaryOp::kDiv:
      return x / y;
    case BinaryOp::kMaximum:
      return x >= y ? x : y;
    case BinaryOp::kPow:
      return static_cast<T>(::pow(static_cast<double>(x), static_cast<double>(y)));
    case BinaryOp::kEq:
      return x == y;
    case BinaryOp::kNe:
      return x != y;
    case BinaryOp::kLt:
      return x < y;
    case BinaryOp::kLe:
      return x <= y;
    case BinaryOp::kGt:
      return x > y;
    case BinaryOp::kGe:
      return x >= y;
  }
  return T(0);
}

// f32 pow as the CPU computes it (std::pow(float, float) promotes to double there too).
template <typename T>
__device__ inline T operand_at(const Operand& o, int64_t i) {
  if (o.is_scalar) return static_cast<T>(o.scalar);
  const T* p = static_cast<const T*>(o.ptr);
  return o.contiguous ? p[i] : p[strided_offset(o.view, i)];
}

template <typename T, typename Out>
__global__ void binary_kernel(BinaryOp op, Operand a, Operand b, Out* out, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    out[i] = static_cast<Out>(apply_binary<T>(op, operand_at<T>(a, i), operand_at<T>(b, i)));
}

// Both operands contiguous (or scalar) f32, 16-byte aligned, n % 4 == 0: float4 loads and stores.
__global__ void binary_f32x4_kernel(BinaryOp op, Operand a, Operand b, float* out, int64_t n4) {
  const float4* pa = static_cast<const float4*>(a.ptr);
  const float4* pb = static_cast<const float4*>(b.ptr);
  const float sa = static_cast<float>(a.scalar), sb = static_cast<float>(b.scalar);
  float4* po = reinterpret_cast<float4*>(out);
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n4;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float4 x = a.is_scalar ? make_float4(sa, sa, sa, sa) : pa[i];
    const float4 y = b.is_scalar ? make_float4(sb, sb, sb, sb) : pb[i];
    po[i] = make_float4(apply_binary<float>(op, x.x, y.x), apply_binary<float>(op, x.y, y.y),
                        apply_binary<float>(op, x.z, y.z), apply_binary<float>(op, x.w, y.w));
  }
}

bool aligned16(const void* p) {
  return (reinterpret_cast<uintptr_t>(p) & 15u) == 0;
}

// ------------------------------------------------------------------ unary and backward
template <typename T>
__device__ inline T apply_unary(UnaryOp op, T x, double arg) {
  switch (op) {
    case UnaryOp::kNeg:
      return -x;
    case UnaryOp::kExp:
      return ::exp(x);
    case UnaryOp::kLog:
      return ::log(x);
    case UnaryOp::kSqrt:
      return ::sqrt(x);
    case UnaryOp::kAbs:
      return ::fabs(x);
    case UnaryOp::kRelu:
      return x > T(0) ? x : T(0);
    case UnaryOp::kGelu:
      return static_cast<T>(0.5 * x * (1.0 + ::erf(x * 0.70710678118654752440)));
    case UnaryOp::kTanh:
      return ::tanh(x);
    case UnaryOp::kSigmoid:
      return x >= T(0) ? T(1) / (T(1) + ::exp(-x)) : ::exp(x) / (T(1) + ::exp(x));
    case UnaryOp::kPowScalar:
      return static_cast<T>(::pow(static_cast<double>(x), arg));
    case UnaryOp::kLeakyRelu:
      return x > T(0) ? x : static_cast<T>(arg) * x;
  }
  return T(0);
}

template <typename T>
__global__ void unary_kernel(UnaryOp op, const T* a, T* out, int64_t n, double arg) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    out[i] = apply_unary<T>(op, a[i], arg);
}

template <typename T>
__device__ inline T apply_backward(BackwardOp op, T x, T g, double e) {
  switch (op) {
    case BackwardOp::kPow:
      return e == 0.0 ? T(0) : static_cast<T>(g * e * ::pow(static_cast<double>(x), e - 1.0));
    case BackwardOp::kSqrt:
      return g / (x + x);
    case BackwardOp::kAbs:
      return x > T(0) ? g : (x < T(0) ? -g : T(0));
    case BackwardOp::kRelu:
      return x > T(0) ? g : T(0);
    case BackwardOp::kGelu: {
      const double cdf = 0.5 * (1.0 + ::erf(x * 0.70710678118654752440));
      const double pdf = ::exp(-0.5 * x * x) * 0.3989422804014327;  // 1/sqrt(2 pi)
      return static_cast<T>(g * (cdf + x * pdf));
    }
    case BackwardOp::kTanh:
      return g * (1 - x * x);
    case BackwardOp::kSigmoid:
      return g * x * (1 - x);
    case BackwardOp::kLeakyRelu:
      return x > T(0) ? g : static_cast<T>(e) * g;
  }
  return T(0);
}

template <typename T>
__global__ void backward_kernel(BackwardOp op, const T* x, const T* g, T* out, int64_t n,
                                double arg) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    out[i] = apply_backward<T>(op, x[i], g[i], arg);
}

template <typename T>
__global__ void where_kernel(const uint8_t* c, const T* a, const T* b, T* out, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    out[i] = c[i] ? a[i] : b[i];
}

template <typename T>
__global__ void axpy_kernel(T* a, const T* b, T alpha, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    a[i] += alpha * b[i];
}

template <typename T>
__global__ void scale_kernel(T* a, T s, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    a[i] *= s;
}

// ------------------------------------------------------------------ dropout
// philox4x32-10, as core/random/philox.cc computes it (counter = (hi = stream, lo = counter)).
__device__ inline uint4 philox(uint64_t key, uint64_t hi, uint64_t lo) {
  uint32_t c0 = static_cast<uint32_t>(lo), c1 = static_cast<uint32_t>(lo >> 32);
  uint32_t c2 = static_cast<uint32_t>(hi), c3 = static_cast<uint32_t>(hi >> 32);
  uint32_t k0 = static_cast<uint32_t>(key), k1 = static_cast<uint32_t>(key >> 32);
  for (int round = 0; round < 10; ++round) {
    const uint32_t lo0 = 0xD2511F53u * c0, hi0 = __umulhi(0xD2511F53u, c0);
    const uint32_t lo1 = 0xCD9E8D57u * c2, hi1 = __umulhi(0xCD9E8D57u, c2);
    const uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
    c0 = n0;
    c1 = n1;
    c2 = n2;
    c3 = n3;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return make_uint4(c0, c1, c2, c3);
}

__global__ void dropout_mask_kernel(uint64_t seed, uint64_t stream_id, uint64_t first,
                                    uint32_t threshold, uint8_t* keep, int64_t n) {
  // One thread per Philox counter (4 elements); the partial counters at either end are clipped.
  const uint64_t end = first + static_cast<uint64_t>(n);
  const uint64_t c_begin = first / 4, c_count = (end + 3) / 4 - c_begin;
  for (uint64_t k = blockIdx.x * uint64_t(blockDim.x) + threadIdx.x; k < c_count;
       k += uint64_t(gridDim.x) * blockDim.x) {
    const uint64_t counter = c_begin + k;
    const uint4 w = philox(seed, stream_id, counter);
    const uint32_t words[4] = {w.x, w.y, w.z, w.w};
    for (int j = 0; j < 4; ++j) {
      const uint64_t g = counter * 4 + static_cast<uint64_t>(j);
      if (g >= first && g < end) keep[g - first] = (words[j] >> 8) >= threshold;
    }
  }
}

template <typename T>
__global__ void masked_scale_kernel(const T* x, const uint8_t* keep, T s, T* out, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    out[i] = x[i] * (static_cast<T>(keep[i]) * s);
}

}  // namespace

// ------------------------------------------------------------------ launchers
void launch_copy(void* dst, DType dd, const Strided& dv, const void* src, DType sd,
                 const Strided& sv, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  copy_kernel<<<blocks_for(n), kThreads, 0, stream>>>(dst, dd, dv, is_contiguous(dv), src, sd, sv,
                                                      is_contiguous(sv), n);
  check_launch("copy");
}

void launch_fill(void* dst, DType dt, const Strided& v, int64_t n, double value,
                 cudaStream_t stream) {
  if (n == 0) return;
  fill_kernel<<<blocks_for(n), kThreads, 0, stream>>>(dst, dt, v, is_contiguous(v), n, value);
  check_launch("fill");
}

void launch_binary(BinaryOp op, DType dt, const Operand& a, const Operand& b, void* out, int64_t n,
                   cudaStream_t stream) {
  if (n == 0) return;
  const bool cmp = is_comparison(op);
  if (!cmp && dt == DType::kF32 && n % 4 == 0 &&
      (a.is_scalar || (a.contiguous && aligned16(a.ptr))) &&
      (b.is_scalar || (b.contiguous && aligned16(b.ptr))) && aligned16(out)) {
    binary_f32x4_kernel<<<blocks_for(n / 4), kThreads, 0, stream>>>(
        op, a, b, static_cast<float*>(out), n / 4);
    check_launch("binary_f32x4");
    return;
  }
  TANDEM_CUDA_ALL_TYPES(dt, "elementwise op", [&] {
    if (cmp) {
      binary_kernel<scalar_t, uint8_t>
          <<<blocks_for(n), kThreads, 0, stream>>>(op, a, b, static_cast<uint8_t*>(out), n);
    } else {
      binary_kernel<scalar_t, scalar_t>
          <<<blocks_for(n), kThreads, 0, stream>>>(op, a, b, static_cast<scalar_t*>(out), n);
    }
  });
  check_launch("binary");
}

void launch_unary(UnaryOp op, DType dt, const void* a, void* out, int64_t n, double arg,
                  cudaStream_t stream) {
  if (n == 0) return;
  TANDEM_CUDA_FLOAT_TYPES(dt, "elementwise op", [&] {
    unary_kernel<scalar_t><<<blocks_for(n), kThreads, 0, stream>>>(
        op, static_cast<const scalar_t*>(a), static_cast<scalar_t*>(out), n, arg);
  });
  check_launch("unary");
}

void launch_backward(BackwardOp op, DType dt, const void* x, const void* g, void* out, int64_t n,
                     double arg, cudaStream_t stream) {
  if (n == 0) return;
  TANDEM_CUDA_FLOAT_TYPES(dt, "backward", [&] {
    backward_kernel<scalar_t><<<blocks_for(n), kThreads, 0, stream>>>(
        op, static_cast<const scalar_t*>(x), static_cast<const scalar_t*>(g),
        static_cast<scalar_t*>(out), n, arg);
  });
  check_launch("backward");
}

void launch_where(DType dt, const uint8_t* c, const void* a, const void* b, void* out, int64_t n,
                  cudaStream_t stream) {
  if (n == 0) return;
  TANDEM_CUDA_ALL_TYPES(dt, "where", [&] {
    where_kernel<scalar_t><<<blocks_for(n), kThreads, 0, stream>>>(
        c, static_cast<const scalar_t*>(a), static_cast<const scalar_t*>(b),
        static_cast<scalar_t*>(out), n);
  });
  check_launch("where");
}

void launch_axpy(DType dt, void* a, const void* b, double alpha, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  TANDEM_CUDA_FLOAT_TYPES(dt, "add_", [&] {
    axpy_kernel<scalar_t><<<blocks_for(n), kThreads, 0, stream>>>(static_cast<scalar_t*>(a),
                                                                  static_cast<const scalar_t*>(b),
                                                                  static_cast<scalar_t>(alpha), n);
  });
  check_launch("axpy");
}

void launch_scale(DType dt, void* a, double s, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  TANDEM_CUDA_FLOAT_TYPES(dt, "mul_", [&] {
    scale_kernel<scalar_t><<<blocks_for(n), kThreads, 0, stream>>>(static_cast<scalar_t*>(a),
                                                                   static_cast<scalar_t>(s), n);
  });
  check_launch("scale");
}

void launch_dropout_mask(uint64_t seed, uint64_t stream_id, uint64_t first, uint32_t threshold,
                         uint8_t* keep, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  dropout_mask_kernel<<<blocks_for((n + 7) / 4), kThreads, 0, stream>>>(seed, stream_id, first,
                                                                        threshold, keep, n);
  check_launch("dropout_mask");
}

void launch_masked_scale(DType dt, const void* x, const uint8_t* keep, double s, void* out,
                         int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  TANDEM_CUDA_FLOAT_TYPES(dt, "dropout", [&] {
    masked_scale_kernel<scalar_t><<<blocks_for(n), kThreads, 0, stream>>>(
        static_cast<const scalar_t*>(x), keep, static_cast<scalar_t>(s),
        static_cast<scalar_t*>(out), n);
  });
  check_launch("masked_scale");
}

}  // namespace tandem::cuda
