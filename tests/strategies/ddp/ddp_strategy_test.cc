// The ddp strategy with ranks as threads over the in-process backend, most of it through the real
// Trainer (one per rank, as `tandem launch` would run them): it must compute what one process
// computes on the same global batch -- dropout included, since masks are keyed by global sample
// position -- with and without gradient accumulation, and do so reproducibly. Also: rank 0's
// initial state is broadcast, accumulation micro-batches issue no collective, parameters unused
// on some or all ranks take part with zero gradients (named once, no hang), and bucket
// compression stays close to fp32.
#include "strategies/ddp/ddp_strategy.h"

#include <gtest/gtest.h>

#include <chrono>

#include "collectives/gloo/gloo_communicator.h"
#include "collectives/shm/shm_communicator.h"
#include "collectives/store/job_token.h"
#include "collectives/store/store_server.h"
#include "core/base/error.h"
#include "core/nn/layers.h"
#include "core/nn/sequential.h"
#include "core/optim/adam.h"
#include "core/optim/sgd.h"
#include "strategies/trainer/builders.h"
#include "tests/strategies/ddp/chain_model.h"
#include "tests/strategies/replica_runs.h"

namespace tandem {
namespace {

using namespace std::chrono_literals;
using testing::RankOutcome;

// Small buckets, so even these small models have several buckets and the re-plan matters.
ReducerOptions test_buckets() {
  ReducerOptions o;
  o.first_bucket_bytes = 1 << 10;
  o.bucket_bytes = 8 << 10;
  return o;
}

testing::StrategyMaker ddp(ReducerOptions options = test_buckets(), bool shard_optimizer = false) {
  return [options, shard_optimizer](std::shared_ptr<Communicator> comm, int) {
    return std::make_unique<DdpStrategy>(std::move(comm), options, shard_optimizer);
  };
}

std::vector<std::string> with_ddp(std::vector<std::string> overrides) {
  overrides.push_back("strategy.name=ddp");
  return overrides;
}

// A chain batch as rank `rank` of two would get it.
Batch as_batch(const testing::ChainBatch& cb, int rank, int rows) {
  Batch b;
  b.images = cb.x;
  b.labels = cb.labels;
  b.first_global_position = rank * rows;
  b.global_batch_size = 2 * rows;
  return b;
}

// Runs `world` ddp ranks; every rank must succeed and end with the same parameters.
std::vector<RankOutcome> run_ddp(const std::string& yaml, const std::vector<std::string>& overrides,
                                 int world, const testing::StrategyMaker& make = ddp()) {
  std::vector<RankOutcome> ranks = testing::run_ranks(yaml, with_ddp(overrides), world, make);
  testing::expect_no_rank_failed(ranks);
  for (int r = 1; r < world && !ranks[r].error && !ranks[0].error; ++r)
    testing::expect_bit_identical(ranks[r].state, ranks[0].state, "rank " + std::to_string(r));
  return ranks;
}

void expect_ddp_matches_single(const std::string& model, const std::string& optimizer) {
  const std::string yaml = testing::small_yaml(model, optimizer);
  const RankOutcome single = testing::run_single(yaml, {});
  ASSERT_EQ(single.result.step, 20);
  ExperimentConfig cfg = testing::make_config(yaml, testing::temp_dir(), {});
  NamedTensors init = build_model(cfg, *build_dataset(cfg, "train"))->state_dict();
  // Training moved the weights far more than the tolerance below.
  EXPECT_GT(testing::max_abs_difference(init, single.state), 1e-3);
  for (int world : {2, 4}) {
    SCOPED_TRACE(model + " " + optimizer + " world " + std::to_string(world));
    std::vector<RankOutcome> ranks = run_ddp(yaml, {}, world);
    if (ranks[0].error) continue;
    EXPECT_EQ(ranks[0].result.step, 20);
    EXPECT_LE(testing::max_abs_difference(ranks[0].state, single.state), 1e-5);
    // The reported loss is the global mean too.
    EXPECT_NEAR(ranks[0].result.train_loss, single.result.train_loss, 1e-5);
  }
}

// ------------------------------------------------------------------------ equals one process

TEST(DdpStrategy, TwoAndFourRanksMatchOneProcessOnMlpWithSgdMomentumAndAdam) {
  expect_ddp_matches_single("mlp", "sgd");
  expect_ddp_matches_single("mlp", "adam");
}

// lenet has dropout 0.4: the ranks must draw the masks one process draws for the same samples.
TEST(DdpStrategy, TwoAndFourRanksMatchOneProcessOnLenetWithDropout) {
  expect_ddp_matches_single("lenet", "sgd");
  expect_ddp_matches_single("lenet", "adam");
}

// The same runs with the gradients all-reduced through shared memory (collectives/shm, what
// tandem launch picks on one host): bit-identical to the in-process backend at two ranks (both
// sum a + b, then halve), so within the tolerance of one process too.
TEST(DdpStrategy, OverSharedMemoryTwoRanksAreBitIdenticalToTheInProcessBackend) {
  const std::string yaml = testing::small_yaml("lenet", "adam");
  const std::string token = generate_job_token();
  StoreServer server("127.0.0.1", 0, token);
  auto over_shm = [&](std::shared_ptr<Communicator> ignored,
                      int rank) -> std::unique_ptr<Strategy> {
    auto store = std::make_shared<StoreClient>(server.endpoint(), token, std::chrono::seconds(30));
    auto gloo = std::make_unique<GlooCommunicator>(*store, rank, 2);
    auto shm = std::make_shared<ShmCommunicator>(std::move(gloo), *store, "ddp-shm-test");
    shm->set_options(ignored->options());
    // The store client must outlive the communicator: keep it in the deleter.
    std::shared_ptr<Communicator> comm(shm.get(), [shm, store](Communicator*) mutable {
      shm.reset();
      store.reset();
    });
    return std::make_unique<DdpStrategy>(comm, test_buckets());
  };
  std::vector<RankOutcome> shm = run_ddp(yaml, {}, 2, over_shm);
  std::vector<RankOutcome> inprocess = run_ddp(yaml, {}, 2);
  if (shm[0].error || inprocess[0].error) return;
  EXPECT_EQ(shm[0].result.step, 20);
  testing::expect_bit_identical(shm[0].state, inprocess[0].state, "shm vs in-process");
  const RankOutcome single = testing::run_single(yaml, {});
  EXPECT_LE(testing::max_abs_difference(shm[0].state, single.state), 1e-5);
}

TEST(DdpStrategy, TwoRunsWithTheSameWorldSizeAreBitIdentical) {
  const std::string yaml = testing::small_yaml("lenet", "adam");
  std::vector<RankOutcome> a = run_ddp(yaml, {}, 2), b = run_ddp(yaml, {}, 2);
  if (a[0].error || b[0].error) return;
  testing::expect_bit_identical(a[0].state, b[0].state, "run a vs run b");
  EXPECT_EQ(a[0].result.train_loss, b[0].result.train_loss);
  EXPECT_EQ(a[0].result.test_loss, b[0].result.test_loss);
}

// ------------------------------------------------------------------------ sharded update

// Each rank updates its block of elements, then the blocks are gathered: the same bits as every
// rank updating everything (the element-wise update is the same arithmetic on the same inputs).
TEST(DdpStrategy, ShardedOptimizerUpdateIsBitIdenticalToTheFullUpdateAtTwoAndFourRanks) {
  for (const auto& [model, optimizer] :
       {std::pair<std::string, std::string>{"lenet", "adam"}, {"mlp", "sgd"}}) {
    const std::string yaml = testing::small_yaml(model, optimizer);
    for (int world : {2, 4}) {
      SCOPED_TRACE(model + " " + optimizer + " world " + std::to_string(world));
      std::vector<RankOutcome> full = run_ddp(yaml, {}, world);
      std::vector<RankOutcome> sharded = run_ddp(yaml, {}, world, ddp(test_buckets(), true));
      if (full[0].error || sharded[0].error) continue;
      EXPECT_EQ(sharded[0].result.step, 20);
      testing::expect_bit_identical(sharded[0].state, full[0].state, "sharded vs full");
    }
  }
}

// Before a checkpoint every rank gathers the optimizer state, so the chief saves what an
// unsharded run would: without the gather, rank 0's moments are stale outside its block.
TEST(DdpStrategy, ShardedOptimizerGathersTheFullStateBeforeACheckpoint) {
  std::vector<NamedTensors> state(2), stale(2), reference(2);
  for (bool shard : {false, true}) {
    auto errors = testing::run_on_threads(2, [&](int rank, std::shared_ptr<Communicator> comm) {
      testing::Chain::Options co;
      auto model = testing::make_chain(1, co);
      AdamOptions ao;
      ao.lr = 0.01;
      Adam adam(model->named_parameters(), ao);
      DdpStrategy strategy(comm, test_buckets(), shard);
      strategy.prepare(*model, adam);
      for (int step = 0; step < 3; ++step) {
        adam.zero_grad();
        testing::ChainBatch cb = testing::chain_batch(50 + 10 * step + rank, 4);
        Batch b = as_batch(cb, rank, 4);
        strategy.forward_backward(*model, MicroBatch{&b, step, 0, 1, 1});
        strategy.synchronize(*model);
        strategy.apply_update(*model, adam);
      }
      if (shard) stale[rank] = testing::snapshot(adam.state_dict());
      strategy.before_checkpoint(*model, adam);
      (shard ? state : reference)[rank] = testing::snapshot(adam.state_dict());
    });
    for (int r = 0; r < 2; ++r) ASSERT_FALSE(errors[r]) << testing::error_message(errors[r]);
  }
  for (int r = 0; r < 2; ++r)
    testing::expect_bit_identical(state[r], reference[0], "rank " + std::to_string(r));
  EXPECT_GT(testing::max_abs_difference(stale[0], reference[0]), 0.0) << "the gather did nothing";
}

// ------------------------------------------------------------------- broadcast in prepare

TEST(DdpStrategy, PrepareBroadcastsRankZerosParametersAndBuffers) {
  std::vector<NamedTensors> before(2), after(2);
  auto errors = testing::run_on_threads(2, [&](int rank, std::shared_ptr<Communicator> comm) {
    Generator gen(100 + rank, 0);  // a different initialisation on each rank
    auto model = std::make_shared<Sequential>(std::initializer_list<std::shared_ptr<Module>>{
        std::make_shared<Conv2d>(gen, 1, 2, 3), std::make_shared<BatchNorm2d>(2)});
    if (rank == 1) {
      NamedTensors buffers = model->named_buffers();
      for (auto& [name, t] : buffers)
        t.fill_(name.find("num_batches") != std::string::npos ? 7 : 5);
    }
    before[rank] = testing::snapshot(model->state_dict());
    Sgd sgd(model->named_parameters(), SgdOptions{});
    DdpStrategy strategy(comm, test_buckets());
    strategy.prepare(*model, sgd);
    after[rank] = testing::snapshot(model->state_dict());
  });
  for (int r = 0; r < 2; ++r) ASSERT_FALSE(errors[r]) << testing::error_message(errors[r]);
  ASSERT_EQ(before[0].size(), 7u);  // 0.weight, 0.bias, 1.weight, 1.bias and three buffers
  // Every entry of rank 1 differed (weights by seed; BatchNorm's weight and bias excepted, which
  // start at 1 and 0 everywhere) ...
  for (const char* name :
       {"0.weight", "0.bias", "1.running_mean", "1.running_var", "1.num_batches_tracked"}) {
    for (size_t i = 0; i < before[1].size(); ++i) {
      if (before[1][i].first == name) {
        EXPECT_GT(testing::max_abs_difference({before[1][i]}, {before[0][i]}), 0.0) << name;
      }
    }
  }
  // ... and after prepare every rank holds rank 0's values, which did not change.
  testing::expect_bit_identical(after[0], before[0], "rank 0");
  testing::expect_bit_identical(after[1], before[0], "rank 1");
}

// ---------------------------------------------------------------------------- accumulation

// Counts the collectives issued through it (from the rank's one thread).
class CountingCommunicator : public Communicator {
 public:
  explicit CountingCommunicator(std::shared_ptr<Communicator> inner) : inner_(std::move(inner)) {
    set_options(inner_->options());
  }
  int rank() const override { return inner_->rank(); }
  int world_size() const override { return inner_->world_size(); }
  std::string backend_name() const override { return inner_->backend_name(); }
  std::unique_ptr<Work> all_reduce(Tensor& t, ReduceOp op) override {
    ++all_reduces;
    return inner_->all_reduce(t, op);
  }
  std::unique_ptr<Work> broadcast(Tensor& t, int root) override {
    ++others;
    return inner_->broadcast(t, root);
  }
  std::unique_ptr<Work> all_gather(const Tensor& in, Tensor& out) override {
    ++others;
    return inner_->all_gather(in, out);
  }
  std::unique_ptr<Work> reduce_scatter(const Tensor& in, Tensor& out, ReduceOp op) override {
    ++others;
    return inner_->reduce_scatter(in, out, op);
  }
  std::unique_ptr<Work> barrier() override {
    ++others;
    return inner_->barrier();
  }
  int64_t total() const { return all_reduces + others; }
  int64_t all_reduces = 0, others = 0;

