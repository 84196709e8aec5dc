// A GAN trained data-parallel: a training loop the YAML trainer cannot express -- two networks,
// two optimizers, alternating steps -- written against tandem's C++ API. The generator and the
// discriminator are the small fully connected pair of the classic MNIST GAN tutorials, here on
// Fashion-MNIST; every rank trains on its share of each batch and the gradients of both networks
// are averaged across ranks by DDP reducers over one communicator.
//
//   tandem launch --nproc-per-node 2 --exec -- ./gan [--steps 200] [--batch 64] [--seed 0]
//   ./gan                                         (a world of one)
//   --fp64: everything in f64, where 1 and N ranks end with the same weights to ~1e-12
//
// The one decision: each network has its own Reducer, and the generator's step, whose backward
// also runs through the discriminator, tells the discriminator's reducer not to synchronise
// (prepare_for_backward(false), as PyTorch's no_sync()) -- so each all-reduce carries only the
// gradients its optimizer is about to use. The noise of a sample is keyed by (seed, step, global
// sample index), like every random draw in tandem: 1 and N ranks train the same model.
//
// Prints per-rank parameter checksums at the end, so runs can be compared.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "configs/schema/config.h"
#include "core/data/dataset.h"
#include "core/data/loader.h"
#include "core/data/sampler.h"
#include "core/data/transforms.h"
#include "core/nn/layers.h"
#include "core/nn/sequential.h"
#include "core/ops/ops.h"
#include "core/optim/adam.h"
#include "core/random/philox.h"
#include "strategies/ddp/reducer.h"
#include "strategies/process_environment.h"
#include "strategies/strategy_factory.h"

using namespace tandem;

namespace {

constexpr int64_t kNoise = 64;
constexpr int64_t kPixels = 28 * 28;

// LeakyReLU(0.2) as a module, for Sequential.
class LeakyRelu : public Module {
 public:
  Tensor forward(const Tensor& x) override { return leaky_relu(x, 0.2); }
  std::string describe() const override { return "LeakyReLU(negative_slope=0.2)"; }
};
class Tanh : public Module {
 public:
  Tensor forward(const Tensor& x) override { return tanh(x); }
  std::string describe() const override { return "Tanh()"; }
};

std::shared_ptr<Sequential> generator(Generator& gen) {
  auto g = std::make_shared<Sequential>();
  g->push_back(std::make_shared<Linear>(gen, kNoise, 256));
  g->push_back(std::make_shared<LeakyRelu>());
  g->push_back(std::make_shared<Linear>(gen, 256, kPixels));
  g->push_back(std::make_shared<Tanh>());
  return g;
}

std::shared_ptr<Sequential> discriminator(Generator& gen) {
  auto d = std::make_shared<Sequential>();
  d->push_back(std::make_shared<Linear>(gen, kPixels, 256));
  d->push_back(std::make_shared<LeakyRelu>());
  d->push_back(std::make_shared<Linear>(gen, 256, 1));
  return d;
}

// Binary cross-entropy with logits, the mean over this rank's rows (DDP averages the ranks'
// gradients, which makes it the whole batch's mean): max(x, 0) - x y + log(1 + exp(-|x|)).
Tensor bce_with_logits(const Tensor& logits, double target) {
  Tensor x = logits;
  Tensor per_row = add(sub(relu(x), mul(x, target)), log(add(exp(neg(abs(x))), 1.0)));
  return mul(sum(per_row), 1.0 / static_cast<double>(logits.size(0)));
}

// Standard normal noise for the rows of a batch, keyed by (seed, step, global sample index).
Tensor noise(uint64_t seed, int64_t step, int64_t first_row, int64_t rows) {
  std::vector<double> z(rows * kNoise);
  for (int64_t r = 0; r < rows; ++r) {
    Generator g(seed ^ (0x9e3779b97f4a7c15ull * static_cast<uint64_t>(step + 1)),
                static_cast<uint64_t>(first_row + r));
    for (int64_t k = 0; k < kNoise; k += 2) {  // Box-Muller, two values per pair of uniforms
      const double u1 = std::max(g.next_double(), 1e-300), u2 = g.next_double();
      const double rad = std::sqrt(-2.0 * std::log(u1));
      z[r * kNoise + k] = rad * std::cos(2 * M_PI * u2);
      z[r * kNoise + k + 1] = rad * std::sin(2 * M_PI * u2);
    }
  }
  return from_vector(z, {rows, kNoise}, DType::kF32);
}

double checksum(const Module& m) {
  double s = 0;
  for (const Tensor& p : m.parameters())
    for (double v : p.to_vector()) s += v;
  return s;
}

struct Options {
  int64_t steps = 200, batch = 64;
  uint64_t seed = 0;
  DType dtype = DType::kF32;
};

// The flags; false, after printing the usage, on one it does not know.
bool parse_args(int argc, char** argv, Options* o) {
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--fp64")) {
      o->dtype = DType::kF64;
      continue;
    }
    const char* value = i + 1 < argc ? argv[i + 1] : nullptr;
    if (value != nullptr && !std::strcmp(argv[i], "--steps"))
      o->steps = std::atoll(value);
    else if (value != nullptr && !std::strcmp(argv[i], "--batch"))
      o->batch = std::atoll(value);
    else if (value != nullptr && !std::strcmp(argv[i], "--seed"))
      o->seed = std::strtoull(value, nullptr, 10);
    else {
      std::fprintf(stderr, "usage: gan [--steps N] [--batch B] [--seed S] [--fp64]\n");
      return false;
    }
    ++i;
  }
  return true;
}

