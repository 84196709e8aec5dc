// The standard layers, with PyTorch's parameter names, shapes and default initialisation
// (torch.nn.Linear, Conv2d, BatchNorm2d, ReLU, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, Dropout,
// Flatten). Layers with random parameters take the Generator as their first constructor argument
// and draw weight then bias from it (see module.h); the rest follow PyTorch's argument order.
// Square kernels, strides and paddings only (every model here uses them).
//
// Each layer checks its input and throws ShapeError naming itself (its dotted path in the model
// and its description) and the shape it expected.
#pragma once

#include <cstdint>
#include <string>

#include "core/nn/module.h"
#include "core/ops/ops.h"
#include "core/random/philox.h"

namespace tandem {

// y = x W^T + b. weight (out, in) ~ U(-1/sqrt(in), 1/sqrt(in)) (kaiming_uniform, a = sqrt(5)),
// bias (out) ~ U(-1/sqrt(in), 1/sqrt(in)).
class Linear : public Module {
 public:
  Linear(Generator& gen, int64_t in_features, int64_t out_features, bool bias = true);
  Tensor forward(const Tensor& x) override;
  std::string describe() const override;
  const Tensor& weight() const { return weight_; }
  const Tensor& bias() const { return bias_; }  // undefined without bias
  int64_t in_features() const { return in_; }
  int64_t out_features() const { return out_; }

 private:
  int64_t in_, out_;
  Tensor weight_, bias_;
};

// weight (out, in / groups, k, k) and bias (out) ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with
// fan_in = in / groups * k * k.
class Conv2d : public Module {
 public:
  Conv2d(Generator& gen, int64_t in_channels, int64_t out_channels, int64_t kernel_size,
         int64_t stride = 1, int64_t padding = 0, int64_t dilation = 1, int64_t groups = 1,
         bool bias = true);
  Tensor forward(const Tensor& x) override;
  std::string describe() const override;
  const Tensor& weight() const { return weight_; }
  const Tensor& bias() const { return bias_; }  // undefined without bias
  int64_t in_channels() const { return in_; }
  int64_t out_channels() const { return out_; }

 private:
  int64_t in_, out_, kernel_;
  Conv2dOptions opt_;
  Tensor weight_, bias_;
};

// weight 1, bias 0, running_mean 0, running_var 1, num_batches_tracked 0 (an i64 scalar, as in
// PyTorch). Training normalises with batch statistics, updates the running ones with `momentum`
// and counts the batch; eval uses the running statistics.
class BatchNorm2d : public Module {
 public:
  explicit BatchNorm2d(int64_t num_features, double eps = 1e-5, double momentum = 0.1);
  Tensor forward(const Tensor& x) override;
  std::string describe() const override;
  const Tensor& weight() const { return weight_; }
  const Tensor& bias() const { return bias_; }
  const Tensor& running_mean() const { return running_mean_; }
  const Tensor& running_var() const { return running_var_; }
  const Tensor& num_batches_tracked() const { return num_batches_tracked_; }

 private:
  int64_t c_;
  double eps_, momentum_;
  Tensor weight_, bias_, running_mean_, running_var_, num_batches_tracked_;
};

class ReLU : public Module {
 public:
  Tensor forward(const Tensor& x) override { return relu(x); }
  std::string describe() const override { return "ReLU()"; }
};

// stride 0 means "the kernel size" (PyTorch's stride=None).
class MaxPool2d : public Module {
 public:
  explicit MaxPool2d(int64_t kernel_size, int64_t stride = 0, int64_t padding = 0);
  Tensor forward(const Tensor& x) override;
  std::string describe() const override;

 private:
  Pool2dOptions opt_;
};

class AvgPool2d : public Module {
 public:
  explicit AvgPool2d(int64_t kernel_size, int64_t stride = 0, int64_t padding = 0,
                     bool count_include_pad = true);
  Tensor forward(const Tensor& x) override;
  std::string describe() const override;

 private:
  Pool2dOptions opt_;
};

class AdaptiveAvgPool2d : public Module {
 public:
  AdaptiveAvgPool2d(int64_t out_h, int64_t out_w);
  Tensor forward(const Tensor& x) override;
  std::string describe() const override;

 private:
  int64_t out_h_, out_w_;
};

// Zeroes elements with probability p and scales the rest by 1 / (1 - p) in training; identity in
// eval. Masks come from the current DropoutScope (random_context.h); every training-mode call
// takes one call index of the scope, even with p = 0, so indices do not depend on p.
class Dropout : public Module {
 public:
  explicit Dropout(double p = 0.5);
  Tensor forward(const Tensor& x) override;
  std::string describe() const override;
  double p() const { return p_; }

 private:
  double p_;
  uint64_t unscoped_calls_ = 0;
};

class Flatten : public Module {
 public:
  explicit Flatten(int64_t start_dim = 1, int64_t end_dim = -1)
      : start_(start_dim), end_(end_dim) {}
  Tensor forward(const Tensor& x) override;
  std::string describe() const override;

 private:
  int64_t start_, end_;
};

}  // namespace tandem