 private:
  std::shared_ptr<Communicator> inner_;
};

// DdpStrategy with a log of the collectives each forward_backward issued.
class CountingDdp : public Strategy {
 public:
  struct Micro {
    int index;
    int64_t all_reduces, others;
  };
  CountingDdp(std::shared_ptr<CountingCommunicator> counter, ReducerOptions options,
              std::vector<Micro>* log, int* buckets)
      : counter_(counter), inner_(counter, options), log_(log), buckets_(buckets) {}
  std::string name() const override { return "ddp"; }
  int rank() const override { return inner_.rank(); }
  int world_size() const override { return inner_.world_size(); }
  void prepare(Module& model, Optimizer& optimizer) override { inner_.prepare(model, optimizer); }
  double forward_backward(Module& model, const MicroBatch& micro) override {
    const int64_t a = counter_->all_reduces, o = counter_->others;
    double loss = inner_.forward_backward(model, micro);
    log_->push_back({micro.micro_index, counter_->all_reduces - a, counter_->others - o});
    *buckets_ = inner_.reducer()->num_buckets();
    return loss;
  }
  void synchronize(Module& model) override { inner_.synchronize(model); }
  std::vector<double> all_reduce_sum(const std::vector<double>& v) override {
    return inner_.all_reduce_sum(v);
  }

