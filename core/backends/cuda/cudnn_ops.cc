#include "core/backends/cuda/cudnn_ops.h"

#include <cudnn.h>

#include <array>
#include <map>
#include <mutex>
#include <tuple>

#include "core/backends/cuda/cuda_check.h"
#include "core/backends/cuda/cuda_context.h"

#define TANDEM_CUDNN_CHECK(call)                                                          \
  do {                                                                                    \
    cudnnStatus_t tandem_st_ = (call);                                                    \
    if (tandem_st_ != CUDNN_STATUS_SUCCESS)                                               \
      throw ::tandem::Error(::tandem::str(__FILE__, ":", __LINE__, ": ", #call,           \
                                          " failed: ", cudnnGetErrorString(tandem_st_))); \
  } while (0)

namespace tandem::cuda {
namespace {

// One handle per (thread, device), as for cuBLAS: handles are not shared between threads.
cudnnHandle_t handle(int device) {
  thread_local std::array<cudnnHandle_t, 64> handles{};  // never destroyed (pooled threads)
  cudaStream_t s = compute_stream(device);
  if (handles[device] == nullptr) TANDEM_CUDNN_CHECK(cudnnCreate(&handles[device]));
  TANDEM_CUDNN_CHECK(cudnnSetStream(handles[device], s));
  return handles[device];
}

cudnnDataType_t data_type(DType dt, const char* op) {
  switch (dt) {
    case DType::kF32:
      return CUDNN_DATA_FLOAT;
    case DType::kF64:
      return CUDNN_DATA_DOUBLE;
    case DType::kF16:
      return CUDNN_DATA_HALF;
    case DType::kBF16:
      return CUDNN_DATA_BFLOAT16;
    default:
      throw TypeError(str(op, " on cuda needs a floating dtype, got ", dtype_name(dt)));
  }
}

// Scaling factors are double for double data and float otherwise (cuDNN's rule).
struct Scalars {
  float f0 = 0.f, f1 = 1.f;
  double d0 = 0.0, d1 = 1.0;
  bool dbl;
  explicit Scalars(DType dt) : dbl(dt == DType::kF64) {}
  const void* zero() const { return dbl ? static_cast<const void*>(&d0) : &f0; }
  const void* one() const { return dbl ? static_cast<const void*>(&d1) : &f1; }
};

struct TensorDesc {
  cudnnTensorDescriptor_t d = nullptr;
  TensorDesc(DType dt, int64_t n, int64_t c, int64_t h, int64_t w, const char* op) {
    TANDEM_CUDNN_CHECK(cudnnCreateTensorDescriptor(&d));
    TANDEM_CUDNN_CHECK(cudnnSetTensor4dDescriptor(d, CUDNN_TENSOR_NCHW, data_type(dt, op),
                                                  static_cast<int>(n), static_cast<int>(c),
                                                  static_cast<int>(h), static_cast<int>(w)));
  }
  ~TensorDesc() { cudnnDestroyTensorDescriptor(d); }
  TensorDesc(const TensorDesc&) = delete;
  TensorDesc& operator=(const TensorDesc&) = delete;
};

// (N, C, H, W) of a 4-D tensor, or of a 3-D (C, H, W) one as N = 1.
std::array<int64_t, 4> nchw(const Tensor& t) {
  if (t.dim() == 3) return {1, t.size(0), t.size(1), t.size(2)};
  return {t.size(0), t.size(1), t.size(2), t.size(3)};
}

struct FilterDesc {
  cudnnFilterDescriptor_t d = nullptr;
  explicit FilterDesc(const Tensor& w) {
    TANDEM_CUDNN_CHECK(cudnnCreateFilterDescriptor(&d));
    TANDEM_CUDNN_CHECK(cudnnSetFilter4dDescriptor(
        d, data_type(w.dtype(), "conv2d"), CUDNN_TENSOR_NCHW, static_cast<int>(w.size(0)),
        static_cast<int>(w.size(1)), static_cast<int>(w.size(2)), static_cast<int>(w.size(3))));
  }
  ~FilterDesc() { cudnnDestroyFilterDescriptor(d); }
  FilterDesc(const FilterDesc&) = delete;
  FilterDesc& operator=(const FilterDesc&) = delete;
};

cudnnMathType_t requested_math(DType dt, bool allow_tf32) {
  if (dt == DType::kF16 || dt == DType::kBF16) return CUDNN_TENSOR_OP_MATH;
  if (dt == DType::kF32 && allow_tf32) return CUDNN_DEFAULT_MATH;  // TF32 permitted
  return CUDNN_FMA_MATH;                                           // exact f32/f64 arithmetic
}

struct ConvDesc {
  cudnnConvolutionDescriptor_t d = nullptr;
  ConvDesc(const Conv2dOptions& o, DType dt, cudnnMathType_t math) {
    TANDEM_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&d));
    const cudnnDataType_t compute = dt == DType::kF64 ? CUDNN_DATA_DOUBLE : CUDNN_DATA_FLOAT;
    TANDEM_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(
        d, static_cast<int>(o.pad_h), static_cast<int>(o.pad_w), static_cast<int>(o.stride_h),
        static_cast<int>(o.stride_w), static_cast<int>(o.dilation_h),
        static_cast<int>(o.dilation_w), CUDNN_CROSS_CORRELATION, compute));
    TANDEM_CUDNN_CHECK(cudnnSetConvolutionGroupCount(d, static_cast<int>(o.groups)));
    TANDEM_CUDNN_CHECK(cudnnSetConvolutionMathType(d, math));
  }
  ~ConvDesc() { cudnnDestroyConvolutionDescriptor(d); }
  ConvDesc(const ConvDesc&) = delete;
  ConvDesc& operator=(const ConvDesc&) = delete;
};

