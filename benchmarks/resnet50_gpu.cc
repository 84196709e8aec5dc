// ResNet-50 training throughput on one GPU: synthetic 3x224x224 batches (already on the device),
// forward + cross-entropy + backward + SGD momentum step, timed after a warm-up (which also lets
// cuDNN pick its algorithms and the caching allocator fill its cache). Prints a table and, as its
// last line, `images_per_sec=<v> peak_mb=<v>` for benchmarks/compare_pytorch_gpu.py to read.
//
// usage: resnet50_gpu --batch B --precision {fp32,tf32,bf16,fp16} --steps N [--warmup W]
//                     [--model NAME]
// bf16/fp16: autocast of convolutions and matmuls with f32 master weights (the trainer's path);
// fp16 also scales the loss (a fixed 2^16 here; the trainer's scaler adapts it).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "core/backends/autocast.h"
#include "core/backends/device_backend.h"
#include "core/nn/models.h"
#include "core/ops/ops.h"
#include "core/optim/loss_scaler.h"
#include "core/optim/sgd.h"
#include "core/random/philox.h"

namespace {

struct Args {
  int64_t batch = 64;
  std::string precision = "fp32";
  std::string model = "resnet50";
  int steps = 30;
  int warmup = 5;
};

[[noreturn]] void usage(const std::string& msg) {
  std::fprintf(
      stderr,
      "resnet50_gpu: %s\nusage: resnet50_gpu --batch B --precision {fp32,tf32,bf16,fp16} --steps N "
      "[--warmup W] [--model resnet50|resnet18]\n",
      msg.c_str());
  std::exit(2);
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (k == "--help" || k == "-h") usage("help");
    if (i + 1 >= argc) usage("missing value for " + k);
    const char* v = argv[++i];
    char* end = nullptr;
    const long n = std::strtol(v, &end, 10);
    const bool is_int = end != v && *end == '\0';
    if (k == "--batch" && is_int && n > 0)
      a.batch = n;
    else if (k == "--steps" && is_int && n > 0)
      a.steps = static_cast<int>(n);
    else if (k == "--warmup" && is_int && n >= 0)
      a.warmup = static_cast<int>(n);
    else if (k == "--precision")
      a.precision = v;
    else if (k == "--model")
      a.model = v;
    else
      usage("bad flag or value: " + k + " " + v);
  }
  if (a.precision != "fp32" && a.precision != "tf32" && a.precision != "bf16" &&
      a.precision != "fp16")
    usage("--precision must be fp32, tf32, bf16 or fp16, got " + a.precision);
  return a;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace tandem;
  const Args a = parse(argc, argv);
  if (!cuda_available()) {
    std::fprintf(stderr, "resnet50_gpu: no CUDA device is visible\n");
    return 1;
  }
  try {
    const Device dev = Device::cuda(0);
    DeviceBackend& be = backend_for("resnet50_gpu", dev);
    be.set_allow_tf32(a.precision == "tf32");
    set_autocast_dtype(a.precision == "bf16"   ? DType::kBF16
                       : a.precision == "fp16" ? DType::kF16
                                               : DType::kF32);
    const double loss_scale = a.precision == "fp16" ? 65536.0 : 1.0;
    Generator gen(0);
    ModelOptions mo;
    mo.num_classes = 1000;
    auto model = make_model(a.model, mo, gen);
    model->to(dev);
    Sgd opt(model->named_parameters(), SgdOptions{0.1, 0.9, 0.0, false, 1e-4});
    Generator data_gen(1, 1);
    Tensor images = randn({a.batch, 3, 224, 224}, data_gen).to(dev);
    std::vector<double> lv(static_cast<size_t>(a.batch));
    for (int64_t i = 0; i < a.batch; ++i)
      lv[static_cast<size_t>(i)] = static_cast<double>(i % 1000);
    Tensor labels = from_vector(lv, {a.batch}, DType::kI64).to(dev);
    auto step = [&] {
      opt.zero_grad();
      Tensor loss = cross_entropy(model->forward(images), labels);
      if (loss_scale == 1.0) {
        loss.backward();
      } else {
        mul(loss, loss_scale).backward();
        scale_grads(model->parameters(), 1.0 / loss_scale);
      }
      opt.step();
      return loss;
    };
    for (int i = 0; i < a.warmup; ++i) step();
    be.synchronize(0);
    be.reset_peak_memory(0);
    const auto t0 = std::chrono::steady_clock::now();
    Tensor last;
    for (int i = 0; i < a.steps; ++i) last = step();
    const double final_loss = last.item();  // waits for the device
    be.synchronize(0);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const DeviceMemoryStats st = be.memory_stats(0);
    const double ips = static_cast<double>(a.batch) * a.steps / s;
    const double peak_mb = st.peak_reserved_bytes / 1048576.0;
    std::printf("%-10s %6s %10s %6s %12s %14s %14s\n", "model", "batch", "precision", "steps",
                "images/s", "peak alloc MB", "peak resv MB");
    std::printf("%-10s %6lld %10s %6d %12.1f %14.0f %14.0f\n", a.model.c_str(),
                static_cast<long long>(a.batch), a.precision.c_str(), a.steps, ips,
                st.peak_allocated_bytes / 1048576.0, peak_mb);
    std::printf("final loss %.4f; cudaMalloc calls %lld\n", final_loss,
                static_cast<long long>(st.device_allocs));
    std::printf("images_per_sec=%.2f peak_mb=%.1f\n", ips, peak_mb);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "resnet50_gpu: %s\n", e.what());
    return 1;
  }
  return 0;
}
