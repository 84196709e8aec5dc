// The CUDA implementation of DeviceBackend (core/backends/device_backend.h): tensors in, raw
// pointers and streams out to the launchers of kernels.h, cuBLAS for GEMM. Every call enqueues
// on the compute stream of the tensors' device; only copies to the host wait.
#include <cublas_v2.h>

#include <array>
#include <atomic>
#include <cmath>
#include <cstring>

#include "core/backends/cuda/caching_allocator.h"
#include "core/backends/cuda/cuda_check.h"
#include "core/backends/cuda/cuda_context.h"
#include "core/backends/cuda/cudnn_ops.h"
#include "core/backends/cuda/kernels.h"
#include "core/backends/device_backend.h"

namespace tandem {
namespace cuda {
namespace {

Strided view_of(const Tensor& t, const char* op) {
  TANDEM_CHECK_SHAPE(t.dim() <= kMaxDims, op, " on cuda supports at most ", kMaxDims,
                     " dimensions, got ", t.dim());
  Strided v;
  v.ndim = static_cast<int>(t.dim());
  for (int d = 0; d < v.ndim; ++d) {
    v.size[d] = t.shape()[d];
    v.stride[d] = t.strides()[d];
  }
  return v;
}

int device_of(const char* op, std::initializer_list<const Tensor*> ts) {
  int dev = -1;
  for (const Tensor* t : ts) {
    if (t == nullptr || !t->defined() || !t->device().is_cuda()) continue;
    if (dev < 0) dev = t->device().index;
    TANDEM_CHECK(t->device().index == dev, op, ": tensors on cuda:", dev, " and ",
                 t->device().str(), "; move them to one device with .to()");
  }
  TANDEM_ASSERT(dev >= 0, op, " reached the CUDA backend without a CUDA tensor");
  return dev;
}

cudaStream_t stream_of(int device) {
  return compute_stream(device);
}

size_t nbytes(const Tensor& t) {
  return static_cast<size_t>(t.numel()) * dtype_size(t.dtype());
}

// A device copy of t made contiguous (t itself when it already is).
Tensor contiguous_on_device(const Tensor& t) {
  if (t.is_contiguous()) return t;
  Tensor c = empty(t.shape(), t.dtype(), t.device());
  launch_copy(c.raw_data(), c.dtype(), view_of(c, "copy"), t.raw_data(), t.dtype(),
              view_of(t, "copy"), t.numel(), stream_of(t.device().index));
  return c;
}

Operand operand_of(const Tensor& t, const Tensor& out, const char* op) {
  Operand o;
  if (!t.device().is_cuda()) {
    TANDEM_CHECK(t.numel() == 1, op, ": a ", t.device().str(), " tensor of shape ",
                 shape_str(t.shape()),
                 " cannot be combined with a cuda tensor; move it with .to()");
    o.is_scalar = true;
    o.scalar = t.item();
    return o;
  }
  Tensor e = t.shape() == out.shape() ? t : t.expand(out.shape());
  o.ptr = e.raw_data();
  o.view = view_of(e, op);
  o.contiguous = e.is_contiguous() && e.numel() == out.numel();
  return o;
}

cudaDataType_t blas_type(DType dt) {
  switch (dt) {
    case DType::kF32:
      return CUDA_R_32F;
    case DType::kF64:
      return CUDA_R_64F;
    case DType::kF16:
      return CUDA_R_16F;
    case DType::kBF16:
      return CUDA_R_16BF;
    default:
      throw TypeError(str("matmul on cuda needs a floating dtype, got ", dtype_name(dt)));
  }
}

class CudaBackend final : public DeviceBackend {
 public:
  int device_count() override { return cuda::device_count(); }
  void* allocate(size_t n, int device) override { return device_alloc(n, device); }
  void deallocate(void* p, size_t n, int device) override { device_free(p, n, device); }
  DeviceMemoryStats memory_stats(int device) override { return device_memory_stats(device); }
  void reset_peak_memory(int device) override { reset_peak_device_memory(device); }
  void empty_cache(int device) override { device_empty_cache(device); }
  void synchronize(int device) override {
    TANDEM_CUDA_CHECK(cudaStreamSynchronize(stream_of(device)));
  }
  void set_allow_tf32(bool allow) override { allow_tf32_.store(allow); }