// One convolution problem: input and weight shapes, options, dtype, math mode, device.
using ConvKey = std::tuple<std::array<int64_t, 4>, std::array<int64_t, 4>, std::array<int64_t, 7>,
                           int, int, int>;

ConvKey conv_key(const Tensor& x, const Tensor& w, const Conv2dOptions& o, cudnnMathType_t math) {
  return {nchw(x),
          nchw(w),
          {o.stride_h, o.stride_w, o.pad_h, o.pad_w, o.dilation_h, o.dilation_w, o.groups},
          static_cast<int>(x.dtype()),
          static_cast<int>(math),
          x.device().index};
}

struct Choice {
  int algo = -1;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
  size_t workspace = 0;
};

// The algorithm caches (guarded by their mutex): filled once per problem by cudnnFind*.
struct Caches {
  std::mutex mu;
  std::map<ConvKey, Choice> fwd, bwd_data, bwd_filter;
};
Caches& caches() {
  static auto* c = new Caches;
  return *c;
}

template <typename Perf>
Choice first_working(const Perf* perf, int count, const char* what) {
  for (int i = 0; i < count; ++i)
    if (perf[i].status == CUDNN_STATUS_SUCCESS)
      return Choice{static_cast<int>(perf[i].algo), perf[i].mathType, perf[i].memory};
  throw Error(str("cuDNN has no working ", what, " algorithm for this convolution"));
}

template <typename Find>
Choice cached(std::map<ConvKey, Choice>& cache, const ConvKey& key, Find find) {
  {
    std::lock_guard<std::mutex> lock(caches().mu);
    auto it = cache.find(key);
    if (it != cache.end()) return it->second;
  }
  Choice c = find();  // benchmarks the candidates on the device (first step of each shape only)
  std::lock_guard<std::mutex> lock(caches().mu);
  cache.emplace(key, c);
  return c;
}

Tensor workspace(size_t bytes, Device device) {
  return empty({static_cast<int64_t>(bytes > 0 ? bytes : 1)}, DType::kU8, device);
}

}  // namespace

