// Convolution, pooling and batch norm through cuDNN (legacy API, cuDNN 9). Key decision: the
// convolution algorithms are chosen once per problem (shape, dtype, math mode) by
// cudnnFind*Algorithm -- PyTorch's cudnn.benchmark -- and cached for the process; their
// workspaces come from the caching allocator, so the steady state calls no cudaMalloc.
#pragma once

#include "core/backends/device_backend.h"

namespace tandem::cuda {

void cudnn_conv2d(const Tensor& x, const Tensor& w, const Tensor& bias, const Conv2dOptions& o,
                  bool allow_tf32, const Tensor& out);
void cudnn_conv2d_backward(const Tensor& x, const Tensor& w, const Tensor& gout,
                           const Conv2dOptions& o, bool allow_tf32, const Tensor& gx,
                           const Tensor& gw, const Tensor& gb);
void cudnn_pool2d(bool max, const Tensor& x, const Pool2dOptions& o, const Tensor& out);
void cudnn_pool2d_backward(bool max, const Tensor& x, const Tensor& out, const Tensor& gout,
                           const Pool2dOptions& o, const Tensor& gx);
void cudnn_batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias,
                      const Tensor& running_mean, const Tensor& running_var, bool training,
                      double momentum, double eps, const Tensor& y, const Tensor& save_mean,
                      const Tensor& save_invstd);
void cudnn_batch_norm_backward(const Tensor& x, const Tensor& gy, const Tensor& weight,
                               const Tensor& save_mean, const Tensor& save_invstd, double eps,
                               const Tensor& gx, const Tensor& gw, const Tensor& gb);

}  // namespace tandem::cuda