  void copy(const Tensor& dst, const Tensor& src) override {
    const int64_t n = dst.numel();
    if (n == 0) return;
    const bool dcuda = dst.device().is_cuda(), scuda = src.device().is_cuda();
    if (dcuda && scuda && dst.device() == src.device()) {
      cudaStream_t s = stream_of(dst.device().index);
      if (dst.dtype() == src.dtype() && dst.is_contiguous() && src.is_contiguous()) {
        TANDEM_CUDA_CHECK(cudaMemcpyAsync(dst.raw_data(), src.raw_data(), nbytes(dst),
                                          cudaMemcpyDeviceToDevice, s));
      } else {
        launch_copy(dst.raw_data(), dst.dtype(), view_of(dst, "copy_"), src.raw_data(), src.dtype(),
                    view_of(src, "copy_"), n, s);
      }
      return;
    }
    if (dcuda && scuda) {  // across devices: the source's data first, then convert on dst
      Tensor sc = contiguous_on_device(src);
      synchronize(src.device().index);
      Tensor tmp = empty(sc.shape(), sc.dtype(), dst.device());
      TANDEM_CUDA_CHECK(cudaMemcpyPeerAsync(tmp.raw_data(), dst.device().index, sc.raw_data(),
                                            src.device().index, nbytes(sc),
                                            stream_of(dst.device().index)));
      copy(dst, tmp);
      return;
    }
    if (dcuda) {  // host to device through a pinned buffer
      Tensor sc = src.contiguous();
      const bool direct = dst.is_contiguous() && dst.dtype() == sc.dtype();
      Tensor target = direct ? dst : empty(sc.shape(), sc.dtype(), dst.device());
      cudaStream_t s = stream_of(dst.device().index);
      void* pinned = pinned_alloc(nbytes(sc));
      std::memcpy(pinned, sc.raw_data(), nbytes(sc));
      TANDEM_CUDA_CHECK(
          cudaMemcpyAsync(target.raw_data(), pinned, nbytes(sc), cudaMemcpyHostToDevice, s));
      cudaEvent_t done;
      TANDEM_CUDA_CHECK(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
      TANDEM_CUDA_CHECK(cudaEventRecord(done, s));
      pinned_free(pinned, nbytes(sc), done);
      if (!direct) copy(dst, target);
      return;
    }
    // device to host: contiguous on the device, then through a pinned buffer
    Tensor sc = contiguous_on_device(src);
    cudaStream_t s = stream_of(src.device().index);
    void* pinned = pinned_alloc(nbytes(sc));
    TANDEM_CUDA_CHECK(
        cudaMemcpyAsync(pinned, sc.raw_data(), nbytes(sc), cudaMemcpyDeviceToHost, s));
    TANDEM_CUDA_CHECK(cudaStreamSynchronize(s));
    if (dst.is_contiguous() && dst.dtype() == sc.dtype()) {
      std::memcpy(dst.raw_data(), pinned, nbytes(sc));
    } else {
      Tensor host = empty(sc.shape(), sc.dtype());
      std::memcpy(host.raw_data(), pinned, nbytes(sc));
      Tensor d = dst;
      d.copy_(host);  // CPU conversion and strides
    }
    pinned_free(pinned, nbytes(sc), nullptr);
  }

  void fill(const Tensor& t, double value) override {
    launch_fill(t.raw_data(), t.dtype(), view_of(t, "fill_"), t.numel(), value,
                stream_of(t.device().index));
  }

  void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) override {
    const int dev = device_of("elementwise op", {&a, &b, &out});
    launch_binary(op, a.dtype(), operand_of(a, out, "elementwise op"),
                  operand_of(b, out, "elementwise op"), out.raw_data(), out.numel(),
                  stream_of(dev));
  }

  void unary(UnaryOp op, const Tensor& a, double arg, const Tensor& out) override {
    const int dev = device_of("elementwise op", {&a, &out});
    Tensor ac = contiguous_on_device(a);
    launch_unary(op, ac.dtype(), ac.raw_data(), out.raw_data(), out.numel(), arg, stream_of(dev));
  }

  void backward(BackwardOp op, const Tensor& x, const Tensor& g, double arg,
                const Tensor& out) override {
    const int dev = device_of("backward", {&x, &g, &out});
    Tensor xc = contiguous_on_device(x), gc = contiguous_on_device(g);
    launch_backward(op, xc.dtype(), xc.raw_data(), gc.raw_data(), out.raw_data(), out.numel(), arg,
                    stream_of(dev));
  }

  void where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) override {
    const int dev = device_of("where", {&cond, &a, &b, &out});
    Tensor c = contiguous_on_device(cond.expand(out.shape()));
    Tensor ea = contiguous_on_device(a.expand(out.shape()));
    Tensor eb = contiguous_on_device(b.expand(out.shape()));
    launch_where(out.dtype(), static_cast<const uint8_t*>(c.raw_data()), ea.raw_data(),
                 eb.raw_data(), out.raw_data(), out.numel(), stream_of(dev));
  }