void cudnn_conv2d(const Tensor& x, const Tensor& w, const Tensor& bias, const Conv2dOptions& o,
                  bool allow_tf32, const Tensor& out) {
  const int dev = x.device().index;
  cudnnHandle_t h = handle(dev);
  const cudnnMathType_t math = requested_math(x.dtype(), allow_tf32);
  const auto xs = nchw(x), ys = nchw(out);
  TensorDesc xd(x.dtype(), xs[0], xs[1], xs[2], xs[3], "conv2d");
  TensorDesc yd(out.dtype(), ys[0], ys[1], ys[2], ys[3], "conv2d");
  FilterDesc wd(w);
  ConvDesc cd(o, x.dtype(), math);
  Choice c = cached(caches().fwd, conv_key(x, w, o, math), [&] {
    std::array<cudnnConvolutionFwdAlgoPerf_t, CUDNN_CONVOLUTION_FWD_ALGO_COUNT> perf{};
    int n = 0;
    TANDEM_CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithm(
        h, xd.d, wd.d, cd.d, yd.d, static_cast<int>(perf.size()), &n, perf.data()));
    return first_working(perf.data(), n, "forward");
  });
  TANDEM_CUDNN_CHECK(cudnnSetConvolutionMathType(cd.d, c.math));
  Tensor ws = workspace(c.workspace, x.device());
  Scalars s(x.dtype());
  TANDEM_CUDNN_CHECK(cudnnConvolutionForward(h, s.one(), xd.d, x.raw_data(), wd.d, w.raw_data(),
                                             cd.d, static_cast<cudnnConvolutionFwdAlgo_t>(c.algo),
                                             ws.raw_data(), c.workspace, s.zero(), yd.d,
                                             out.raw_data()));
  if (bias.defined()) {
    TensorDesc bd(bias.dtype(), 1, bias.numel(), 1, 1, "conv2d");
    TANDEM_CUDNN_CHECK(
        cudnnAddTensor(h, s.one(), bd.d, bias.raw_data(), s.one(), yd.d, out.raw_data()));
  }
}

void cudnn_conv2d_backward(const Tensor& x, const Tensor& w, const Tensor& gout,
                           const Conv2dOptions& o, bool allow_tf32, const Tensor& gx,
                           const Tensor& gw, const Tensor& gb) {
  const int dev = x.device().index;
  cudnnHandle_t h = handle(dev);
  const cudnnMathType_t math = requested_math(x.dtype(), allow_tf32);
  const auto xs = nchw(x), ys = nchw(gout);
  TensorDesc xd(x.dtype(), xs[0], xs[1], xs[2], xs[3], "conv2d backward");
  TensorDesc yd(gout.dtype(), ys[0], ys[1], ys[2], ys[3], "conv2d backward");
  FilterDesc wd(w);
  Scalars s(x.dtype());
  const ConvKey key = conv_key(x, w, o, math);
  if (gx.defined()) {
    ConvDesc cd(o, x.dtype(), math);
    Choice c = cached(caches().bwd_data, key, [&] {
      std::array<cudnnConvolutionBwdDataAlgoPerf_t, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT> perf{};
      int n = 0;
      TANDEM_CUDNN_CHECK(cudnnFindConvolutionBackwardDataAlgorithm(
          h, wd.d, yd.d, cd.d, xd.d, static_cast<int>(perf.size()), &n, perf.data()));
      return first_working(perf.data(), n, "backward-data");
    });
    TANDEM_CUDNN_CHECK(cudnnSetConvolutionMathType(cd.d, c.math));
    Tensor ws = workspace(c.workspace, x.device());
    TANDEM_CUDNN_CHECK(
        cudnnConvolutionBackwardData(h, s.one(), wd.d, w.raw_data(), yd.d, gout.raw_data(), cd.d,
                                     static_cast<cudnnConvolutionBwdDataAlgo_t>(c.algo),
                                     ws.raw_data(), c.workspace, s.zero(), xd.d, gx.raw_data()));
  }
  if (gw.defined()) {
    ConvDesc cd(o, x.dtype(), math);
    FilterDesc gwd(gw);
    Choice c = cached(caches().bwd_filter, key, [&] {
      std::array<cudnnConvolutionBwdFilterAlgoPerf_t, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT>
          perf{};
      int n = 0;
      TANDEM_CUDNN_CHECK(cudnnFindConvolutionBackwardFilterAlgorithm(
          h, xd.d, yd.d, cd.d, gwd.d, static_cast<int>(perf.size()), &n, perf.data()));
      return first_working(perf.data(), n, "backward-filter");
    });
    TANDEM_CUDNN_CHECK(cudnnSetConvolutionMathType(cd.d, c.math));
    Tensor ws = workspace(c.workspace, x.device());
    TANDEM_CUDNN_CHECK(
        cudnnConvolutionBackwardFilter(h, s.one(), xd.d, x.raw_data(), yd.d, gout.raw_data(), cd.d,
                                       static_cast<cudnnConvolutionBwdFilterAlgo_t>(c.algo),
                                       ws.raw_data(), c.workspace, s.zero(), gwd.d, gw.raw_data()));
  }
  if (gb.defined()) {
    TensorDesc bd(gb.dtype(), 1, gb.numel(), 1, 1, "conv2d backward");
    TANDEM_CUDNN_CHECK(cudnnConvolutionBackwardBias(h, s.one(), yd.d, gout.raw_data(), s.zero(),
                                                    bd.d, gb.raw_data()));
  }
}

