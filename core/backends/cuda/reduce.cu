// Reductions, softmax and cross-entropy of the CUDA backend. Rows are reduced by one block each
// (warp shuffles, then shared memory); f32 accumulates in f32 with a tree order, so results match
// the CPU's (double-accumulated) ones within the f32 tolerance of the tests, not bit for bit.
#include <cfloat>
#include <cmath>

#include "core/backends/cuda/device_math.cuh"

namespace tandem::cuda {
namespace {

constexpr int kRowThreads = 512;

template <typename T>
__device__ inline T warp_sum(T v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  return v;
}
template <typename T>
__device__ inline T warp_max(T v) {
  for (int o = 16; o > 0; o >>= 1) v = ::fmax(v, __shfl_down_sync(0xffffffffu, v, o));
  return v;
}

// Block-wide sum or max; every thread gets the result.
template <typename T, bool kMax>
__device__ T block_reduce(T v) {
  __shared__ T partial[32];
  __shared__ T result;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  v = kMax ? warp_max(v) : warp_sum(v);
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  if (warp == 0) {
    const int nw = (blockDim.x + 31) / 32;
    T x = lane < nw ? partial[lane] : (kMax ? T(-INFINITY) : T(0));
    x = kMax ? warp_max(x) : warp_sum(x);
    if (lane == 0) result = x;
  }
  __syncthreads();
  const T r = result;
  __syncthreads();  // partial/result are reused by the caller's next reduction
  return r;
}

template <typename T>
__global__ void sum_rows_kernel(const T* x, int64_t red, T* out) {
  const T* row = x + blockIdx.x * red;
  T acc = 0;
  for (int64_t j = threadIdx.x; j < red; j += blockDim.x) acc += row[j];
  acc = block_reduce<T, false>(acc);
  if (threadIdx.x == 0) out[blockIdx.x] = acc;
}

template <typename T>
__global__ void sum_cols_kernel(const T* x, int64_t red, int64_t inner, T* out) {
  for (int64_t j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; j < inner;
       j += int64_t(gridDim.x) * blockDim.x) {
    T acc = 0;
    for (int64_t r = 0; r < red; ++r) acc += x[r * inner + j];
    out[j] = acc;
  }
}

// One thread per row: rows of max are short (class counts), and ties must pick the first index.
template <typename T>
__global__ void max_rows_kernel(const T* x, int64_t rows, int64_t red, T* values, int64_t* idx) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < rows;
       i += int64_t(gridDim.x) * blockDim.x) {
    const T* row = x + i * red;
    int64_t best = 0;
    for (int64_t r = 1; r < red; ++r) {
      if constexpr (std::is_floating_point_v<T>) {
        if (isnan(row[best])) break;
        if (isnan(row[r]) || row[r] > row[best]) best = r;
      } else {
        if (row[r] > row[best]) best = r;
      }
    }
    values[i] = row[best];
    idx[i] = best;
  }
}

template <typename T>
__global__ void scatter_rows_kernel(const T* g, const int64_t* idx, int64_t rows, int64_t red,
                                    T* gi) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < rows;
       i += int64_t(gridDim.x) * blockDim.x)
    gi[i * red + idx[i]] += g[i];
}

template <typename T, bool kLog>
__global__ void softmax_kernel(const T* x, T* y, int64_t n) {
  const T* row = x + blockIdx.x * n;
  T* out = y + blockIdx.x * n;
  T m = -INFINITY;
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) m = ::fmax(m, row[j]);
  m = block_reduce<T, true>(m);
  T s = 0;
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) s += ::exp(row[j] - m);
  s = block_reduce<T, false>(s);
  const T log_s = ::log(s);
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
    out[j] = kLog ? row[j] - m - log_s : ::exp(row[j] - m) / s;
}

