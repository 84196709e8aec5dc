// Helpers shared by the ddp and mirrored strategy tests: experiments written in code on small
// synthetic data, the real Trainer run once per rank on its own thread over an InProcessGroup
// (so the real DistributedSampler shards the batch and dropout is keyed by global position), the
// single strategy as the reference, and comparisons of parameter sets.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "collectives/inprocess/inprocess_group.h"
#include "configs/schema/config.h"
#include "strategies/single/single_strategy.h"
#include "strategies/trainer/trainer.h"
#include "tests/support/test_support.h"

namespace tandem::testing {

// The experiment text with every "@DIR@" replaced by dir.
inline std::string in_dir(std::string yaml, const std::string& dir) {
  for (size_t at; (at = yaml.find("@DIR@")) != std::string::npos;) yaml.replace(at, 5, dir);
  return yaml;
}

// mlp (no dropout) on 1x8x8 noise, or lenet (dropout 0.4) on 1x12x12 noise; 256 samples, global
// batch 8, 20 steps, one thread per rank, nothing resumed, no evaluation until the end.
//
// About the 1e-5 the tests allow between replicated and single runs: fp32 sums over the batch in
// a different order (per replica, then across replicas), so parameters drift apart by ~1e-8 a
// step under SGD. Adam divides by sqrt(v) and so amplifies the rounding of gradients that are
// small through cancellation: at lr 1e-3 the drift reaches ~1e-5 in 20 steps -- as much as two
// *single* runs that only split the batch differently (accumulate 2 x 8 vs 4 x 4) -- while at
// lr 2e-4 it stays below ~6e-7, so Adam runs at 2e-4. And a pre-activation that lies within
// rounding of zero can flip its ReLU, which moves the weights before it by ~1e-4 at once (seen
// with lenet on 16x16 inputs at step 8 of an accumulated run, single-vs-single as well): lenet
// runs on 12x12 inputs, where none does in these runs.
inline std::string small_yaml(const std::string& model, const std::string& optimizer) {
  const std::string model_line = model == "mlp"
                                     ? "model: {name: mlp, hidden: [16, 16]}\n"
                                       "data: {name: synthetic, synthetic_shape: [1, 8, 8], "
                                       "synthetic_samples: 256, batch_size: 8, workers: 0}\n"
                                     : "model: {name: lenet}\n"
                                       "data: {name: synthetic, synthetic_shape: [1, 12, 12], "
                                       "synthetic_samples: 256, batch_size: 8, workers: 0}\n";
  const std::string optimizer_line = optimizer == "sgd"
                                         ? "optimizer: {name: sgd, lr: 0.05, momentum: 0.9}\n"
                                         : "optimizer: {name: adam, lr: 0.0002}\n";
  return "seed: 11\n" + model_line + optimizer_line +
         "training: {epochs: 1, max_steps: 20, threads: 1, eval_every_epoch: false}\n"
         "checkpoint: {dir: '@DIR@/checkpoints', every_steps: 0, resume: never}\n"
         "logging: {dir: '@DIR@/logs', progress: none, tensorboard: false}\n";
}

inline ExperimentConfig make_config(const std::string& yaml, const std::string& dir,
                                    const std::vector<std::string>& overrides) {
  return parse_config(in_dir(yaml, dir), "replica_runs.yaml", overrides);
}

// A deep copy of a module's state (state_dict() hands out live handles).
inline NamedTensors snapshot(const NamedTensors& live) {
  NamedTensors out;
  for (const auto& [name, t] : live) out.emplace_back(name, t.detach().clone());
  return out;
}

inline double max_abs_difference(const NamedTensors& a, const NamedTensors& b) {
  EXPECT_EQ(a.size(), b.size());
  double worst = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    EXPECT_EQ(a[i].first, b[i].first);
    std::vector<double> x = a[i].second.to_vector(), y = b[i].second.to_vector();
    EXPECT_EQ(x.size(), y.size()) << a[i].first;
    for (size_t j = 0; j < x.size() && j < y.size(); ++j) {
      const double d = std::abs(x[j] - y[j]);
      worst = std::isnan(d) ? INFINITY : std::max(worst, d);
    }
  }
  return worst;
}