std::shared_ptr<Sequential> in_dtype(std::shared_ptr<Sequential> m, DType dtype) {
  m->to(dtype);
  return m;
}

// The two networks, each with its optimizer and its DDP reducer.
struct Gan {
  Gan(Generator& gen, DType dtype, Communicator& comm)
      : g(in_dtype(generator(gen), dtype)),
        d(in_dtype(discriminator(gen), dtype)),
        opt_g(g->named_parameters(), {.lr = 2e-4, .beta1 = 0.5}),
        opt_d(d->named_parameters(), {.lr = 2e-4, .beta1 = 0.5}),
        reduce_g(g->named_parameters(), comm, {}),
        reduce_d(d->named_parameters(), comm, {}) {}

  // The discriminator's step: real images are 1, generated ones 0 (the generator gets no
  // gradient). Returns its loss on this rank's rows.
  Tensor step_discriminator(const Tensor& real, const Tensor& z) {
    opt_d.zero_grad(/*set_to_none=*/true);
    reduce_d.prepare_for_backward(/*sync=*/true);
    Tensor fake = g->forward(z).detach();
    Tensor loss =
        add(bce_with_logits(d->forward(real), 1.0), bce_with_logits(d->forward(fake), 0.0));
    loss.backward();
    reduce_d.finalize();
    opt_d.step();
    return loss;
  }

  // The generator's step: make the discriminator say 1. Its backward runs through the
  // discriminator, whose gradients are thrown away, unsynchronised.
  Tensor step_generator(const Tensor& z) {
    opt_g.zero_grad(/*set_to_none=*/true);
    reduce_g.prepare_for_backward(/*sync=*/true);
    reduce_d.prepare_for_backward(/*sync=*/false);
    Tensor loss = bce_with_logits(d->forward(g->forward(z)), 1.0);
    loss.backward();
    reduce_g.finalize();
    opt_g.step();
    opt_d.zero_grad(/*set_to_none=*/true);
    return loss;
  }

  std::shared_ptr<Sequential> g, d;
  Adam opt_g, opt_d;
  Reducer reduce_g, reduce_d;
};

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (!parse_args(argc, argv, &o)) return 2;
  try {
    // Who this process is (tandem launch, mpirun or srun variables) and the communicator ddp
    // would use for it (strategy.backend: auto).
    const ProcessEnvironment env = detect_environment(current_environment());
    ExperimentConfig cfg;
    cfg.strategy.name = StrategyName::kDdp;
    CommunicatorBuild built = make_communicator(cfg, env);
    Communicator& comm = *built.comm;

    Generator gen(o.seed);
    Gan gan(gen, o.dtype, comm);

    auto data = make_dataset("fashion_mnist", "", "train");
    TransformOptions scale;  // pixels to [-1, 1], the generator's tanh range
    scale.mean = {0.5};
    scale.std = {0.5};
    DistributedSampler sampler(data->size(), o.batch, comm.world_size(), comm.rank(), o.seed,
                               /*shuffle=*/true, /*drop_last=*/true);
    DataLoader loader(data, sampler, Transforms(data->sample_shape(), scale), /*workers=*/1);
    loader.set_epoch(0);

    for (int64_t step = 0; step < o.steps; ++step) {
      std::optional<Batch> b = loader.next();
      if (!b) {
        loader.set_epoch(step);
        b = loader.next();
      }
      const int64_t rows = b->images.size(0);
      Tensor real = b->images.reshape({rows, kPixels}).to(o.dtype);
      Tensor z = noise(o.seed, step, b->first_global_position, rows).to(o.dtype);
      Tensor loss_d = gan.step_discriminator(real, z);
      Tensor loss_g = gan.step_generator(z);
      if (comm.rank() == 0 && (step % 50 == 0 || step + 1 == o.steps)) {
        std::printf("step %lld: loss_d %.4f loss_g %.4f (rank 0's share of the batch)\n",
                    static_cast<long long>(step), loss_d.item(), loss_g.item());
      }
    }
    std::printf("rank %d of %d: generator checksum %.9e discriminator checksum %.9e\n", comm.rank(),
                comm.world_size(), checksum(*gan.g), checksum(*gan.d));
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gan: %s\n", e.what());
    return 1;
  }
}
