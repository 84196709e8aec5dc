// ddp_step_profile: where the time of one training step goes, 1 rank x 1 thread against N ranks x
// 1 thread at the same global batch, with per-phase CPU timers (not a profiler: each phase is
// timed on the rank's own thread with steady_clock, medians over the timed steps):
//
//   forward      zero_grad (set to none, as the trainer does), model forward + loss
//   backward     backward, including the reducer's hooks and the bucket all-reduces they start
//   finalize     the reducer's wait for the buckets still in flight after backward
//   optimizer    the optimizer step (the full update on every rank; with --shard-optimizer this
//                rank's block plus the all-gather of parameters)
//   step         all of it
// and, measured alone on the same ranks after the steps: the all-reduce of every gradient bucket
// (the communication a step pays) and one optimizer step.
//
//   ddp_step_profile [--model lenet] [--batch 64] [--steps 30] [--ranks 2] [--backend gloo|shm]
//                    [--optimizer adam|sgd] [--shard-optimizer]
// The ranks are processes started by the program itself (as tandem launch does: a Store on
// 127.0.0.1, torchrun variables); synthetic in-memory inputs, so no data loading is timed.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "collectives/gloo/gloo_communicator.h"
#include "collectives/inprocess/inprocess_group.h"
#include "collectives/shm/shm_communicator.h"
#include "collectives/store/store_client.h"
#include "core/nn/models.h"
#include "core/ops/ops.h"
#include "core/optim/adam.h"
#include "core/optim/sgd.h"
#include "core/parallel/parallel.h"
#include "strategies/ddp/ddp_strategy.h"
#include "strategies/process_environment.h"
#include "tests/collectives/local_spawner.h"

namespace tandem {
namespace {

using Clock = std::chrono::steady_clock;

struct Args {
  std::string model = "lenet";
  int batch = 64;
  int steps = 30;
  int ranks = 2;
  std::string backend = "gloo";
  std::string optimizer = "adam";
  bool shard_optimizer = false;
  bool child = false;
};

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

std::unique_ptr<Optimizer> make_optimizer(const Args& a, NamedTensors params) {
  if (a.optimizer == "sgd") {
    SgdOptions o;
    o.lr = 0.01;
    o.momentum = 0.9;
    return std::make_unique<Sgd>(std::move(params), o);
  }
  return std::make_unique<Adam>(std::move(params), AdamOptions{});
}

// The communicator of this rank: Gloo (or shm over Gloo) through the launcher's store; in-process
// for a world of one. *store keeps the store client alive.
std::unique_ptr<Communicator> connect(const Args& a, int rank, int world,
                                      std::unique_ptr<StoreClient>* store) {
  if (world == 1) return InProcessGroup(1).communicator(0, CommOptions{});
  const std::string endpoint =
      std::string(std::getenv("MASTER_ADDR")) + ":" + std::getenv("MASTER_PORT");
  *store = std::make_unique<StoreClient>(endpoint, std::getenv("TANDEM_JOB_TOKEN"),
                                         std::chrono::seconds(60),
                                         job_tls_from_environment(current_environment()));
  std::unique_ptr<Communicator> comm = std::make_unique<GlooCommunicator>(**store, rank, world);
  if (a.backend == "shm") comm = std::make_unique<ShmCommunicator>(std::move(comm), **store, "shm");
  return comm;
}

// The ms each phase of every timed step took.
struct Phases {
  std::vector<double> forward, backward, finalize, update, total;
};

// Times a.steps training steps (after 5 of warm-up) on one fixed batch.
Phases time_steps(const Args& a, Module& model, Optimizer& opt, DdpStrategy* ddp, const Tensor& x,
                  const Tensor& y) {
  Reducer* reducer = ddp != nullptr ? ddp->reducer() : nullptr;
  Phases p;
  const int warmup = 5;
  for (int s = 0; s < warmup + a.steps; ++s) {
    const Clock::time_point t0 = Clock::now();
    opt.zero_grad(/*set_to_none=*/true);  // as the trainer does; timed with the forward
    if (reducer) reducer->prepare_for_backward(true);
    Tensor loss = cross_entropy(model.forward(x), y);
    const double f = ms_since(t0);
    Clock::time_point t1 = Clock::now();
    loss.backward();
    const double b = ms_since(t1);
    t1 = Clock::now();
    if (reducer) reducer->finalize();
    const double z = ms_since(t1);
    t1 = Clock::now();
    if (ddp)
      ddp->apply_update(model, opt);
    else
      opt.step();
    const double u = ms_since(t1);
    if (s < warmup) continue;
    p.forward.push_back(f);
    p.backward.push_back(b);
    p.finalize.push_back(z);
    p.update.push_back(u);
    p.total.push_back(ms_since(t0));
  }
  return p;
}

// The communication alone: every bucket's all-reduce back to back (as finalize waits for them),
// as one all-reduce of all gradient bytes; ms per run.
std::vector<double> time_all_reduce(Communicator& c, int64_t grad_bytes) {
  std::vector<double> ms;
  Tensor flat = zeros({grad_bytes / 4});
  for (int s = 0; s < 10; ++s) {
    c.barrier()->wait(std::chrono::seconds(60));
    const Clock::time_point t0 = Clock::now();
    c.all_reduce(flat, ReduceOp::kAvg)->wait(std::chrono::seconds(60));
    ms.push_back(ms_since(t0));
  }
  return ms;
}

// The optimizer update alone, ms per run.
std::vector<double> time_update(Module& model, Optimizer& opt, DdpStrategy* ddp) {
  std::vector<double> ms;
  for (int s = 0; s < 10; ++s) {
    const Clock::time_point t0 = Clock::now();
    if (ddp)
      ddp->apply_update(model, opt);
    else
      opt.step();
    ms.push_back(ms_since(t0));
  }
  return ms;
}

int run_rank(const Args& a, int rank, int world) {
  set_num_threads(1);
  std::unique_ptr<StoreClient> store;
  std::unique_ptr<Communicator> comm = connect(a, rank, world, &store);
  Generator gen(1);
  ModelOptions mo;
  std::shared_ptr<Module> model = make_model(a.model, mo, gen);
  const int64_t side = a.model == "lenet" ? 28 : 32, channels = a.model == "lenet" ? 1 : 3;
  const int64_t rows = a.batch / world;
  Generator data(2 + rank);
  Tensor x = randn({rows, channels, side, side}, data);
  std::vector<double> labels;
  for (int64_t i = 0; i < rows; ++i) labels.push_back(static_cast<double>(i % 10));
  Tensor y = from_vector(labels, {rows}, DType::kI64);
  std::unique_ptr<Optimizer> opt = make_optimizer(a, model->named_parameters());
  std::unique_ptr<DdpStrategy> ddp;
  if (world > 1) {
    ddp = std::make_unique<DdpStrategy>(std::shared_ptr<Communicator>(std::move(comm)),
                                        ReducerOptions{}, a.shard_optimizer);
    ddp->prepare(*model, *opt);
  }
  Communicator* c = ddp ? &ddp->communicator() : comm.get();

  const Phases p = time_steps(a, *model, *opt, ddp.get(), x, y);
  int64_t grad_bytes = 0;
  for (const auto& [n, t] : model->named_parameters()) grad_bytes += t.numel() * 4;
  const std::vector<double> comm_ms =
      world > 1 ? time_all_reduce(*c, grad_bytes) : std::vector<double>{};
  const std::vector<double> opt_ms = time_update(*model, *opt, ddp.get());
  if (rank == 0) {
    const double step = median(p.total);
    std::printf(
        "%-10s %-5s%s b%-4d %dx1 rank0  forward %6.2f  backward %6.2f  finalize %6.2f  optimizer "
        "%6.2f  step %6.2f ms  -> %7.0f samples/s | alone: all_reduce %.1f MB %6.2f ms, "
        "optimizer %6.2f ms\n",
        a.model.c_str(), world > 1 ? a.backend.c_str() : "-",
        world > 1 && a.shard_optimizer ? " sharded" : "        ", a.batch, world, median(p.forward),
        median(p.backward), median(p.finalize), median(p.update), step, a.batch / step * 1000.0,
        grad_bytes / 1e6, median(comm_ms), median(opt_ms));
  }
  if (world > 1) c->barrier()->wait(std::chrono::seconds(60));
  return 0;
}

}  // namespace
}  // namespace tandem