// Same names, dtypes and shapes, and the same bytes.
inline void expect_bit_identical(const NamedTensors& a, const NamedTensors& b,
                                 const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i) {
    SCOPED_TRACE(what + " " + a[i].first);
    ASSERT_EQ(a[i].first, b[i].first);
    const Tensor x = a[i].second.contiguous(), y = b[i].second.contiguous();
    ASSERT_EQ(x.dtype(), y.dtype());
    ASSERT_EQ(x.shape(), y.shape());
    const size_t bytes = static_cast<size_t>(x.numel()) * dtype_size(x.dtype());
    EXPECT_EQ(std::memcmp(x.raw_data(), y.raw_data(), bytes), 0) << "bytes differ";
  }
}

// Runs fn(rank, comm) on `world` threads, one per rank of one InProcessGroup whose collectives
// time out after `timeout`; returns what each rank threw (null where it returned).
inline std::vector<std::exception_ptr> run_on_threads(
    int world, const std::function<void(int rank, std::shared_ptr<Communicator> comm)>& fn,
    std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
  CommOptions options;
  options.timeout = timeout;
  std::vector<std::unique_ptr<Communicator>> comms = InProcessGroup::create(world, options);
  std::vector<std::exception_ptr> errors(world);
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    std::shared_ptr<Communicator> comm(std::move(comms[r]));
    threads.emplace_back([&, r, comm] {
      try {
        fn(r, comm);
      } catch (...) {
        errors[r] = std::current_exception();
      }
    });
  }
  for (auto& t : threads) t.join();
  return errors;
}

// The message of what a rank threw ("" when it threw nothing).
inline std::string error_message(const std::exception_ptr& e) {
  if (!e) return "";
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    return x.what();
  } catch (...) {
    return "(not a std::exception)";
  }
}

struct RankOutcome {
  NamedTensors state;  // the model's state_dict after the run (a copy)
  TrainResult result;
  std::exception_ptr error;
  std::string out, err;
};

// One Trainer per rank, each on its own thread with its own strategy from make_strategy(comm, rank)
// over one InProcessGroup; every rank gets its own logging and checkpoint directories. A
// collective that does not complete within `timeout` fails (so a broken reducer fails the test
// instead of hanging it).
using StrategyMaker =
    std::function<std::unique_ptr<Strategy>(std::shared_ptr<Communicator> comm, int rank)>;
inline std::vector<RankOutcome> run_ranks(
    const std::string& yaml, const std::vector<std::string>& overrides, int world,
    const StrategyMaker& make_strategy,
    std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
  CommOptions options;
  options.timeout = timeout;
  std::vector<std::unique_ptr<Communicator>> comms = InProcessGroup::create(world, options);
  std::vector<RankOutcome> outcomes(world);
  std::vector<std::string> dirs;
  for (int r = 0; r < world; ++r) dirs.push_back(temp_dir());
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    std::shared_ptr<Communicator> comm(std::move(comms[r]));
    threads.emplace_back([&, r, comm] {
      RankOutcome& o = outcomes[r];
      std::ostringstream out, err;
      try {
        Trainer trainer(make_config(yaml, dirs[r], overrides), make_strategy(comm, r),
                        RunEnvironment{&out, &err, false, "testhost"});
        o.result = trainer.run();
        o.state = snapshot(trainer.model().state_dict());
      } catch (...) {
        o.error = std::current_exception();
      }
      o.out = out.str();
      o.err = err.str();
    });
  }
  for (auto& t : threads) t.join();
  return outcomes;
}

// Rethrows (as a test failure naming the rank) the first error any rank hit.
inline void expect_no_rank_failed(const std::vector<RankOutcome>& outcomes) {
  for (size_t r = 0; r < outcomes.size(); ++r) {
    if (!outcomes[r].error) continue;
    try {
      std::rethrow_exception(outcomes[r].error);
    } catch (const std::exception& e) {
      ADD_FAILURE() << "rank " << r << " failed: " << e.what();
    }
  }
}

// The reference: the same experiment with the single strategy, in this thread.
inline RankOutcome run_single(const std::string& yaml, std::vector<std::string> overrides) {
  overrides.push_back("strategy.name=single");
  std::ostringstream out, err;
  Trainer trainer(make_config(yaml, temp_dir(), overrides), std::make_unique<SingleStrategy>(),
                  RunEnvironment{&out, &err, false, "testhost"});
  RankOutcome o;
  o.result = trainer.run();
  o.state = snapshot(trainer.model().state_dict());
  return o;
}

}  // namespace tandem::testing
