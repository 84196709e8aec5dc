#include "tests/support/test_support.h"

#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "core/autograd/grad_mode.h"
#include "core/io/safetensors.h"
#include "core/ops/ops.h"
#include "core/random/philox.h"

namespace tandem::testing {

void expect_gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& fn,
                      std::vector<Tensor> inputs, double eps, double atol, double rtol) {
  for (auto& t : inputs) {
    ASSERT_EQ(t.dtype(), DType::kF64) << "gradcheck needs f64 inputs";
    if (t.is_leaf() && !t.requires_grad() && is_floating(t.dtype())) t.set_requires_grad(true);
  }
  Tensor out = fn(inputs);
  Generator gen(1234, 99);
  Tensor w = randn(out.shape(), gen, DType::kF64);
  Tensor loss = sum(mul(out, w));
  loss.backward();
  for (size_t k = 0; k < inputs.size(); ++k) {
    Tensor x = inputs[k];
    if (!x.requires_grad()) continue;
    ASSERT_TRUE(x.grad().defined()) << "input " << k << " got no gradient";
    std::vector<double> analytic = x.grad().to_vector();
    double* p = x.data<double>();
    ASSERT_TRUE(x.is_contiguous());
    for (int64_t i = 0; i < x.numel(); ++i) {
      double orig = p[i];
      double plus, minus;
      {
        NoGradGuard ng;
        p[i] = orig + eps;
        plus = sum(mul(fn(inputs), w)).item();
        p[i] = orig - eps;
        minus = sum(mul(fn(inputs), w)).item();
        p[i] = orig;
      }
      double numeric = (plus - minus) / (2 * eps);
      EXPECT_NEAR(analytic[i], numeric, atol + rtol * std::abs(numeric))
          << "input " << k << " element " << i;
      if (std::abs(analytic[i] - numeric) > atol + rtol * std::abs(numeric)) return;
    }
  }
}

double max_rel_error(const Tensor& a, const Tensor& b) {
  std::vector<double> va = a.to_vector(), vb = b.to_vector();
  double worst = 0;
  for (size_t i = 0; i < va.size(); ++i) {
    double e = std::abs(va[i] - vb[i]) / std::max(std::abs(vb[i]), 1.0);
    if (std::isnan(e)) return INFINITY;
    worst = std::max(worst, e);
  }
  return worst;
}

void expect_close(const Tensor& actual, const Tensor& expected, double tol,
                  const std::string& what) {
  ASSERT_TRUE(actual.defined()) << what << ": actual is undefined";
  ASSERT_TRUE(expected.defined()) << what << ": expected is undefined";
  ASSERT_EQ(shape_str(actual.shape()), shape_str(expected.shape())) << what << ": shapes differ";
  std::vector<double> va = actual.to_vector(), vb = expected.to_vector();
  double worst = 0;
  size_t at = 0;
  for (size_t i = 0; i < va.size(); ++i) {
    double e = std::abs(va[i] - vb[i]) / std::max(std::abs(vb[i]), 1.0);
    if (std::isnan(va[i]) != std::isnan(vb[i])) e = INFINITY;
    if (e > worst) {
      worst = e;
      at = i;
    }
  }
  EXPECT_LE(worst, tol) << what << ": worst element " << at << " is " << (va.empty() ? 0 : va[at])
                        << ", expected " << (vb.empty() ? 0 : vb[at]);
}

bool torch_available() {
  static int cached = -1;
  if (cached < 0) cached = std::system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") == 0;
  return cached == 1;
}

void run_threads(int n, const std::function<void(int)>& fn) {
  std::vector<std::exception_ptr> errors(n);
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r)
    threads.emplace_back([&, r] {
      try {
        fn(r);
      } catch (...) {
        errors[r] = std::current_exception();
      }
    });
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

std::string temp_dir() {
  static std::string root;
  if (root.empty()) {
    char tmpl[] = "/tmp/tandem-test-XXXXXX";
    char* d = mkdtemp(tmpl);
    if (d == nullptr) throw IoError("mkdtemp failed");
    root = d;
    std::atexit([] { std::filesystem::remove_all(root); });
  }
  static int counter = 0;
  std::string dir = root + "/" + std::to_string(counter++);
  std::filesystem::create_directories(dir);
  return dir;
}

std::map<std::string, Tensor> run_torch(const std::string& case_name, const TensorMap& inputs,
                                        const std::string& args_json) {
  std::string dir = temp_dir();
  std::string in = dir + "/in.safetensors", out = dir + "/out.safetensors",
              args = dir + "/args.json";
  safetensors_save(in, inputs);
  {
    std::ofstream f(args);
    f << args_json;
  }
  std::string cmd = "/usr/bin/python3 " + std::string(TANDEM_SOURCE_DIR) +
                    "/tests/reference/torch_reference.py " + case_name + " " + in + " " + args +
                    " " + out + " 2>" + dir + "/stderr.txt";
  int rc = std::system(cmd.c_str());
  if (rc != 0) {
    std::ifstream f(dir + "/stderr.txt");
    std::string err((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    throw Error("torch reference '" + case_name + "' failed: " + err);
  }
  std::map<std::string, Tensor> result;
  for (auto& [name, t] : safetensors_load(out).tensors) result[name] = t;
  return result;
}

}  // namespace tandem::testing
