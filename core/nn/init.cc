// torch.nn.init's kaiming initialisers and fan computation.
#include "core/nn/init.h"

#include <cmath>
#include <string>

namespace tandem {

std::pair<int64_t, int64_t> fan_in_and_fan_out(const Tensor& w) {
  TANDEM_CHECK_SHAPE(w.dim() >= 2,
                     "fan in and fan out need a tensor with 2 or more dimensions, got ",
                     shape_str(w.shape()));
  int64_t receptive = 1;
  for (int64_t d = 2; d < w.dim(); ++d) receptive *= w.size(d);
  return {w.size(1) * receptive, w.size(0) * receptive};
}

double calculate_gain(const std::string& nonlinearity, double a) {
  if (nonlinearity == "linear" || nonlinearity == "sigmoid" || nonlinearity == "conv2d") return 1.0;
  if (nonlinearity == "tanh") return 5.0 / 3.0;
  if (nonlinearity == "relu") return std::sqrt(2.0);
  if (nonlinearity == "leaky_relu") return std::sqrt(2.0 / (1.0 + a * a));
  throw ConfigError("calculate_gain: unsupported nonlinearity '" + nonlinearity +
                    "' (valid: linear, sigmoid, conv2d, tanh, relu, leaky_relu)");
}

namespace {
int64_t pick_fan(const Tensor& w, FanMode mode) {
  auto [fan_in, fan_out] = fan_in_and_fan_out(w);
  int64_t fan = mode == FanMode::kFanIn ? fan_in : fan_out;
  TANDEM_CHECK(fan > 0, "kaiming init of a tensor with zero elements ", shape_str(w.shape()));
  return fan;
}
}  // namespace

void kaiming_uniform_(Tensor& w, double a, FanMode mode, Generator& gen) {
  double gain = calculate_gain("leaky_relu", a);
  double bound = gain * std::sqrt(3.0 / static_cast<double>(pick_fan(w, mode)));
  uniform_(w, -bound, bound, gen);
}

void kaiming_normal_(Tensor& w, double a, FanMode mode, const std::string& nonlinearity,
                     Generator& gen) {
  double std = calculate_gain(nonlinearity, a) / std::sqrt(static_cast<double>(pick_fan(w, mode)));
  normal_(w, 0.0, std, gen);
}

}  // namespace tandem