  void add_(const Tensor& a, const Tensor& b, double alpha) override {
    const int dev = device_of("add_", {&a, &b});
    Tensor bc = contiguous_on_device(b.shape() == a.shape() ? b : b.expand(a.shape()));
    if (a.is_contiguous()) {
      launch_axpy(a.dtype(), a.raw_data(), bc.raw_data(), alpha, a.numel(), stream_of(dev));
      return;
    }
    Tensor ac = contiguous_on_device(a);
    launch_axpy(a.dtype(), ac.raw_data(), bc.raw_data(), alpha, a.numel(), stream_of(dev));
    copy(a, ac);
  }

  void mul_(const Tensor& a, double s) override {
    const int dev = device_of("mul_", {&a});
    if (a.is_contiguous()) {
      launch_scale(a.dtype(), a.raw_data(), s, a.numel(), stream_of(dev));
      return;
    }
    Tensor ac = contiguous_on_device(a);
    launch_scale(a.dtype(), ac.raw_data(), s, a.numel(), stream_of(dev));
    copy(a, ac);
  }

  void sum_rows(const Tensor& x, int64_t rows, int64_t red, const Tensor& out) override {
    const int dev = device_of("sum", {&x, &out});
    launch_sum_rows(x.dtype(), x.raw_data(), rows, red, out.raw_data(), stream_of(dev));
  }
  void sum_cols(const Tensor& x, int64_t red, int64_t inner, const Tensor& out) override {
    const int dev = device_of("sum", {&x, &out});
    launch_sum_cols(x.dtype(), x.raw_data(), red, inner, out.raw_data(), stream_of(dev));
  }
  void max_rows(const Tensor& x, int64_t rows, int64_t red, const Tensor& values,
                const Tensor& indices) override {
    const int dev = device_of("max", {&x, &values, &indices});
    launch_max_rows(x.dtype(), x.raw_data(), rows, red, values.raw_data(),
                    static_cast<int64_t*>(indices.raw_data()), stream_of(dev));
  }
  void scatter_rows(const Tensor& g, const Tensor& idx, int64_t red, const Tensor& gi) override {
    const int dev = device_of("max_backward", {&g, &idx, &gi});
    launch_scatter_rows(g.dtype(), g.raw_data(), static_cast<const int64_t*>(idx.raw_data()),
                        g.numel(), red, gi.raw_data(), stream_of(dev));
  }

  void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const Tensor& a, int64_t lda,
            const Tensor& b, int64_t ldb, double beta, const Tensor& out) override {
    const int dev = device_of("matmul", {&a, &b, &out});
    if (m == 0 || n == 0) return;
    cublasHandle_t h = handle(dev);
    TANDEM_CUBLAS_CHECK(cublasSetStream(h, stream_of(dev)));
    const DType dt = a.dtype();
    // Row-major C (m, n) = op(A) op(B) is column-major C^T (n, m) = op(B)^T op(A)^T: swap operands.
    const cublasOperation_t opa = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t opb = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    const double alpha64 = 1.0, beta64 = beta;
    const float alpha32 = 1.0f, beta32 = static_cast<float>(beta);
    const bool f64 = dt == DType::kF64;
    cublasComputeType_t compute = f64 ? CUBLAS_COMPUTE_64F : CUBLAS_COMPUTE_32F;
    if (dt == DType::kF32 && allow_tf32_.load()) compute = CUBLAS_COMPUTE_32F_FAST_TF32;
    const void* alpha = f64 ? static_cast<const void*>(&alpha64) : &alpha32;
    const void* betap = f64 ? static_cast<const void*>(&beta64) : &beta32;
    if (k == 0) {  // op(A) op(B) is zero: out = beta * out
      if (beta == 0.0)
        fill(out, 0.0);
      else
        mul_(out, beta);
      return;
    }
    TANDEM_CUBLAS_CHECK(
        cublasGemmEx(h, opb, opa, static_cast<int>(n), static_cast<int>(m), static_cast<int>(k),
                     alpha, b.raw_data(), blas_type(dt), static_cast<int>(ldb), a.raw_data(),
                     blas_type(dt), static_cast<int>(lda), betap, out.raw_data(),
                     blas_type(out.dtype()), static_cast<int>(n), compute, CUBLAS_GEMM_DEFAULT));
  }

