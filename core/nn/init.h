// Parameter initialisers with PyTorch's formulas (torch.nn.init), drawing from a tandem Generator.
// Distributions match PyTorch's; the numbers do not (different generator), which is why tests
// that compare with PyTorch copy tandem's weights into torch rather than seeding torch.
#pragma once

#include <cstdint>
#include <string>
#include <utility>

#include "core/random/philox.h"
#include "core/tensor/tensor.h"

namespace tandem {

// (fan_in, fan_out) of a weight (out, in, k...) as torch.nn.init._calculate_fan_in_and_fan_out:
// fan_in = in * prod(k), fan_out = out * prod(k). Needs at least 2 dims.
std::pair<int64_t, int64_t> fan_in_and_fan_out(const Tensor& weight);

// Gain for a nonlinearity ("linear", "relu", "leaky_relu" with slope a),
// torch.nn.init.calculate_gain.
double calculate_gain(const std::string& nonlinearity, double a = 0.0);

enum class FanMode { kFanIn, kFanOut };

// U(-b, b) with b = gain * sqrt(3 / fan), gain = calculate_gain("leaky_relu", a).
// With a = sqrt(5) and fan_in (Linear/Conv2d defaults) b = 1 / sqrt(fan_in).
void kaiming_uniform_(Tensor& w, double a, FanMode mode, Generator& gen);
// N(0, std^2) with std = gain / sqrt(fan), gain = calculate_gain(nonlinearity, a).
void kaiming_normal_(Tensor& w, double a, FanMode mode, const std::string& nonlinearity,
                     Generator& gen);

}  // namespace tandem