 private:
  std::shared_ptr<CountingCommunicator> counter_;
  DdpStrategy inner_;
  std::vector<Micro>* log_;
  int* buckets_;
};

TEST(DdpStrategy, AccumulationMicroBatchesIssueNoCollectiveAndTheResultMatchesOneProcess) {
  const std::string yaml = testing::small_yaml("lenet", "sgd");
  const std::vector<std::string> accumulate = {"training.accumulate_steps=2",
                                               "training.max_steps=10"};
  const RankOutcome single = testing::run_single(yaml, accumulate);
  ASSERT_EQ(single.result.step, 10);

  std::vector<std::vector<CountingDdp::Micro>> logs(2);
  std::vector<int> buckets(2, 0);
  auto make = [&](std::shared_ptr<Communicator> comm, int rank) -> std::unique_ptr<Strategy> {
    return std::make_unique<CountingDdp>(std::make_shared<CountingCommunicator>(comm),
                                         test_buckets(), &logs[rank], &buckets[rank]);
  };
  std::vector<RankOutcome> ranks = run_ddp(yaml, accumulate, 2, make);
  if (ranks[0].error) return;
  EXPECT_LE(testing::max_abs_difference(ranks[0].state, single.state), 1e-5);

  for (int r = 0; r < 2; ++r) {
    SCOPED_TRACE("rank " + std::to_string(r));
    ASSERT_EQ(logs[r].size(), 20u);  // 10 steps x 2 micro-batches
    ASSERT_GE(buckets[r], 2);
    for (size_t i = 0; i < logs[r].size(); ++i) {
      const auto& m = logs[r][i];
      EXPECT_EQ(m.index, static_cast<int>(i % 2));
      if (m.index == 0) {
        EXPECT_EQ(m.all_reduces + m.others, 0) << "micro-batch " << i << " communicated";
      } else {
        // The last micro-batch's backward launched every bucket.
        EXPECT_EQ(m.all_reduces, buckets[r]) << "micro-batch " << i;
      }
    }
  }
}

// ------------------------------------------------------------------------ unused parameters

// trunk -> (branch, added back, when this rank takes it) -> head; registered trunk, branch, head.
class Branchy : public Module {
 public:
  Branchy(uint64_t seed, bool take_branch) : take_branch_(take_branch) {
    Generator gen(seed, /*stream=*/1);
    trunk_ = register_module("trunk", std::make_shared<Linear>(gen, 8, 8));
    branch_ = register_module("branch", std::make_shared<Linear>(gen, 8, 8));
    head_ = register_module("head", std::make_shared<Linear>(gen, 8, 8));
  }
  Tensor forward(const Tensor& x) override {
    Tensor h = relu(trunk_->forward(x));
    if (take_branch_) h = add(h, relu(branch_->forward(h)));
    return head_->forward(h);
  }
  std::string describe() const override { return "Branchy"; }
  bool take_branch_;