namespace {

struct PoolDesc {
  cudnnPoolingDescriptor_t d = nullptr;
  PoolDesc(bool max, const Pool2dOptions& o) {
    TANDEM_CUDNN_CHECK(cudnnCreatePoolingDescriptor(&d));
    const cudnnPoolingMode_t mode = max ? CUDNN_POOLING_MAX_DETERMINISTIC
                                    : o.count_include_pad
                                        ? CUDNN_POOLING_AVERAGE_COUNT_INCLUDE_PADDING
                                        : CUDNN_POOLING_AVERAGE_COUNT_EXCLUDE_PADDING;
    TANDEM_CUDNN_CHECK(cudnnSetPooling2dDescriptor(
        d, mode, CUDNN_PROPAGATE_NAN, static_cast<int>(o.kernel_h), static_cast<int>(o.kernel_w),
        static_cast<int>(o.pad_h), static_cast<int>(o.pad_w), static_cast<int>(o.stride_h),
        static_cast<int>(o.stride_w)));
  }
  ~PoolDesc() { cudnnDestroyPoolingDescriptor(d); }
  PoolDesc(const PoolDesc&) = delete;
  PoolDesc& operator=(const PoolDesc&) = delete;
};

}  // namespace

void cudnn_pool2d(bool max, const Tensor& x, const Pool2dOptions& o, const Tensor& out) {
  cudnnHandle_t h = handle(x.device().index);
  const auto xs = nchw(x), ys = nchw(out);
  TensorDesc xd(x.dtype(), xs[0], xs[1], xs[2], xs[3], "pool2d");
  TensorDesc yd(out.dtype(), ys[0], ys[1], ys[2], ys[3], "pool2d");
  PoolDesc pd(max, o);
  Scalars s(x.dtype());
  TANDEM_CUDNN_CHECK(
      cudnnPoolingForward(h, pd.d, s.one(), xd.d, x.raw_data(), s.zero(), yd.d, out.raw_data()));
}