// softmax: gx = y * (g - sum(g * y)); log-softmax: gx = g - exp(y) * sum(g).
template <typename T, bool kLog>
__global__ void softmax_backward_kernel(const T* y, const T* g, T* gx, int64_t n) {
  const int64_t base = blockIdx.x * n;
  T s = 0;
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
    s += kLog ? g[base + j] : g[base + j] * y[base + j];
  s = block_reduce<T, false>(s);
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
    const T yj = y[base + j], gj = g[base + j];
    gx[base + j] = kLog ? gj - ::exp(yj) * s : yj * (gj - s);
  }
}

template <typename T>
__global__ void cross_entropy_kernel(const T* x, const int64_t* target, int64_t rows, int64_t c,
                                     double ls, T* lse, double* row_loss) {
  const int64_t i = blockIdx.x;
  const T* row = x + i * c;
  T m = -INFINITY;
  for (int64_t j = threadIdx.x; j < c; j += blockDim.x) m = ::fmax(m, row[j]);
  m = block_reduce<T, true>(m);
  T s = 0, total = 0;
  for (int64_t j = threadIdx.x; j < c; j += blockDim.x) {
    s += ::exp(row[j] - m);
    total += row[j];
  }
  s = block_reduce<T, false>(s);
  total = block_reduce<T, false>(total);
  if (threadIdx.x == 0) {
    const T log_s = ::log(s);
    lse[i] = m;
    lse[rows + i] = log_s;
    const double l = static_cast<double>(m) + static_cast<double>(log_s);
    row_loss[i] = (1.0 - ls) * (l - static_cast<double>(row[target[i]])) +
                  ls * (l - static_cast<double>(total) / static_cast<double>(c));
  }
}

template <typename T>
__global__ void cross_entropy_backward_kernel(const T* x, const int64_t* target, const T* lse,
                                              int64_t rows, int64_t c, double ls,
                                              const T* grad_loss, T* gx) {
  const int64_t i = blockIdx.x;
  const T scale = static_cast<T>(static_cast<double>(grad_loss[0]) / static_cast<double>(rows));
  const T off = static_cast<T>(ls / static_cast<double>(c)), hit = static_cast<T>(1.0 - ls);
  const T m = lse[i], log_s = lse[rows + i];
  for (int64_t j = threadIdx.x; j < c; j += blockDim.x) {
    T v = scale * (::exp(x[i * c + j] - m - log_s) - off);
    if (j == target[i]) v -= scale * hit;
    gx[i * c + j] = v;
  }
}

unsigned row_threads(int64_t n) {
  // Enough threads to cover a short row once, at most kRowThreads; a multiple of the warp size.
  int64_t t = (n + 31) / 32 * 32;
  return static_cast<unsigned>(t < 32 ? 32 : (t > kRowThreads ? kRowThreads : t));
}

void check_rows(int64_t rows) {
  TANDEM_CHECK(rows <= 2147483647, "a row reduction on cuda has ", rows,
               " rows; at most 2^31 - 1 are supported");
}

}  // namespace

void launch_sum_rows(DType dt, const void* x, int64_t rows, int64_t red, void* out,
                     cudaStream_t stream) {
  if (rows == 0) return;
  check_rows(rows);
  TANDEM_CUDA_FLOAT_TYPES(dt, "sum", [&] {
    sum_rows_kernel<scalar_t><<<static_cast<unsigned>(rows), row_threads(red), 0, stream>>>(
        static_cast<const scalar_t*>(x), red, static_cast<scalar_t*>(out));
  });
  check_launch("sum_rows");
}

void launch_sum_cols(DType dt, const void* x, int64_t red, int64_t inner, void* out,
                     cudaStream_t stream) {
  if (inner == 0) return;
  TANDEM_CUDA_FLOAT_TYPES(dt, "sum", [&] {
    sum_cols_kernel<scalar_t><<<blocks_for(inner), kThreads, 0, stream>>>(
        static_cast<const scalar_t*>(x), red, inner, static_cast<scalar_t*>(out));
  });
  check_launch("sum_cols");
}

