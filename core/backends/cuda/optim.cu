// Fused optimizer updates (multi-tensor apply): one launch updates every parameter of a group.
// The host builds a table of chunks (tensor pointers and an element range, kOptimChunkElems at
// most) and each block walks one chunk. The per-element math is core/optim/sgd.cc's and adam.cc's.
#include <cmath>

#include "core/backends/cuda/device_math.cuh"

namespace tandem::cuda {
namespace {

template <typename T>
__global__ void sgd_kernel(const OptimChunk* chunks, T lr, T mom, T keep, T wd, bool use_wd,
                           bool has_momentum, bool nesterov) {
  const OptimChunk c = chunks[blockIdx.x];
  T* p = static_cast<T*>(c.param);
  const T* g = static_cast<const T*>(c.grad);
  T* buf = static_cast<T*>(c.state1);
  const bool first = c.a != 0.0;
  for (int64_t i = c.begin + threadIdx.x; i < c.end; i += blockDim.x) {
    T d = use_wd ? g[i] + wd * p[i] : g[i];
    if (has_momentum) {
      const T b = first ? d : buf[i] * mom + keep * d;
      buf[i] = b;
      d = nesterov ? d + mom * b : b;
    }
    p[i] = p[i] + (-lr) * d;
  }
}

template <typename T>
__global__ void adam_kernel(const OptimChunk* chunks, T b1, T b2, T eps, T wd, T decay, bool l2,
                            bool decoupled_decay) {
  const OptimChunk c = chunks[blockIdx.x];
  T* p = static_cast<T*>(c.param);
  const T* g = static_cast<const T*>(c.grad);
  T* m = static_cast<T*>(c.state1);
  T* v = static_cast<T*>(c.state2);
  const T neg_step_size = static_cast<T>(c.a), bias_c2_sqrt = static_cast<T>(c.b);
  for (int64_t i = c.begin + threadIdx.x; i < c.end; i += blockDim.x) {
    T pi = p[i];
    if (decoupled_decay) pi = pi * decay;
    const T gi = l2 ? g[i] + wd * pi : g[i];
    const T mi = m[i] * b1 + (T(1) - b1) * gi;
    const T vi = v[i] * b2 + (T(1) - b2) * gi * gi;
    const T denom = ::sqrt(vi) / bias_c2_sqrt + eps;
    p[i] = pi + neg_step_size * mi / denom;
    m[i] = mi;
    v[i] = vi;
  }
}

}  // namespace

void launch_sgd(DType dt, const OptimChunk* chunks, int64_t num_chunks, double lr, double momentum,
                double dampening, double weight_decay, bool nesterov, cudaStream_t stream) {
  if (num_chunks == 0) return;
  TANDEM_CUDA_FLOAT_TYPES(dt, "sgd", [&] {
    sgd_kernel<scalar_t><<<static_cast<unsigned>(num_chunks), kThreads * 2, 0, stream>>>(
        chunks, static_cast<scalar_t>(lr), static_cast<scalar_t>(momentum),
        static_cast<scalar_t>(1.0 - dampening), static_cast<scalar_t>(weight_decay),
        weight_decay != 0.0, momentum != 0.0, nesterov);
  });
  check_launch("sgd");
}

void launch_adam(DType dt, const OptimChunk* chunks, int64_t num_chunks, double lr, double beta1,
                 double beta2, double eps, double weight_decay, bool decoupled,
                 cudaStream_t stream) {
  if (num_chunks == 0) return;
  TANDEM_CUDA_FLOAT_TYPES(dt, "adam", [&] {
    adam_kernel<scalar_t><<<static_cast<unsigned>(num_chunks), kThreads * 2, 0, stream>>>(
        chunks, static_cast<scalar_t>(beta1), static_cast<scalar_t>(beta2),
        static_cast<scalar_t>(eps), static_cast<scalar_t>(weight_decay),
        static_cast<scalar_t>(1.0 - lr * weight_decay), !decoupled && weight_decay != 0.0,
        decoupled && weight_decay != 0.0);
  });
  check_launch("adam");
}

}  // namespace tandem::cuda
