// The table a device backend fills in (ggml-style: a backend is a folder that plugs in through one
// small interface). The ops in core/ops handle shapes, broadcasting rules, dtype checks and
// autograd; they call here only for the kernels of a tensor that lives on the backend's device.
//
// Key decision: the CUDA backend is linked into tandem_core only when built (TANDEM_CUDA), and it
// is reached through cuda_backend_or_null() below, which returns null in a build without it. So no
// op carries an #ifdef, and a CPU-only build has no reference to any CUDA symbol.
//
// Streams: every kernel is enqueued on the current stream of the tensor's device and returns
// without waiting; copies to the host wait for the data (the caller reads it next).
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "core/backends/op_codes.h"
#include "core/ops/ops.h"
#include "core/tensor/tensor.h"

namespace tandem {

struct DeviceMemoryStats {
  int64_t allocated_bytes = 0;       // in blocks handed to tensors now
  int64_t reserved_bytes = 0;        // obtained from the driver (handed out + cached)
  int64_t peak_allocated_bytes = 0;  // since the last reset_peak_memory
  int64_t peak_reserved_bytes = 0;
  int64_t device_allocs = 0;  // cudaMalloc calls so far (flat in the steady state)
  int64_t device_frees = 0;
};

// One parameter of a fused optimizer update: contiguous, all on one device, one dtype.
struct FusedTensor {
  void* param = nullptr;
  const void* grad = nullptr;
  void* state1 = nullptr;  // momentum buffer (SGD) or exp_avg (Adam)
  void* state2 = nullptr;  // exp_avg_sq (Adam)
  DType dtype = DType::kF32;
  int64_t numel = 0;
  int64_t step = 1;  // this parameter's step, 1 on its first update
};
struct FusedSgdArgs {
  double lr = 0, momentum = 0, dampening = 0, weight_decay = 0;
  bool nesterov = false;
};
struct FusedAdamArgs {
  double lr = 0, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0;
  bool decoupled = false;  // AdamW
};

class DeviceBackend {
 public:
  virtual ~DeviceBackend() = default;

  // ---- devices, memory, synchronisation
  virtual int device_count() = 0;  // 0 without a driver or device; never throws
  virtual void* allocate(size_t nbytes, int device) = 0;
  virtual void deallocate(void* p, size_t nbytes, int device) = 0;
  virtual DeviceMemoryStats memory_stats(int device) = 0;
  virtual void reset_peak_memory(int device) = 0;
  virtual void empty_cache(int device) = 0;
  virtual void synchronize(int device) = 0;
  // Lets the next kernels on `device` use TF32 tensor cores for f32 GEMMs and convolutions.
  virtual void set_allow_tf32(bool allow) = 0;

  // ---- copies and fills. copy: dst and src have the same shape; at least one lives on this
  // backend's device; dtypes may differ (converted on the device).
  virtual void copy(const Tensor& dst, const Tensor& src) = 0;
  virtual void fill(const Tensor& t, double value) = 0;