int main(int argc, char** argv) {
  tandem::Args a;
  for (int i = 1; i < argc; ++i) {
    std::string s = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (s == "--model")
      a.model = next();
    else if (s == "--batch")
      a.batch = std::atoi(next().c_str());
    else if (s == "--steps")
      a.steps = std::atoi(next().c_str());
    else if (s == "--ranks")
      a.ranks = std::atoi(next().c_str());
    else if (s == "--optimizer")
      a.optimizer = next();
    else if (s == "--backend")
      a.backend = next();
    else if (s == "--child")
      a.child = true;
    else if (s == "--shard-optimizer")
      a.shard_optimizer = true;
    else {
      std::fprintf(stderr, "ddp_step_profile: unknown argument '%s'\n", s.c_str());
      return 2;
    }
  }
  try {
    if (a.child) {
      return tandem::run_rank(a, std::atoi(std::getenv("RANK")),
                              std::atoi(std::getenv("WORLD_SIZE")));
    }
    // 1 x 1 first, then N x 1, in the same invocation.
    tandem::run_rank(a, 0, 1);
    char self[4096];
    ssize_t len = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (len <= 0) return 2;
    self[len] = '\0';
    std::vector<std::string> child = {"--child",
                                      "--model",
                                      a.model,
                                      "--batch",
                                      std::to_string(a.batch),
                                      "--steps",
                                      std::to_string(a.steps),
                                      "--optimizer",
                                      a.optimizer,
                                      "--backend",
                                      a.backend};
    if (a.shard_optimizer) child.push_back("--shard-optimizer");
    return tandem::testing::spawn_local_ranks(self, child, a.ranks, std::chrono::seconds(3600));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ddp_step_profile: %s\n", e.what());
    return 1;
  }
}