void cudnn_pool2d_backward(bool max, const Tensor& x, const Tensor& out, const Tensor& gout,
                           const Pool2dOptions& o, const Tensor& gx) {
  cudnnHandle_t h = handle(x.device().index);
  const auto xs = nchw(x), ys = nchw(out);
  TensorDesc xd(x.dtype(), xs[0], xs[1], xs[2], xs[3], "pool2d backward");
  TensorDesc yd(out.dtype(), ys[0], ys[1], ys[2], ys[3], "pool2d backward");
  PoolDesc pd(max, o);
  Scalars s(x.dtype());
  TANDEM_CUDNN_CHECK(cudnnPoolingBackward(h, pd.d, s.one(), yd.d, out.raw_data(), yd.d,
                                          gout.raw_data(), xd.d, x.raw_data(), s.zero(), xd.d,
                                          gx.raw_data()));
}

namespace {

// (N, C, ...) as cuDNN's spatial batch norm sees it: (N, C, prod(rest), 1).
std::array<int64_t, 4> bn_dims(const Tensor& x) {
  int64_t rest = 1;
  for (int64_t i = 2; i < x.dim(); ++i) rest *= x.size(i);
  return {x.size(0), x.size(1), rest, 1};
}

void check_bn_eps(double eps) {
  TANDEM_CHECK(eps >= CUDNN_BN_MIN_EPSILON, "batch_norm on cuda: eps ", eps,
               " is below cuDNN's minimum ", CUDNN_BN_MIN_EPSILON);
}

}  // namespace

void cudnn_batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias,
                      const Tensor& running_mean, const Tensor& running_var, bool training,
                      double momentum, double eps, const Tensor& y, const Tensor& save_mean,
                      const Tensor& save_invstd) {
  check_bn_eps(eps);
  cudnnHandle_t h = handle(x.device().index);
  const auto d = bn_dims(x);
  TensorDesc xd(x.dtype(), d[0], d[1], d[2], d[3], "batch_norm");
  TensorDesc pd(weight.dtype(), 1, d[1], 1, 1, "batch_norm");
  Scalars s(x.dtype());
  if (training) {
    TANDEM_CUDNN_CHECK(cudnnBatchNormalizationForwardTraining(
        h, CUDNN_BATCHNORM_SPATIAL, s.one(), s.zero(), xd.d, x.raw_data(), xd.d, y.raw_data(), pd.d,
        weight.raw_data(), bias.raw_data(), momentum,
        running_mean.defined() ? running_mean.raw_data() : nullptr,
        running_var.defined() ? running_var.raw_data() : nullptr, eps, save_mean.raw_data(),
        save_invstd.raw_data()));
    return;
  }
  TANDEM_CUDNN_CHECK(cudnnBatchNormalizationForwardInference(
      h, CUDNN_BATCHNORM_SPATIAL, s.one(), s.zero(), xd.d, x.raw_data(), xd.d, y.raw_data(), pd.d,
      weight.raw_data(), bias.raw_data(), running_mean.raw_data(), running_var.raw_data(), eps));
}

void cudnn_batch_norm_backward(const Tensor& x, const Tensor& gy, const Tensor& weight,
                               const Tensor& save_mean, const Tensor& save_invstd, double eps,
                               const Tensor& gx, const Tensor& gw, const Tensor& gb) {
  cudnnHandle_t h = handle(x.device().index);
  const auto d = bn_dims(x);
  TensorDesc xd(x.dtype(), d[0], d[1], d[2], d[3], "batch_norm backward");
  TensorDesc pd(weight.dtype(), 1, d[1], 1, 1, "batch_norm backward");
  Scalars s(x.dtype());
  TANDEM_CUDNN_CHECK(cudnnBatchNormalizationBackward(
      h, CUDNN_BATCHNORM_SPATIAL, s.one(), s.zero(), s.one(), s.zero(), xd.d, x.raw_data(), xd.d,
      gy.raw_data(), xd.d, gx.raw_data(), pd.d, weight.raw_data(), gw.raw_data(), gb.raw_data(),
      eps, save_mean.raw_data(), save_invstd.raw_data()));
}

}  // namespace tandem::cuda
