// Training throughput of one model on random data: forward + backward + Adam step, timed after a
// warm-up over a few rotating batches (so caches see realistic traffic). Prints a small table and,
// as its last line, `samples_per_sec=<value>` for benchmarks/compare_pytorch.py to read.
//
// usage: train_throughput --model {mlp,simple_cnn,lenet,resnet18,resnet50} --batch B
//                         --threads T --steps N [--warmup W] [--image-size S]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "core/autograd/grad_mode.h"
#include "core/nn/models.h"
#include "core/ops/ops.h"
#include "core/optim/adam.h"
#include "core/parallel/parallel.h"
#include "core/random/philox.h"
#include "core/tensor/allocator.h"

namespace {

struct Args {
  std::string model = "mlp";
  int64_t batch = 128;
  int threads = 0;
  int steps = 50;
  int warmup = 5;
  int64_t image_size = 0;
};

[[noreturn]] void usage(const char* msg) {
  std::fprintf(stderr,
               "train_throughput: %s\nusage: train_throughput --model NAME --batch B --threads T "
               "--steps N [--warmup W] [--image-size S]\n",
               msg);
  std::exit(2);
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    if (i + 1 >= argc) usage(("missing value for " + k).c_str());
    const char* v = argv[++i];
    char* end = nullptr;
    long n = std::strtol(v, &end, 10);
    bool is_int = end != v && *end == '\0';
    if (k == "--model")
      a.model = v;
    else if (k == "--batch" && is_int && n > 0)
      a.batch = n;
    else if (k == "--threads" && is_int && n >= 0)
      a.threads = static_cast<int>(n);
    else if (k == "--steps" && is_int && n > 0)
      a.steps = static_cast<int>(n);
    else if (k == "--warmup" && is_int && n >= 0)
      a.warmup = static_cast<int>(n);
    else if (k == "--image-size" && is_int && n > 0)
      a.image_size = n;
    else
      usage(("bad argument " + k + " " + v).c_str());
  }
  return a;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace tandem;
  Args args = parse(argc, argv);
  set_num_threads(args.threads);
  Generator gen(0);
  ModelOptions mo;
  Shape sample;
  if (args.model == "mlp" || args.model == "lenet") {
    sample = {1, 28, 28};
  } else if (args.model == "simple_cnn") {
    sample = {3, 32, 32};
  } else {
    int64_t s = args.image_size > 0 ? args.image_size : 64;
    sample = {3, s, s};
  }
  std::shared_ptr<Module> model;
  try {
    model = make_model(args.model, mo, gen);
  } catch (const Error& e) {
    usage(e.what());
  }
  Adam opt(model->named_parameters(), AdamOptions{});
  constexpr int kBatches = 4;
  std::vector<Tensor> xs, ys;
  Shape xshape{args.batch};
  xshape.insert(xshape.end(), sample.begin(), sample.end());
  for (int i = 0; i < kBatches; ++i) {
    xs.push_back(randn(xshape, gen));
    Tensor y = empty({args.batch}, DType::kI64);
    int64_t* p = y.data<int64_t>();
    for (int64_t j = 0; j < args.batch; ++j) p[j] = static_cast<int64_t>(gen.next_u64() % 10);
    ys.push_back(y);
  }
  double last_loss = 0;
  auto step = [&](int i) {
    opt.zero_grad(/*set_to_none=*/true);
    Tensor loss = cross_entropy(model->forward(xs[i % kBatches]), ys[i % kBatches]);
    loss.backward();
    opt.step();
    last_loss = loss.item();
  };
  for (int i = 0; i < args.warmup; ++i) step(i);
  int64_t allocs_before = cpu_allocator_stats().system_allocs;
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < args.steps; ++i) step(i);
  double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  int64_t allocs = cpu_allocator_stats().system_allocs - allocs_before;
  double sps = static_cast<double>(args.batch) * args.steps / dt;
  std::printf(
      "model=%s batch=%lld threads=%d steps=%d ms_per_step=%.2f loss=%.4f "
      "system_allocs_in_timed_steps=%lld\n",
      args.model.c_str(), static_cast<long long>(args.batch), num_threads(), args.steps,
      1e3 * dt / args.steps, last_loss, static_cast<long long>(allocs));
  std::printf("samples_per_sec=%.1f\n", sps);
  return 0;
}
