// Launchers of the CUDA backend's own kernels, on raw pointers: the only interface between the
// host code (cuda_backend.cc, compiled by the host compiler) and the .cu files (nvcc). Keeping
// tensors out of device code keeps nvcc's work, and CI's build time, small.
//
// Every launcher enqueues on `stream` and returns at once. Floating kernels compute f16/bf16 in
// f32, f32 in f32 and f64 in f64; integer dtypes where the CPU supports them.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "core/backends/op_codes.h"
#include "core/tensor/dtype.h"

namespace tandem::cuda {

constexpr int kMaxDims = 8;

// A strided view in elements: element i (row-major over size) lives at sum(idx[d] * stride[d]).
struct Strided {
  int ndim = 0;
  int64_t size[kMaxDims] = {};
  int64_t stride[kMaxDims] = {};
};

// An input of an elementwise kernel, already broadcast to the output's shape.
struct Operand {
  const void* ptr = nullptr;
  Strided view;
  bool contiguous = false;  // same element order as the output: index i at ptr[i]
  bool is_scalar = false;   // use `scalar` instead of memory
  double scalar = 0;
};

// dst = src converted, over n elements (both views in the same row-major order).
void launch_copy(void* dst, DType dst_dtype, const Strided& dst_view, const void* src,
                 DType src_dtype, const Strided& src_view, int64_t n, cudaStream_t stream);
void launch_fill(void* dst, DType dtype, const Strided& view, int64_t n, double value,
                 cudaStream_t stream);

// out (contiguous, n elements) = op(a, b); out has dtype u8 for comparisons, else `dtype`.
void launch_binary(BinaryOp op, DType dtype, const Operand& a, const Operand& b, void* out,
                   int64_t n, cudaStream_t stream);
// Contiguous float tensors of n elements.
void launch_unary(UnaryOp op, DType dtype, const void* a, void* out, int64_t n, double arg,
                  cudaStream_t stream);
void launch_backward(BackwardOp op, DType dtype, const void* x, const void* g, void* out, int64_t n,
                     double arg, cudaStream_t stream);
void launch_where(DType dtype, const uint8_t* cond, const void* a, const void* b, void* out,
                  int64_t n, cudaStream_t stream);
void launch_axpy(DType dtype, void* a, const void* b, double alpha, int64_t n, cudaStream_t stream);
void launch_scale(DType dtype, void* a, double s, int64_t n, cudaStream_t stream);

// Reductions of contiguous layouts: (rows, red) -> rows, and (red, inner) -> inner.
void launch_sum_rows(DType dtype, const void* x, int64_t rows, int64_t red, void* out,
                     cudaStream_t stream);
void launch_sum_cols(DType dtype, const void* x, int64_t red, int64_t inner, void* out,
                     cudaStream_t stream);
// Max of each row and its first index (NaN wins, as on the CPU).
void launch_max_rows(DType dtype, const void* x, int64_t rows, int64_t red, void* values,
                     int64_t* indices, cudaStream_t stream);
// gi[i * red + idx[i]] += g[i] for i < rows (gi zeroed by the caller).
void launch_scatter_rows(DType dtype, const void* g, const int64_t* idx, int64_t rows, int64_t red,
                         void* gi, cudaStream_t stream);

void launch_softmax(DType dtype, const void* x, void* y, int64_t rows, int64_t n, bool log,
                    cudaStream_t stream);
void launch_softmax_backward(DType dtype, const void* y, const void* g, void* gx, int64_t rows,
                             int64_t n, bool log, cudaStream_t stream);
// Per row i: lse[i] = max, lse[rows + i] = log(sum(exp(x - max))), row_loss[i] (f64) the row's
// smoothed cross-entropy.
void launch_cross_entropy(DType dtype, const void* x, const int64_t* target, int64_t rows,
                          int64_t classes, double smoothing, void* lse, double* row_loss,
                          cudaStream_t stream);
// gx = grad_loss / rows * (softmax(x) - smoothed one-hot); grad_loss is one device element.
void launch_cross_entropy_backward(DType dtype, const void* x, const int64_t* target,
                                   const void* lse, int64_t rows, int64_t classes, double smoothing,
                                   const void* grad_loss, void* gx, cudaStream_t stream);

// keep[i] = 1 iff (philox4x32(seed, stream_id, (first + i) / 4)[(first + i) % 4] >> 8) >=
// threshold: the CPU's dropout mask bit for bit (core/ops/dropout.cc).
void launch_dropout_mask(uint64_t seed, uint64_t stream_id, uint64_t first, uint32_t threshold,
                         uint8_t* keep, int64_t n, cudaStream_t stream);
void launch_masked_scale(DType dtype, const void* x, const uint8_t* keep, double scale, void* out,
                         int64_t n, cudaStream_t stream);

// Fused optimizer updates: one launch over chunks of many tensors (multi-tensor apply). `chunks`
// lives in device memory.
struct OptimChunk {
  void* param;
  const void* grad;
  void* state1;  // momentum buffer / exp_avg
  void* state2;  // exp_avg_sq (Adam)
  int64_t begin, end;
  // Per-parameter scalars (parameters may be at different steps): SGD: a = 1 on the parameter's
  // first step (the buffer starts as the gradient); Adam: a = -lr / bias_correction1,
  // b = sqrt(bias_correction2).
  double a, b;
};
constexpr int64_t kOptimChunkElems = 65536;
void launch_sgd(DType dtype, const OptimChunk* chunks, int64_t num_chunks, double lr,
                double momentum, double dampening, double weight_decay, bool nesterov,
                cudaStream_t stream);
void launch_adam(DType dtype, const OptimChunk* chunks, int64_t num_chunks, double lr, double beta1,
                 double beta2, double eps, double weight_decay, bool decoupled,
                 cudaStream_t stream);

}  // namespace tandem::cuda
