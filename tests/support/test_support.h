// Oracles for tests: central finite differences in f64, and PyTorch (torch 1.13 from Debian's
// python3-torch) run on the same inputs through tests/reference/torch_reference.py.
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/tensor/tensor.h"

namespace tandem::testing {

// Checks the analytic gradient of fn at `inputs` (f64 leaves; requires_grad is set here) against
// central differences of the scalar sum(fn(inputs) * w) for a fixed random w. Every input that
// requires grad is checked, element by element.
void expect_gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& fn,
                      std::vector<Tensor> inputs, double eps = 1e-6, double atol = 1e-6,
                      double rtol = 1e-5);

// Max |a - b| / max(|b|, 1): relative error with an absolute floor at magnitude 1.
double max_rel_error(const Tensor& a, const Tensor& b);
// Fails with the worst element named unless max_rel_error(actual, expected) <= tol.
void expect_close(const Tensor& actual, const Tensor& expected, double tol,
                  const std::string& what);

// True when /usr/bin/python3 can import torch (cached).
bool torch_available();
#define TANDEM_SKIP_WITHOUT_TORCH()                                                       \
  do {                                                                                    \
    if (!::tandem::testing::torch_available())                                            \
      GTEST_SKIP() << "PyTorch (python3-torch) is not installed: reference test skipped"; \
  } while (0)

using TensorMap = std::vector<std::pair<std::string, Tensor>>;
// Writes `inputs` to a safetensors file, runs tests/reference/torch_reference.py CASE with it and
// returns the tensors the script wrote. `args` is a JSON object string passed to the case.
std::map<std::string, Tensor> run_torch(const std::string& case_name, const TensorMap& inputs,
                                        const std::string& args_json = "{}");

// Runs fn(i) on one thread per i in [0, n) (ranks as threads); joins all, then rethrows the first
// exception any of them threw.
void run_threads(int n, const std::function<void(int)>& fn);

// A fresh temporary directory, removed at process exit.
std::string temp_dir();

}  // namespace tandem::testing
