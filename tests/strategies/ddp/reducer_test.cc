// The DDP reducer on its own: bucket planning (reverse parameter order, first bucket capped at its
// own size), gradients as views into the buckets, the one re-plan from rank 0's observed arrival
// order, and bucket all-reduces launched while backward still has gradients to produce.
#include "strategies/ddp/reducer.h"

#include <gtest/gtest.h>

#include <chrono>
#include <map>

#include "core/nn/models.h"
#include "core/optim/sgd.h"
#include "tests/strategies/ddp/chain_model.h"
#include "tests/strategies/replica_runs.h"

namespace tandem {
namespace {

using testing::Chain;
using testing::chain_batch;
using testing::ChainBatch;
using testing::make_chain;
using Layout = std::vector<std::vector<std::string>>;

Tensor grad_of(const Module& model, const std::string& name) {
  for (const auto& [n, p] : model.named_parameters())
    if (n == name) return p.grad();
  ADD_FAILURE() << "no parameter " << name;
  return Tensor();
}

const float* grad_data(const Module& model, const std::string& name) {
  return static_cast<const float*>(grad_of(model, name).raw_data());
}

// One synchronised step of the reducer: backward of the mean cross-entropy, then finalize.
// Returns when backward() returned (before finalize).
std::chrono::steady_clock::time_point reduce_step(Module& model, Reducer& reducer,
                                                  const ChainBatch& b) {
  reducer.prepare_for_backward(/*sync=*/true);
  cross_entropy(model.forward(b.x), b.labels).backward();
  auto backward_end = std::chrono::steady_clock::now();
  reducer.finalize();
  return backward_end;
}

// The plan the design asks for, computed independently: walk `order`, closing a bucket before a
// parameter that would take it past its cap (first_bytes for the first bucket, bytes after).
Layout greedy_layout(const Module& model, const std::vector<std::string>& order,
                     int64_t first_bytes, int64_t bytes) {
  std::map<std::string, int64_t> size;
  for (const auto& [n, p] : model.named_parameters()) size[n] = p.numel() * 4;
  Layout out(1);
  int64_t used = 0, cap = first_bytes;
  for (const std::string& name : order) {
    if (!out.back().empty() && used + size[name] > cap) {
      out.emplace_back();
      used = 0;
      cap = bytes;
    }
    out.back().push_back(name);
    used += size[name];
  }
  return out;
}

// Records the order in which backward completes each parameter's gradient (hooks registered after
// the reducer's, so they fire in the same order as its own).
std::shared_ptr<std::vector<std::string>> record_arrivals(Module& model) {
  auto arrivals = std::make_shared<std::vector<std::string>>();
  for (const auto& [name, p] : model.named_parameters())
    p.register_post_accumulate_grad_hook(
        [arrivals, n = name](const Tensor&) { arrivals->push_back(n); });
  return arrivals;
}

ReducerOptions small_buckets() {
  ReducerOptions o;
  o.first_bucket_bytes = 100;  // room for one bias (32 bytes), not a weight (256 bytes)
  o.bucket_bytes = 300;        // one weight and one bias
  return o;
}

TEST(Reducer, PlansBucketsInReverseParameterOrderWithTheFirstBucketCappedAtItsOwnSize) {
  auto model = make_chain(1);
  auto comm = InProcessGroup::create(1);
  Reducer reducer(model->named_parameters(), *comm[0], small_buckets());
  const Layout expected = {{"third.bias"},
                           {"third.weight", "second.bias"},
                           {"second.weight", "first.bias"},
                           {"first.weight"}};
  EXPECT_EQ(reducer.bucket_layout(), expected);
  EXPECT_EQ(reducer.num_buckets(), 4);

  // PyTorch's defaults (1 MiB, 25 MiB): this small model fits in one bucket, still reversed.
  auto model2 = make_chain(1);
  Reducer defaults(model2->named_parameters(), *comm[0], ReducerOptions{});
  const Layout one = {
      {"third.bias", "third.weight", "second.bias", "second.weight", "first.bias", "first.weight"}};
  EXPECT_EQ(defaults.bucket_layout(), one);
}

TEST(Reducer, GradientsAreViewsIntoTheirBucketAndBackwardAccumulatesThereInPlace) {
  auto model = make_chain(1), reference = make_chain(1);
  auto comm = InProcessGroup::create(1);
  ReducerOptions o = small_buckets();
  o.rebuild_after_first_step = false;
  Reducer reducer(model->named_parameters(), *comm[0], o);

  // Bucket 1 is [third.weight, second.bias]: one buffer, second.bias right after the 64 floats of
  // third.weight. Different buckets are different buffers.
  ASSERT_TRUE(grad_of(*model, "third.weight").defined());
  EXPECT_EQ(grad_of(*model, "third.weight").storage(), grad_of(*model, "second.bias").storage());
  EXPECT_EQ(grad_data(*model, "second.bias"), grad_data(*model, "third.weight") + 64);
  EXPECT_EQ(grad_data(*model, "first.bias"), grad_data(*model, "second.weight") + 64);
  EXPECT_NE(grad_of(*model, "third.bias").storage(), grad_of(*model, "third.weight").storage());
  std::map<std::string, const float*> before;
  for (const auto& [n, p] : model->named_parameters()) before[n] = grad_data(*model, n);

  const ChainBatch b = chain_batch(5, 6);
  reduce_step(*model, reducer, b);
  cross_entropy(reference->forward(b.x), b.labels).backward();

  // Backward wrote into the buckets (no grad was replaced), and with one rank the average is the
  // gradient itself, bit for bit.
  for (const auto& [n, p] : model->named_parameters()) {
    SCOPED_TRACE(n);
    EXPECT_EQ(grad_data(*model, n), before[n]);
    Tensor expected = grad_of(*reference, n);
    ASSERT_TRUE(expected.defined());
    EXPECT_EQ(testing::max_abs_difference({{n, p.grad()}}, {{n, expected}}), 0.0);
    EXPECT_GT(testing::max_abs_difference({{n, p.grad()}}, {{n, zeros_like(expected)}}), 0.0);
  }

  // The optimizer's zero_grad keeps the views (zeroes in place).
  SgdOptions so;
  so.lr = 0.1;
  Sgd sgd(model->named_parameters(), so);
  sgd.step();
  sgd.zero_grad();
  for (const auto& [n, p] : model->named_parameters()) {
    EXPECT_EQ(grad_data(*model, n), before[n]) << n;
    for (double v : p.grad().to_vector()) ASSERT_EQ(v, 0.0) << n;
  }
}

TEST(Reducer, AModelThatOutlivesItsReducerRunsBackwardWithoutCallingIntoIt) {
  auto model = make_chain(1), reference = make_chain(1);
  auto comm = InProcessGroup::create(1);
  const ChainBatch b = chain_batch(5, 6);
  {
    Reducer reducer(model->named_parameters(), *comm[0], small_buckets());
    for (const auto& [n, p] : model->named_parameters())
      EXPECT_EQ(p.impl()->post_accumulate_hooks.size(), 1u) << n;
    reduce_step(*model, reducer, b);
  }
  // The reducer is gone: its hooks went with it (else the next backward calls into freed memory).
  for (const auto& [n, p] : model->named_parameters())
    EXPECT_EQ(p.impl()->post_accumulate_hooks.size(), 0u) << n;
  // The model trains on without it: backward accumulates as usual, exactly as a model that never
  // had a reducer.
  for (const auto& [n, p] : model->named_parameters()) Tensor(p.grad()).zero_();
  const ChainBatch b2 = chain_batch(6, 6);
  cross_entropy(model->forward(b2.x), b2.labels).backward();
  cross_entropy(reference->forward(b2.x), b2.labels).backward();
  for (const auto& [n, p] : model->named_parameters())
    EXPECT_EQ(testing::max_abs_difference({{n, p.grad()}}, {{n, grad_of(*reference, n)}}), 0.0)
        << n;
}

TEST(Reducer, ReplansOnceFromTheOrderGradientsArrivedInTheFirstStep) {
  auto model = make_chain(1), reference = make_chain(1);
  auto comm = InProcessGroup::create(1);
  Reducer reducer(model->named_parameters(), *comm[0], small_buckets());
  const Layout initial = reducer.bucket_layout();
  auto arrivals = record_arrivals(*model);

  const ChainBatch b = chain_batch(5, 6);
  reduce_step(*model, reducer, b);
  cross_entropy(reference->forward(b.x), b.labels).backward();

  // The forward runs third -> second -> first, so backward completes first's gradients first:
  // the opposite of the initial plan.
  ASSERT_EQ(arrivals->size(), 6u);
  EXPECT_EQ(arrivals->front().rfind("first.", 0), 0u) << arrivals->front();
  EXPECT_EQ(arrivals->back().rfind("third.", 0), 0u) << arrivals->back();
  const Layout expected = greedy_layout(*model, *arrivals, 100, 300);
  EXPECT_NE(expected, initial);
  EXPECT_EQ(reducer.bucket_layout(), expected);

  // The gradients survived the re-plan, now as views into the new buckets (consecutive members of
  // a bucket are consecutive in one buffer).
  for (const auto& bucket : expected)
    for (size_t j = 1; j < bucket.size(); ++j)
      EXPECT_EQ(grad_data(*model, bucket[j]),
                grad_data(*model, bucket[j - 1]) + grad_of(*model, bucket[j - 1]).numel())
          << bucket[j];
  for (const auto& [n, p] : model->named_parameters())
    EXPECT_EQ(testing::max_abs_difference({{n, p.grad()}}, {{n, grad_of(*reference, n)}}), 0.0)
        << n;

  // Once only: a second step keeps the plan.
  for (const auto& [n, p] : model->named_parameters()) Tensor(p.grad()).zero_();
  reduce_step(*model, reducer, chain_batch(6, 6));
  EXPECT_EQ(reducer.bucket_layout(), expected);
}

TEST(Reducer, EveryRankAdoptsRankZerosArrivalOrderWhenTheyDisagree) {
  // Rank 1 runs its layers in registration order, so its gradients arrive third.* first; the
  // re-plan must still follow rank 0's order on both ranks (or their buckets would not match).
  std::vector<Layout> layouts(2);
  std::vector<std::vector<std::string>> arrivals(2);
  auto errors = testing::run_on_threads(2, [&](int rank, std::shared_ptr<Communicator> comm) {
    Chain::Options co;
    co.registration_order = rank == 1;
    auto model = make_chain(1, co);
    Reducer reducer(model->named_parameters(), *comm, small_buckets());
    auto seen = record_arrivals(*model);
    reduce_step(*model, reducer, chain_batch(10 + rank, 4));
    arrivals[rank] = *seen;
    layouts[rank] = reducer.bucket_layout();
  });
  for (int r = 0; r < 2; ++r) ASSERT_FALSE(errors[r]) << testing::error_message(errors[r]);
  ASSERT_EQ(arrivals[0].size(), 6u);
  EXPECT_EQ(arrivals[1].front().rfind("third.", 0), 0u) << arrivals[1].front();
  EXPECT_NE(arrivals[0], arrivals[1]);
  auto model = make_chain(1);
  const Layout expected = greedy_layout(*model, arrivals[0], 100, 300);
  EXPECT_EQ(layouts[0], expected);
  EXPECT_EQ(layouts[1], expected);
}

// mlp 64-16-16-10: backward produces the last layer's gradients first, in the initial plan's
// order. With small buckets the first all-reduce must start while most gradients are pending.
TEST(Reducer, LaunchesBucketAllReducesWhileBackwardStillHasGradientsToProduce) {
  std::vector<std::vector<BucketLaunch>> logs(2), logs_after_replan(2);
  std::vector<Layout> layouts(2);
  std::vector<std::chrono::steady_clock::time_point> backward_end(2);
  auto errors = testing::run_on_threads(2, [&](int rank, std::shared_ptr<Communicator> comm) {
    ModelOptions mo;
    mo.mlp_in_features = 64;
    mo.mlp_hidden = {16, 16};
    Generator gen(3, 0);
    auto model = make_model("mlp", mo, gen);
    ReducerOptions o;
    o.first_bucket_bytes = 64;  // 5.bias (40 bytes) alone
    o.bucket_bytes = 1100;      // up to 3.weight (1024 bytes) and a bias
    Reducer reducer(model->named_parameters(), *comm, o);
    Generator data(20 + rank, 0);
    ChainBatch b{randn({4, 64}, data), from_vector({1, 2, 3, 4}, {4}, DType::kI64)};
    backward_end[rank] = reduce_step(*model, reducer, b);
    logs[rank] = reducer.launch_log();
    for (const auto& [n, p] : model->named_parameters()) Tensor(p.grad()).zero_();
    reduce_step(*model, reducer, b);
    logs_after_replan[rank] = reducer.launch_log();
    layouts[rank] = reducer.bucket_layout();
  });
  for (int r = 0; r < 2; ++r) ASSERT_FALSE(errors[r]) << testing::error_message(errors[r]);
  for (int r = 0; r < 2; ++r) {
    SCOPED_TRACE("rank " + std::to_string(r));
    const auto& log = logs[r];
    ASSERT_GE(log.size(), 3u);
    for (size_t k = 0; k < log.size(); ++k) EXPECT_EQ(log[k].bucket, static_cast<int>(k));
    EXPECT_GE(log.front().params_pending, 4) << "the first bucket waited for most of backward";
    EXPECT_LT(log.front().at, backward_end[r]) << "the first all-reduce started inside backward";
    EXPECT_EQ(log.back().params_pending, 0);

    // After the re-plan each bucket launches the moment its last gradient arrives: exactly the
    // parameters of the later buckets are still pending.
    const auto& after = logs_after_replan[r];
    ASSERT_EQ(after.size(), layouts[r].size());
    int later = 6;
    for (size_t k = 0; k < after.size(); ++k) {
      later -= static_cast<int>(layouts[r][k].size());
      EXPECT_EQ(after[k].params_pending, later) << "bucket " << k;
    }
  }
}

}  // namespace
}  // namespace tandem