  // ---- elementwise. Inputs broadcast to `out`'s shape; out is contiguous and preallocated.
  // A one-element CPU tensor may stand for a scalar operand.
  virtual void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) = 0;
  virtual void unary(UnaryOp op, const Tensor& a, double arg, const Tensor& out) = 0;
  virtual void backward(BackwardOp op, const Tensor& x, const Tensor& g, double arg,
                        const Tensor& out) = 0;
  virtual void where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) = 0;
  virtual void add_(const Tensor& a, const Tensor& b, double alpha) = 0;  // b same shape as a
  virtual void mul_(const Tensor& a, double s) = 0;

  // ---- reductions of contiguous layouts: (rows, red) -> rows and (red, inner) -> inner.
  virtual void sum_rows(const Tensor& x, int64_t rows, int64_t red, const Tensor& out) = 0;
  virtual void sum_cols(const Tensor& x, int64_t red, int64_t inner, const Tensor& out) = 0;
  virtual void max_rows(const Tensor& x, int64_t rows, int64_t red, const Tensor& values,
                        const Tensor& indices) = 0;
  // out (rows_out) += ... : scatters g[i] into gi[i * red + idx[i]] (max's backward).
  virtual void scatter_rows(const Tensor& g, const Tensor& idx, int64_t red, const Tensor& gi) = 0;

  // ---- GEMM: out (m, n) = alpha * op(a) (m, k) @ op(b) (k, n) + beta * out, row-major, with
  // leading dimensions in elements. TF32 only when set_allow_tf32(true).
  virtual void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const Tensor& a,
                    int64_t lda, const Tensor& b, int64_t ldb, double beta, const Tensor& out) = 0;

  // ---- softmax over the last dim of a contiguous (rows, n) tensor; log selects log-softmax.
  virtual void softmax(const Tensor& x, bool log, const Tensor& y) = 0;
  virtual void softmax_backward(const Tensor& y, const Tensor& g, bool log, const Tensor& gx) = 0;
  // Cross-entropy of (n, c) logits against i64 targets, mean over n; loss is a 0-dim tensor.
  // lse (n) keeps log-sum-exp for the backward.
  virtual void cross_entropy(const Tensor& logits, const Tensor& target, double smoothing,
                             const Tensor& loss, const Tensor& lse) = 0;
  virtual void cross_entropy_backward(const Tensor& logits, const Tensor& target, const Tensor& lse,
                                      double smoothing, const Tensor& grad_loss,
                                      const Tensor& grad_logits) = 0;

  // ---- dropout: keep[i] for global element index first + i (the CPU's Philox mask, bit for bit)
  virtual void dropout_mask(uint64_t seed, uint64_t stream, uint64_t first, double p,
                            const Tensor& keep) = 0;
  virtual void masked_scale(const Tensor& x, const Tensor& keep, double scale,
                            const Tensor& out) = 0;

  // ---- convolution, pooling, batch norm (cuDNN on CUDA): NCHW contiguous tensors. The backward
  // fills whichever of gx, gw, gb are defined.
  virtual void conv2d(const Tensor& x, const Tensor& w, const Tensor& bias, const Conv2dOptions& o,
                      const Tensor& out) = 0;
  virtual void conv2d_backward(const Tensor& x, const Tensor& w, const Tensor& gout,
                               const Conv2dOptions& o, const Tensor& gx, const Tensor& gw,
                               const Tensor& gb) = 0;
  // Pooling windows as cuDNN computes them (floor mode); avg honours o.count_include_pad.
  virtual void pool2d(bool max, const Tensor& x, const Pool2dOptions& o, const Tensor& out) = 0;
  virtual void pool2d_backward(bool max, const Tensor& x, const Tensor& out, const Tensor& gout,
                               const Pool2dOptions& o, const Tensor& gx) = 0;
  // Training (batch statistics; running stats updated when defined) or inference (running stats).
  // weight/bias defined (the caller passes ones/zeros). save_mean/save_invstd (C) for backward.
  virtual void batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias,
                          const Tensor& running_mean, const Tensor& running_var, bool training,
                          double momentum, double eps, const Tensor& y, const Tensor& save_mean,
                          const Tensor& save_invstd) = 0;
  virtual void batch_norm_backward(const Tensor& x, const Tensor& gy, const Tensor& weight,
                                   const Tensor& save_mean, const Tensor& save_invstd, double eps,
                                   const Tensor& gx, const Tensor& gw, const Tensor& gb) = 0;

  // ---- fused optimizer updates over every parameter of a group (one launch per dtype)
  virtual void sgd_update(int device, const std::vector<FusedTensor>& params,
                          const FusedSgdArgs& args) = 0;
  virtual void adam_update(int device, const std::vector<FusedTensor>& params,
                           const FusedAdamArgs& args) = 0;
};

// The CUDA backend, or null when tandem was built without it (TANDEM_CUDA=OFF / no nvcc).
DeviceBackend* cuda_backend_or_null();
// The backend of `device` for op: throws Unimplemented naming the op when there is none.
DeviceBackend& backend_for(const char* op, Device device);
// Number of visible CUDA devices: 0 without the backend, a driver or a device.
int cuda_device_count();
bool cuda_available();

}  // namespace tandem