  void softmax(const Tensor& x, bool log, const Tensor& y) override {
    const int dev = device_of("softmax", {&x, &y});
    const int64_t n = x.dim() == 0 ? 1 : x.shape().back();
    launch_softmax(x.dtype(), x.raw_data(), y.raw_data(), n == 0 ? 0 : x.numel() / n, n, log,
                   stream_of(dev));
  }
  void softmax_backward(const Tensor& y, const Tensor& g, bool log, const Tensor& gx) override {
    const int dev = device_of("softmax_backward", {&y, &g, &gx});
    const int64_t n = y.dim() == 0 ? 1 : y.shape().back();
    launch_softmax_backward(y.dtype(), y.raw_data(), g.raw_data(), gx.raw_data(),
                            n == 0 ? 0 : y.numel() / n, n, log, stream_of(dev));
  }

  void cross_entropy(const Tensor& logits, const Tensor& target, double smoothing,
                     const Tensor& loss, const Tensor& lse) override {
    const int dev = device_of("cross_entropy", {&logits, &target, &loss, &lse});
    const int64_t rows = logits.shape()[0], classes = logits.shape()[1];
    cudaStream_t s = stream_of(dev);
    Tensor row_loss = empty({rows}, DType::kF64, logits.device());
    launch_cross_entropy(logits.dtype(), logits.raw_data(),
                         static_cast<const int64_t*>(target.raw_data()), rows, classes, smoothing,
                         lse.raw_data(), static_cast<double*>(row_loss.raw_data()), s);
    Tensor total = empty({}, DType::kF64, logits.device());
    launch_sum_rows(DType::kF64, row_loss.raw_data(), 1, rows, total.raw_data(), s);
    launch_scale(DType::kF64, total.raw_data(), 1.0 / static_cast<double>(rows), 1, s);
    launch_copy(loss.raw_data(), loss.dtype(), view_of(loss, "cross_entropy"), total.raw_data(),
                DType::kF64, view_of(total, "cross_entropy"), 1, s);
  }

  void cross_entropy_backward(const Tensor& logits, const Tensor& target, const Tensor& lse,
                              double smoothing, const Tensor& grad_loss,
                              const Tensor& grad_logits) override {
    const int dev = device_of("cross_entropy_backward", {&logits, &target, &lse, &grad_logits});
    Tensor gl = grad_loss;
    if (!gl.device().is_cuda() || gl.dtype() != logits.dtype()) {
      gl = empty({}, logits.dtype(), logits.device());
      copy(gl, grad_loss.reshape({}));
    }
    launch_cross_entropy_backward(logits.dtype(), logits.raw_data(),
                                  static_cast<const int64_t*>(target.raw_data()), lse.raw_data(),
                                  logits.shape()[0], logits.shape()[1], smoothing, gl.raw_data(),
                                  grad_logits.raw_data(), stream_of(dev));
  }

  void dropout_mask(uint64_t seed, uint64_t stream_id, uint64_t first, double p,
                    const Tensor& keep) override {
    const int dev = device_of("dropout", {&keep});
    const uint32_t threshold = static_cast<uint32_t>(std::ceil(p * 16777216.0));
    launch_dropout_mask(seed, stream_id, first, threshold, static_cast<uint8_t*>(keep.raw_data()),
                        keep.numel(), stream_of(dev));
  }
  void masked_scale(const Tensor& x, const Tensor& keep, double scale, const Tensor& out) override {
    const int dev = device_of("dropout", {&x, &keep, &out});
    launch_masked_scale(x.dtype(), x.raw_data(), static_cast<const uint8_t*>(keep.raw_data()),
                        scale, out.raw_data(), x.numel(), stream_of(dev));
  }

