// Every tensor op of the core, as free functions. All are differentiable where the math is
// (autograd records them when an input requires grad) and dispatch on the inputs' device; the CPU
// kernels live beside this file, one family per file. Floating kernels run in f32 and f64;
// f16/bf16 tensors are converted with .to() first.
//
// Shapes broadcast as in NumPy/PyTorch. `dim` arguments may be negative.
#pragma once

#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "core/tensor/tensor.h"

namespace tandem {

// ---------------------------------------------------------------- elementwise (elementwise.cc)
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor add(const Tensor& a, double b);
Tensor mul(const Tensor& a, double b);
Tensor pow(const Tensor& a, double exponent);
Tensor pow(const Tensor& a, const Tensor& exponent);
Tensor maximum(const Tensor& a, const Tensor& b);  // gradient goes to a where a >= b
Tensor neg(const Tensor& a);
Tensor exp(const Tensor& a);
Tensor log(const Tensor& a);
Tensor sqrt(const Tensor& a);
Tensor abs(const Tensor& a);
Tensor relu(const Tensor& a);
// x > 0 ? x : negative_slope * x (torch.nn.functional.leaky_relu; ONNX LeakyRelu's alpha).
Tensor leaky_relu(const Tensor& a, double negative_slope = 0.01);
Tensor gelu(const Tensor& a);  // exact (erf) form, PyTorch's default
Tensor tanh(const Tensor& a);
Tensor sigmoid(const Tensor& a);
// Comparisons return u8 tensors of 0/1 (not differentiable).
Tensor eq(const Tensor& a, const Tensor& b);
Tensor ne(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Tensor& b);
Tensor le(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, const Tensor& b);
Tensor ge(const Tensor& a, const Tensor& b);
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);  // cond: u8

// In place, never recorded (optimizers, accumulation, buffers). b broadcasts to a.
void add_(Tensor& a, const Tensor& b, double alpha = 1.0);  // a += alpha * b
void mul_(Tensor& a, double s);

inline Tensor operator+(const Tensor& a, const Tensor& b) {
  return add(a, b);
}
inline Tensor operator-(const Tensor& a, const Tensor& b) {
  return sub(a, b);
}
inline Tensor operator*(const Tensor& a, const Tensor& b) {
  return mul(a, b);
}
inline Tensor operator/(const Tensor& a, const Tensor& b) {
  return div(a, b);
}
inline Tensor operator-(const Tensor& a) {
  return neg(a);
}
inline Tensor operator+(const Tensor& a, double b) {
  return add(a, b);
}
inline Tensor operator-(const Tensor& a, double b) {
  return add(a, -b);
}
inline Tensor operator*(const Tensor& a, double b) {
  return mul(a, b);
}
inline Tensor operator/(const Tensor& a, double b) {
  return mul(a, 1.0 / b);
}
inline Tensor operator*(double a, const Tensor& b) {
  return mul(b, a);
}
inline Tensor operator+(double a, const Tensor& b) {
  return add(b, a);
}

// The broadcast shape of a and b, or a ShapeError naming both.
Shape broadcast_shapes(const Shape& a, const Shape& b);
// Sums g over broadcast dimensions so that it has `shape` (the backward of broadcasting).
Tensor sum_to(const Tensor& g, const Shape& shape);

// ---------------------------------------------------------------- reductions (reduce.cc)
Tensor sum(const Tensor& a);  // all elements, 0-dim result
Tensor sum(const Tensor& a, std::vector<int64_t> dims, bool keepdim = false);
Tensor mean(const Tensor& a);
Tensor mean(const Tensor& a, std::vector<int64_t> dims, bool keepdim = false);
// Max over one dim: (values, indices i64). Gradient flows to the (first) argmax.
std::pair<Tensor, Tensor> max(const Tensor& a, int64_t dim, bool keepdim = false);
Tensor max(const Tensor& a);  // all elements
Tensor argmax(const Tensor& a, int64_t dim, bool keepdim = false);

// ---------------------------------------------------------------- linear algebra (matmul.cc)
// 1-D/2-D/batched (..., n, k) x (..., k, m) with broadcast batch dims; OpenBLAS GEMM.
Tensor matmul(const Tensor& a, const Tensor& b);
// x (..., in) @ weight(out, in)^T + bias(out): one GEMM with the bias folded in.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());

// ---------------------------------------------------------------- convolution (conv.cc)
struct Conv2dOptions {
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;
  int64_t dilation_h = 1, dilation_w = 1;
  int64_t groups = 1;
};
// x (N, C, H, W), weight (O, C / groups, kh, kw), bias (O) or undefined.
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dOptions& opt);

// ---------------------------------------------------------------- pooling (pool.cc)
struct Pool2dOptions {
  int64_t kernel_h = 2, kernel_w = 2;
  int64_t stride_h = 2, stride_w = 2;  // PyTorch's default stride is the kernel size
  int64_t pad_h = 0, pad_w = 0;
  bool ceil_mode = false;
  bool count_include_pad = true;  // avg pooling only
};
Tensor max_pool2d(const Tensor& x, const Pool2dOptions& opt);
Tensor avg_pool2d(const Tensor& x, const Pool2dOptions& opt);
Tensor adaptive_avg_pool2d(const Tensor& x, int64_t out_h, int64_t out_w);

// ---------------------------------------------------------------- normalisation (batch_norm.cc)
// x (N, C, ...). Training: normalises with the batch statistics (biased variance) and updates
// running_mean/var in place with momentum using the unbiased variance, as PyTorch does. Eval:
// uses the running statistics. weight/bias (C) may be undefined.
Tensor batch_norm(const Tensor& x, Tensor running_mean, Tensor running_var, const Tensor& weight,
                  const Tensor& bias, bool training, double momentum, double eps);

// ---------------------------------------------------------------- softmax and losses (loss.cc)
Tensor softmax(const Tensor& x, int64_t dim);
Tensor log_softmax(const Tensor& x, int64_t dim);
// logits (N, C), target (N) i64 class indices; mean over N. Fused with log-softmax.
Tensor cross_entropy(const Tensor& logits, const Tensor& target, double label_smoothing = 0.0);
Tensor mse_loss(const Tensor& input, const Tensor& target);  // mean of squared differences

// ---------------------------------------------------------------- dropout (dropout.cc)
// Where dropout draws its mask from. Element j of sample n (row n of dim 0) is kept when
// philox(seed, stream, (first_sample + n) * per_sample + j) >= p: the mask depends on the global
// sample index, not on which rank or thread holds the sample.
struct DropoutKey {
  uint64_t seed = 0;
  uint64_t stream = 0;       // separates steps and dropout layers
  int64_t first_sample = 0;  // global index of row 0 of this batch
};
Tensor dropout(const Tensor& x, double p, bool training, const DropoutKey& key);

// ---------------------------------------------------------------- shape ops (shape_ops.cc)
Tensor cat(const std::vector<Tensor>& tensors, int64_t dim);
// Rows of x along dim picked by an integer tensor (i32/i64) of indices: x.index_select(dim, idx).
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);
// x[index] along dim 0 (PyTorch's advanced indexing with one integer tensor).
Tensor index(const Tensor& x, const Tensor& index);

}  // namespace tandem