void launch_max_rows(DType dt, const void* x, int64_t rows, int64_t red, void* values, int64_t* idx,
                     cudaStream_t stream) {
  if (rows == 0) return;
  TANDEM_CUDA_ALL_TYPES(dt, "max", [&] {
    max_rows_kernel<scalar_t><<<blocks_for(rows), kThreads, 0, stream>>>(
        static_cast<const scalar_t*>(x), rows, red, static_cast<scalar_t*>(values), idx);
  });
  check_launch("max_rows");
}

void launch_scatter_rows(DType dt, const void* g, const int64_t* idx, int64_t rows, int64_t red,
                         void* gi, cudaStream_t stream) {
  if (rows == 0) return;
  TANDEM_CUDA_FLOAT_TYPES(dt, "max_backward", [&] {
    scatter_rows_kernel<scalar_t><<<blocks_for(rows), kThreads, 0, stream>>>(
        static_cast<const scalar_t*>(g), idx, rows, red, static_cast<scalar_t*>(gi));
  });
  check_launch("scatter_rows");
}

void launch_softmax(DType dt, const void* x, void* y, int64_t rows, int64_t n, bool log,
                    cudaStream_t stream) {
  if (rows == 0 || n == 0) return;
  check_rows(rows);
  TANDEM_CUDA_FLOAT_TYPES(dt, "softmax", [&] {
    const auto* px = static_cast<const scalar_t*>(x);
    auto* py = static_cast<scalar_t*>(y);
    if (log)
      softmax_kernel<scalar_t, true>
          <<<static_cast<unsigned>(rows), row_threads(n), 0, stream>>>(px, py, n);
    else
      softmax_kernel<scalar_t, false>
          <<<static_cast<unsigned>(rows), row_threads(n), 0, stream>>>(px, py, n);
  });
  check_launch("softmax");
}

void launch_softmax_backward(DType dt, const void* y, const void* g, void* gx, int64_t rows,
                             int64_t n, bool log, cudaStream_t stream) {
  if (rows == 0 || n == 0) return;
  check_rows(rows);
  TANDEM_CUDA_FLOAT_TYPES(dt, "softmax_backward", [&] {
    const auto* py = static_cast<const scalar_t*>(y);
    const auto* pg = static_cast<const scalar_t*>(g);
    auto* po = static_cast<scalar_t*>(gx);
    const unsigned grid = static_cast<unsigned>(rows);
    if (log)
      softmax_backward_kernel<scalar_t, true><<<grid, row_threads(n), 0, stream>>>(py, pg, po, n);
    else
      softmax_backward_kernel<scalar_t, false><<<grid, row_threads(n), 0, stream>>>(py, pg, po, n);
  });
  check_launch("softmax_backward");
}

void launch_cross_entropy(DType dt, const void* x, const int64_t* target, int64_t rows,
                          int64_t classes, double ls, void* lse, double* row_loss,
                          cudaStream_t stream) {
  check_rows(rows);
  TANDEM_CUDA_FLOAT_TYPES(dt, "cross_entropy", [&] {
    cross_entropy_kernel<scalar_t>
        <<<static_cast<unsigned>(rows), row_threads(classes), 0, stream>>>(
            static_cast<const scalar_t*>(x), target, rows, classes, ls, static_cast<scalar_t*>(lse),
            row_loss);
  });
  check_launch("cross_entropy");
}

void launch_cross_entropy_backward(DType dt, const void* x, const int64_t* target, const void* lse,
                                   int64_t rows, int64_t classes, double ls, const void* grad_loss,
                                   void* gx, cudaStream_t stream) {
  check_rows(rows);
  TANDEM_CUDA_FLOAT_TYPES(dt, "cross_entropy_backward", [&] {
    cross_entropy_backward_kernel<scalar_t>
        <<<static_cast<unsigned>(rows), row_threads(classes), 0, stream>>>(
            static_cast<const scalar_t*>(x), target, static_cast<const scalar_t*>(lse), rows,
            classes, ls, static_cast<const scalar_t*>(grad_loss), static_cast<scalar_t*>(gx));
  });
  check_launch("cross_entropy_backward");
}

}  // namespace tandem::cuda