  void conv2d(const Tensor& x, const Tensor& w, const Tensor& bias, const Conv2dOptions& o,
              const Tensor& out) override {
    device_of("conv2d", {&x, &w, &bias, &out});
    cudnn_conv2d(x, w, bias, o, allow_tf32_.load(), out);
  }
  void conv2d_backward(const Tensor& x, const Tensor& w, const Tensor& gout, const Conv2dOptions& o,
                       const Tensor& gx, const Tensor& gw, const Tensor& gb) override {
    device_of("conv2d backward", {&x, &w, &gout, &gx, &gw, &gb});
    cudnn_conv2d_backward(x, w, gout, o, allow_tf32_.load(), gx, gw, gb);
  }
  void pool2d(bool max, const Tensor& x, const Pool2dOptions& o, const Tensor& out) override {
    device_of("pool2d", {&x, &out});
    cudnn_pool2d(max, x, o, out);
  }
  void pool2d_backward(bool max, const Tensor& x, const Tensor& out, const Tensor& gout,
                       const Pool2dOptions& o, const Tensor& gx) override {
    device_of("pool2d backward", {&x, &out, &gout, &gx});
    cudnn_pool2d_backward(max, x, out, gout, o, gx);
  }
  void batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias,
                  const Tensor& running_mean, const Tensor& running_var, bool training,
                  double momentum, double eps, const Tensor& y, const Tensor& save_mean,
                  const Tensor& save_invstd) override {
    device_of("batch_norm", {&x, &weight, &bias, &running_mean, &running_var, &y});
    cudnn_batch_norm(x, weight, bias, running_mean, running_var, training, momentum, eps, y,
                     save_mean, save_invstd);
  }
  void batch_norm_backward(const Tensor& x, const Tensor& gy, const Tensor& weight,
                           const Tensor& save_mean, const Tensor& save_invstd, double eps,
                           const Tensor& gx, const Tensor& gw, const Tensor& gb) override {
    device_of("batch_norm backward", {&x, &gy, &weight, &gx, &gw, &gb});
    cudnn_batch_norm_backward(x, gy, weight, save_mean, save_invstd, eps, gx, gw, gb);
  }

  void sgd_update(int device, const std::vector<FusedTensor>& params,
                  const FusedSgdArgs& a) override {
    for (DType dt : {DType::kF32, DType::kF64}) {
      auto chunks = chunk_table(
          params, dt, [](const FusedTensor& p, OptimChunk& c) { c.a = p.step == 1 ? 1.0 : 0.0; });
      if (chunks.empty()) continue;
      Tensor table = upload(chunks, device);
      launch_sgd(dt, static_cast<const OptimChunk*>(table.raw_data()),
                 static_cast<int64_t>(chunks.size()), a.lr, a.momentum, a.dampening, a.weight_decay,
                 a.nesterov, stream_of(device));
    }
  }

  void adam_update(int device, const std::vector<FusedTensor>& params,
                   const FusedAdamArgs& a) override {
    for (DType dt : {DType::kF32, DType::kF64}) {
      auto chunks = chunk_table(params, dt, [&](const FusedTensor& p, OptimChunk& c) {
        const double t = static_cast<double>(p.step);
        c.a = -(a.lr / (1.0 - std::pow(a.beta1, t)));
        c.b = std::sqrt(1.0 - std::pow(a.beta2, t));
      });
      if (chunks.empty()) continue;
      Tensor table = upload(chunks, device);
      launch_adam(dt, static_cast<const OptimChunk*>(table.raw_data()),
                  static_cast<int64_t>(chunks.size()), a.lr, a.beta1, a.beta2, a.eps,
                  a.weight_decay, a.decoupled, stream_of(device));
    }
  }

 private:
  template <typename F>
  static std::vector<OptimChunk> chunk_table(const std::vector<FusedTensor>& params, DType dt,
                                             F scalars) {
    std::vector<OptimChunk> chunks;
    for (const FusedTensor& p : params) {
      if (p.dtype != dt) continue;
      for (int64_t b = 0; b < p.numel; b += kOptimChunkElems) {
        OptimChunk c{p.param,  p.grad, p.state1,
                     p.state2, b,      std::min(p.numel, b + kOptimChunkElems),
                     0.0,      0.0};
        scalars(p, c);
        chunks.push_back(c);
      }
    }
    return chunks;
  }

  // The chunk table in device memory (freed in stream order once the launch is queued).
  Tensor upload(const std::vector<OptimChunk>& chunks, int device) {
    const int64_t bytes = static_cast<int64_t>(chunks.size() * sizeof(OptimChunk));
    Tensor host = empty({bytes}, DType::kU8);
    std::memcpy(host.raw_data(), chunks.data(), static_cast<size_t>(bytes));
    Tensor dev = empty({bytes}, DType::kU8, Device::cuda(device));
    copy(dev, host);
    return dev;
  }

  // One cuBLAS handle per (thread, device): a handle is not safe to share between the replica
  // threads of the mirrored strategy. Created on first use, never destroyed (threads are pooled).
  static cublasHandle_t handle(int device) {
    thread_local std::array<cublasHandle_t, 64> handles{};
    if (handles[device] == nullptr) {
      DeviceGuard guard(device);
      TANDEM_CUBLAS_CHECK(cublasCreate(&handles[device]));
    }
    return handles[device];
  }

  std::atomic<bool> allow_tf32_{false};
};

}  // namespace
}  // namespace cuda

DeviceBackend* cuda_backend_or_null() {
  static cuda::CudaBackend* backend = new cuda::CudaBackend;  // never destroyed (see allocator)
  return backend;
}

}  // namespace tandem
