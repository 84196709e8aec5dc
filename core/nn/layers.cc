// The standard layers: argument checks, PyTorch default initialisation, and forward passes that
// call the ops in core/ops/ops.h.
#include "core/nn/layers.h"

#include <cmath>

#include "core/autograd/grad_mode.h"
#include "core/nn/init.h"
#include "core/nn/random_context.h"

namespace tandem {

namespace {

void check_positive(int64_t v, const char* what, const char* layer) {
  TANDEM_CHECK_T(ConfigError, v > 0, layer, ": ", what, " must be positive, got ", v);
}

void check_image_input(const Module& m, const Tensor& x, int64_t channels) {
  bool ok = x.dim() == 4 && (channels <= 0 || x.size(1) == channels);
  TANDEM_CHECK_SHAPE(ok, m.where(), ": expected input [N, ",
                     channels > 0 ? std::to_string(channels) : std::string("C"), ", H, W], got ",
                     shape_str(x.shape()));
}

const char* py_bool(bool b) {
  return b ? "True" : "False";
}

Pool2dOptions pool_options(int64_t kernel, int64_t stride, int64_t padding, const char* layer) {
  check_positive(kernel, "kernel_size", layer);
  TANDEM_CHECK_T(ConfigError, stride >= 0 && padding >= 0 && 2 * padding <= kernel, layer,
                 ": need stride >= 0 and 0 <= padding <= kernel_size / 2, got stride ", stride,
                 ", padding ", padding, ", kernel_size ", kernel);
  Pool2dOptions opt;
  opt.kernel_h = opt.kernel_w = kernel;
  opt.stride_h = opt.stride_w = stride == 0 ? kernel : stride;
  opt.pad_h = opt.pad_w = padding;
  return opt;
}

}  // namespace

// ------------------------------------------------------------------------------------ Linear
Linear::Linear(Generator& gen, int64_t in_features, int64_t out_features, bool bias)
    : in_(in_features), out_(out_features) {
  check_positive(in_features, "in_features", "Linear");
  check_positive(out_features, "out_features", "Linear");
  Tensor w = empty({out_features, in_features});
  kaiming_uniform_(w, std::sqrt(5.0), FanMode::kFanIn, gen);
  weight_ = register_parameter("weight", w);
  if (bias) {
    Tensor b = empty({out_features});
    double bound = 1.0 / std::sqrt(static_cast<double>(in_features));
    uniform_(b, -bound, bound, gen);
    bias_ = register_parameter("bias", b);
  }
}

Tensor Linear::forward(const Tensor& x) {
  TANDEM_CHECK_SHAPE(x.dim() >= 1 && x.size(-1) == in_, where(), ": expected input [..., ", in_,
                     "], got ", shape_str(x.shape()));
  return linear(x, weight_, bias_);
}

std::string Linear::describe() const {
  return str("Linear(in_features=", in_, ", out_features=", out_,
             ", bias=", py_bool(bias_.defined()), ")");
}

// ------------------------------------------------------------------------------------ Conv2d
Conv2d::Conv2d(Generator& gen, int64_t in_channels, int64_t out_channels, int64_t kernel_size,
               int64_t stride, int64_t padding, int64_t dilation, int64_t groups, bool bias)
    : in_(in_channels), out_(out_channels), kernel_(kernel_size) {
  check_positive(in_channels, "in_channels", "Conv2d");
  check_positive(out_channels, "out_channels", "Conv2d");
  check_positive(kernel_size, "kernel_size", "Conv2d");
  check_positive(stride, "stride", "Conv2d");
  check_positive(dilation, "dilation", "Conv2d");
  check_positive(groups, "groups", "Conv2d");
  TANDEM_CHECK_T(ConfigError, padding >= 0, "Conv2d: padding must be >= 0, got ", padding);
  TANDEM_CHECK_T(ConfigError, in_channels % groups == 0 && out_channels % groups == 0,
                 "Conv2d: in_channels (", in_channels, ") and out_channels (", out_channels,
                 ") must be divisible by groups (", groups, ")");
  opt_.stride_h = opt_.stride_w = stride;
  opt_.pad_h = opt_.pad_w = padding;
  opt_.dilation_h = opt_.dilation_w = dilation;
  opt_.groups = groups;
  Tensor w = empty({out_channels, in_channels / groups, kernel_size, kernel_size});
  kaiming_uniform_(w, std::sqrt(5.0), FanMode::kFanIn, gen);
  weight_ = register_parameter("weight", w);
  if (bias) {
    Tensor b = empty({out_channels});
    double bound = 1.0 / std::sqrt(static_cast<double>(fan_in_and_fan_out(w).first));
    uniform_(b, -bound, bound, gen);
    bias_ = register_parameter("bias", b);
  }
}

Tensor Conv2d::forward(const Tensor& x) {
  check_image_input(*this, x, in_);
  int64_t span = opt_.dilation_h * (kernel_ - 1) + 1;
  TANDEM_CHECK_SHAPE(x.size(2) + 2 * opt_.pad_h >= span && x.size(3) + 2 * opt_.pad_w >= span,
                     where(), ": input ", shape_str(x.shape()), " is smaller than the ", span, "x",
                     span, " (dilated) kernel with padding ", opt_.pad_h);
  return conv2d(x, weight_, bias_, opt_);
}

std::string Conv2d::describe() const {
  std::string s = str("Conv2d(", in_, ", ", out_, ", kernel_size=(", kernel_, ", ", kernel_,
                      "), stride=(", opt_.stride_h, ", ", opt_.stride_w, ")");
  if (opt_.pad_h) s += str(", padding=(", opt_.pad_h, ", ", opt_.pad_w, ")");
  if (opt_.dilation_h != 1) s += str(", dilation=(", opt_.dilation_h, ", ", opt_.dilation_w, ")");
  if (opt_.groups != 1) s += str(", groups=", opt_.groups);
  if (!bias_.defined()) s += ", bias=False";
  return s + ")";
}

// ------------------------------------------------------------------------------- BatchNorm2d
BatchNorm2d::BatchNorm2d(int64_t num_features, double eps, double momentum)
    : c_(num_features), eps_(eps), momentum_(momentum) {
  check_positive(num_features, "num_features", "BatchNorm2d");
  TANDEM_CHECK_T(ConfigError, eps > 0 && momentum >= 0 && momentum <= 1,
                 "BatchNorm2d: need eps > 0 and momentum in [0, 1], got eps ", eps, ", momentum ",
                 momentum);
  weight_ = register_parameter("weight", ones({num_features}));
  bias_ = register_parameter("bias", zeros({num_features}));
  running_mean_ = register_buffer("running_mean", zeros({num_features}));
  running_var_ = register_buffer("running_var", ones({num_features}));
  num_batches_tracked_ = register_buffer("num_batches_tracked", zeros({}, DType::kI64));
}

Tensor BatchNorm2d::forward(const Tensor& x) {
  check_image_input(*this, x, c_);
  if (training_) {
    TANDEM_CHECK_SHAPE(x.numel() / c_ > 1, where(),
                       ": expected more than 1 value per channel when training, got input ",
                       shape_str(x.shape()));
    NoGradGuard no_grad;
    if (num_batches_tracked_.is_cuda()) {
      num_batches_tracked_.copy_(add(num_batches_tracked_, 1.0));  // stays on the device
    } else {
      num_batches_tracked_.data<int64_t>()[0] += 1;
    }
  }
  return batch_norm(x, running_mean_, running_var_, weight_, bias_, training_, momentum_, eps_);
}

std::string BatchNorm2d::describe() const {
  return str("BatchNorm2d(", c_, ", eps=", eps_, ", momentum=", momentum_,
             ", affine=True, track_running_stats=True)");
}

// ----------------------------------------------------------------------------------- pooling
MaxPool2d::MaxPool2d(int64_t kernel_size, int64_t stride, int64_t padding)
    : opt_(pool_options(kernel_size, stride, padding, "MaxPool2d")) {}

Tensor MaxPool2d::forward(const Tensor& x) {
  check_image_input(*this, x, 0);
  TANDEM_CHECK_SHAPE(
      x.size(2) + 2 * opt_.pad_h >= opt_.kernel_h && x.size(3) + 2 * opt_.pad_w >= opt_.kernel_w,
      where(), ": input ", shape_str(x.shape()), " is smaller than the kernel");
  return max_pool2d(x, opt_);
}

std::string MaxPool2d::describe() const {
  return str("MaxPool2d(kernel_size=", opt_.kernel_h, ", stride=", opt_.stride_h,
             ", padding=", opt_.pad_h, ", dilation=1, ceil_mode=False)");
}

AvgPool2d::AvgPool2d(int64_t kernel_size, int64_t stride, int64_t padding, bool count_include_pad)
    : opt_(pool_options(kernel_size, stride, padding, "AvgPool2d")) {
  opt_.count_include_pad = count_include_pad;
}

Tensor AvgPool2d::forward(const Tensor& x) {
  check_image_input(*this, x, 0);
  TANDEM_CHECK_SHAPE(
      x.size(2) + 2 * opt_.pad_h >= opt_.kernel_h && x.size(3) + 2 * opt_.pad_w >= opt_.kernel_w,
      where(), ": input ", shape_str(x.shape()), " is smaller than the kernel");
  return avg_pool2d(x, opt_);
}

std::string AvgPool2d::describe() const {
  return str("AvgPool2d(kernel_size=", opt_.kernel_h, ", stride=", opt_.stride_h,
             ", padding=", opt_.pad_h, ")");
}

AdaptiveAvgPool2d::AdaptiveAvgPool2d(int64_t out_h, int64_t out_w) : out_h_(out_h), out_w_(out_w) {
  check_positive(out_h, "output height", "AdaptiveAvgPool2d");
  check_positive(out_w, "output width", "AdaptiveAvgPool2d");
}

Tensor AdaptiveAvgPool2d::forward(const Tensor& x) {
  check_image_input(*this, x, 0);
  return adaptive_avg_pool2d(x, out_h_, out_w_);
}

std::string AdaptiveAvgPool2d::describe() const {
  return str("AdaptiveAvgPool2d(output_size=(", out_h_, ", ", out_w_, "))");
}

// ----------------------------------------------------------------------------------- Dropout
Dropout::Dropout(double p) : p_(p) {
  TANDEM_CHECK_T(ConfigError, p >= 0 && p < 1, "Dropout: p must be in [0, 1), got ", p);
}

Tensor Dropout::forward(const Tensor& x) {
  if (!training_) return x;
  std::optional<DropoutKey> key = next_dropout_key();
  if (!key) key = DropoutKey{0, kUnscopedDropoutStream + unscoped_calls_++, 0};
  if (p_ == 0) return x;
  return dropout(x, p_, true, *key);
}

std::string Dropout::describe() const {
  return str("Dropout(p=", p_, ", inplace=False)");
}

// ----------------------------------------------------------------------------------- Flatten
Tensor Flatten::forward(const Tensor& x) {
  TANDEM_CHECK_SHAPE(x.dim() > 0, where(), ": expected an input with dimensions, got a scalar");
  return x.flatten(start_, end_);
}

std::string Flatten::describe() const {
  return str("Flatten(start_dim=", start_, ", end_dim=", end_, ")");
}

}  // namespace tandem
