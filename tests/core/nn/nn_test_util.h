// Helpers shared by the core/nn tests: snapshots and prefixes of named tensors, the text listings
// the reference script returns (one "name dtype [shape]" line per tensor), and a layer-vs-torch
// check.
#pragma once

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "core/autograd/grad_mode.h"
#include "core/nn/module.h"
#include "core/ops/ops.h"
#include "core/random/philox.h"
#include "tests/support/test_support.h"

namespace tandem::nn_test {

// Deep copies (so later in-place updates do not change them).
inline NamedTensors snapshot(const NamedTensors& named, const std::string& prefix = "") {
  NamedTensors out;
  NoGradGuard no_grad;
  for (const auto& [n, t] : named) out.emplace_back(prefix + n, t.detach().clone());
  return out;
}

// The lines of a u8 tensor holding newline-joined UTF-8 text.
inline std::vector<std::string> decode_lines(const Tensor& t) {
  std::string s;
  for (double v : t.to_vector()) s.push_back(static_cast<char>(static_cast<int>(v)));
  std::vector<std::string> lines;
  if (s.empty()) return lines;
  size_t start = 0;
  while (start <= s.size()) {
    size_t end = s.find('\n', start);
    if (end == std::string::npos) end = s.size();
    lines.push_back(s.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

// Lines formatted as the reference script formats them: "name f32 [64, 3, 7, 7]".
inline std::vector<std::string> listing(const NamedTensors& named) {
  std::vector<std::string> lines;
  for (const auto& [n, t] : named)
    lines.push_back(n + " " + dtype_name(t.dtype()) + " " + shape_str(t.shape()));
  return lines;
}

inline Tensor random_input(const Shape& shape, uint64_t seed) {
  Generator gen(seed, 7);
  return randn(shape, gen);
}

// Runs `layer` on x (in x's dtype; the layer must have it too) with backward of sum(y * w) for a
// random w, and torch.nn.<torch_layer> (kwargs_json) on the same inputs with the same parameters
// and buffers; compares the output, the input gradient, every parameter gradient and every buffer
// afterwards.
inline void expect_layer_matches_torch(Module& layer, const Tensor& x_in,
                                       const std::string& torch_layer,
                                       const std::string& kwargs_json, double tol = 1e-5) {
  testing::TensorMap inputs = snapshot(layer.state_dict(), "p.");
  Tensor x = x_in.detach().clone();
  x.set_requires_grad(true);
  Tensor y = layer.forward(x);
  Tensor w = random_input(y.shape(), 99).to(y.dtype());
  sum(mul(y, w)).backward();
  inputs.emplace_back("x", x.detach());
  inputs.emplace_back("w", w);
  std::string args = "{\"layer\": \"" + torch_layer + "\", \"kwargs\": " + kwargs_json +
                     ", \"train\": " + (layer.is_training() ? "true" : "false") + "}";
  auto ref = testing::run_torch("nn_layer", inputs, args);
  testing::expect_close(y, ref.at("y"), tol, torch_layer + " output");
  testing::expect_close(x.grad(), ref.at("grad.x"), tol, torch_layer + " input gradient");
  size_t torch_params = 0;
  for (const auto& [k, t] : ref) torch_params += k.rfind("grad.", 0) == 0 && k != "grad.x";
  EXPECT_EQ(torch_params, layer.named_parameters().size()) << "parameter sets differ";
  for (const auto& [n, p] : layer.named_parameters()) {
    ASSERT_TRUE(ref.count("grad." + n)) << "torch has no parameter " << n;
    testing::expect_close(p.grad(), ref.at("grad." + n), tol, torch_layer + " gradient of " + n);
  }
  for (const auto& [n, b] : layer.named_buffers()) {
    ASSERT_TRUE(ref.count("state." + n)) << "torch has no buffer " << n;
    testing::expect_close(b, ref.at("state." + n), tol, torch_layer + " buffer " + n);
  }
}

}  // namespace tandem::nn_test