 private:
  std::shared_ptr<Linear> trunk_, branch_, head_;
};

SgdOptions plain_sgd() {
  SgdOptions so;
  so.lr = 0.1;
  return so;
}

// Rank 1 never takes the branch. Its buckets holding branch.* must still complete (with a zero
// contribution from rank 1), and the result must be the one process's: the gradient of the mean
// loss over both ranks' rows, where rank 1's rows do not involve the branch.
TEST(DdpStrategy, ABranchSkippedOnOneRankTakesPartWithAZeroGradientAndMatchesOneProcess) {
  constexpr int kSteps = 3, kRows = 4;
  auto batch_of = [](int step, int rank) {
    return testing::chain_batch(100 + 10 * step + rank, kRows);
  };

  // The reference, by hand in one process: loss = (mean CE of rank 0's rows through the branch +
  // mean CE of rank 1's rows without it) / 2, plain SGD.
  Branchy reference(7, true);
  Sgd reference_sgd(reference.named_parameters(), plain_sgd());
  const NamedTensors initial = testing::snapshot(reference.state_dict());
  for (int step = 0; step < kSteps; ++step) {
    reference_sgd.zero_grad();
    testing::ChainBatch b0 = batch_of(step, 0), b1 = batch_of(step, 1);
    reference.take_branch_ = true;
    Tensor l0 = cross_entropy(reference.forward(b0.x), b0.labels);
    reference.take_branch_ = false;
    Tensor l1 = cross_entropy(reference.forward(b1.x), b1.labels);
    mul(add(l0, l1), 0.5).backward();
    reference_sgd.step();
  }

  std::vector<NamedTensors> after(2);
  std::vector<std::vector<std::string>> warnings(2);
  auto errors = testing::run_on_threads(
      2,
      [&](int rank, std::shared_ptr<Communicator> comm) {
        Branchy model(7, /*take_branch=*/rank == 0);
        Sgd sgd(model.named_parameters(), plain_sgd());
        ReducerOptions ro;
        ro.first_bucket_bytes = 100;  // [head.bias], then buckets that wait for branch.*
        ro.bucket_bytes = 300;
        ro.warn = [&warnings, rank](const std::string& line) { warnings[rank].push_back(line); };
        DdpStrategy strategy(comm, ro);
        strategy.prepare(model, sgd);
        for (int step = 0; step < kSteps; ++step) {
          sgd.zero_grad();
          testing::ChainBatch cb = batch_of(step, rank);
          Batch b = as_batch(cb, rank, kRows);
          strategy.forward_backward(model, MicroBatch{&b, step, 0, 1, 1});
          strategy.synchronize(model);
          const std::vector<std::string> expected_unused =
              rank == 0 ? std::vector<std::string>{}
                        : std::vector<std::string>{"branch.weight", "branch.bias"};
          EXPECT_EQ(strategy.reducer()->unused_last_step(), expected_unused);
          strategy.apply_update(model, sgd);
        }
        after[rank] = testing::snapshot(model.state_dict());
      },
      /*timeout=*/std::chrono::seconds(10));
  for (int r = 0; r < 2; ++r)
    ASSERT_FALSE(errors[r]) << "rank " << r << ": " << testing::error_message(errors[r]);
  testing::expect_bit_identical(after[1], after[0], "rank 1 vs rank 0");
  EXPECT_LE(testing::max_abs_difference(after[0], reference.state_dict()), 1e-6);
  // The branch did train (from rank 0's rows), so the comparison above means something.
  EXPECT_GT(testing::max_abs_difference(after[0], initial), 1e-3);
  // Named once, by the rank that skipped it, with its rank.
  EXPECT_TRUE(warnings[0].empty()) << warnings[0][0];
  ASSERT_EQ(warnings[1].size(), 1u);
  EXPECT_NE(warnings[1][0].find("ddp rank 1"), std::string::npos) << warnings[1][0];
  EXPECT_NE(warnings[1][0].find("branch.weight, branch.bias"), std::string::npos) << warnings[1][0];
  EXPECT_EQ(warnings[1][0].find("trunk."), std::string::npos) << warnings[1][0];
}

// A layer nobody calls: named once on every rank, no hang, no error; it gets a zero gradient
// (plain SGD leaves it as it was) and everything else matches one process on both ranks' rows.
TEST(DdpStrategy, AParameterUnusedOnEveryRankIsNamedOnceAndLeftUnchanged) {
  constexpr int kSteps = 2, kRows = 4;
  testing::Chain::Options co;
  co.with_unused = true;
  auto reference = testing::make_chain(1, co);
  const NamedTensors initial = testing::snapshot(reference->state_dict());
  Sgd reference_sgd(reference->named_parameters(), plain_sgd());
  for (int step = 0; step < kSteps; ++step) {
    reference_sgd.zero_grad();
    testing::ChainBatch b0 = testing::chain_batch(30 + 10 * step, kRows);
    testing::ChainBatch b1 = testing::chain_batch(31 + 10 * step, kRows);
    Tensor l0 = cross_entropy(reference->forward(b0.x), b0.labels);
    Tensor l1 = cross_entropy(reference->forward(b1.x), b1.labels);
    mul(add(l0, l1), 0.5).backward();
    reference_sgd.step();
  }

  std::vector<NamedTensors> after(2);
  std::vector<std::vector<std::string>> warnings(2);
  auto errors = testing::run_on_threads(
      2,
      [&](int rank, std::shared_ptr<Communicator> comm) {
        auto model = testing::make_chain(1, co);
        Sgd sgd(model->named_parameters(), plain_sgd());
        ReducerOptions ro;
        ro.first_bucket_bytes = 100;  // [third.bias] launches; later buckets wait for "unused"
        ro.bucket_bytes = 300;
        ro.warn = [&warnings, rank](const std::string& line) { warnings[rank].push_back(line); };
        DdpStrategy strategy(comm, ro);
        strategy.prepare(*model, sgd);
        for (int step = 0; step < kSteps; ++step) {
          sgd.zero_grad();
          testing::ChainBatch cb = testing::chain_batch(30 + 10 * step + rank, kRows);
          Batch b = as_batch(cb, rank, kRows);
          strategy.forward_backward(*model, MicroBatch{&b, step, 0, 1, 1});
          strategy.synchronize(*model);
          strategy.apply_update(*model, sgd);
        }
        after[rank] = testing::snapshot(model->state_dict());
      },
      /*timeout=*/std::chrono::seconds(10));
  for (int r = 0; r < 2; ++r) {
    SCOPED_TRACE("rank " + std::to_string(r));
    ASSERT_FALSE(errors[r]) << testing::error_message(errors[r]);
    EXPECT_LE(testing::max_abs_difference(after[r], reference->state_dict()), 1e-6);
    ASSERT_EQ(warnings[r].size(), 1u);
    const std::string& w = warnings[r][0];
    EXPECT_NE(w.find("ddp rank " + std::to_string(r)), std::string::npos) << w;
    EXPECT_NE(w.find("2 parameter(s)"), std::string::npos) << w;
    EXPECT_NE(w.find("unused.weight, unused.bias"), std::string::npos) << w;
    EXPECT_EQ(w.find("first.weight"), std::string::npos) << w;
  }
  for (size_t i = 0; i < initial.size(); ++i)
    if (initial[i].first.rfind("unused.", 0) == 0)
      testing::expect_bit_identical({after[0][i]}, {initial[i]}, initial[i].first);
  EXPECT_GT(testing::max_abs_difference(after[0], initial), 1e-3);
}

// ----------------------------------------------------------------------------- compression

TEST(DdpStrategy, Bf16AndFp16CompressedBucketsStayCloseToUncompressed) {
  const std::string yaml = testing::small_yaml("mlp", "sgd");
  const std::vector<std::string> few = {"training.max_steps=5"};
  std::vector<RankOutcome> plain = run_ddp(yaml, few, 2);
  ASSERT_FALSE(plain[0].error);
  for (Compression compression : {Compression::kBf16, Compression::kFp16}) {
    SCOPED_TRACE(to_string(compression));
    ReducerOptions o = test_buckets();
    o.compression = compression;
    std::vector<RankOutcome> packed = run_ddp(yaml, few, 2, ddp(o));
    if (packed[0].error) continue;
    EXPECT_EQ(packed[0].result.step, 5);
    double worst = 0;
    for (size_t i = 0; i < plain[0].state.size(); ++i)
      worst = std::max(worst,
                       testing::max_rel_error(packed[0].state[i].second, plain[0].state[i].second));
    EXPECT_LE(worst, 1e-2);
    // Rounded gradients change the result: the compression really ran.
    EXPECT_GT(testing::max_abs_difference(packed[0].state, plain[0].state), 0.0);
  }
}

}  // namespace
}  // namespace tandem
