// The step simulation on hand-computed timelines: one bucket after backward, buckets hidden under
// backward but the last, buckets queueing behind each other, the slowest of G ranks, Horovod's
// fusion cycle; and the bucket plan against the DDP reducer's own on a real model.
#include "launcher/scaling/step_model.h"

#include <gtest/gtest.h>

#include <cmath>

#include "collectives/inprocess/inprocess_group.h"
#include "core/nn/models.h"
#include "strategies/ddp/reducer.h"

namespace tandem::scaling {
namespace {

// One node of 4 ranks, 80 Gbit/s (1e7 bytes per ms), no latency: a ring all-reduce of S bytes
// takes 2*3/4 * S / 1e7 ms = 1.5e-7 * S ms (20e6 bytes: 3 ms; 1e6 bytes: 0.15 ms).
ClusterSpec four_ranks() {
  ClusterSpec c;
  c.nodes = 1;
  c.procs_per_node = 4;
  c.intra_gbps = 80;
  c.latency_us = 0;
  c.bandwidth_efficiency = 1;
  return c;
}

ComputeProfile profile(double data, double forward, double backward, double optimizer,
                       std::vector<double> ready_ms) {
  ComputeProfile p;
  p.data_ms = data;
  p.forward_ms = forward;
  p.backward_ms = backward;
  p.optimizer_ms = optimizer;
  p.ready_ms = std::move(ready_ms);
  p.batch_per_gpu = 8;
  return p;
}

TEST(StepModel, OneBucketAfterBackwardIsFullyExposed) {
  const std::vector<GradientTensor> grads = {{"fc.weight", 20'000'000}};
  const StepPrediction p = predict_step(profile(1, 10, 20, 2, {20}), grads, four_ranks(),
                                        Algorithm::kRing, FusionPolicy());
  // data 1 + forward 10 + backward 20, then the 3 ms all-reduce, then the optimizer's 2.
  EXPECT_NEAR(p.step_ms, 36, 1e-9);
  EXPECT_NEAR(p.compute_ms, 33, 1e-9);
  EXPECT_NEAR(p.exposed_comm_ms, 3, 1e-9);
  EXPECT_NEAR(p.comm_ms, 3, 1e-9);
  EXPECT_EQ(p.collectives, 1);
  EXPECT_EQ(p.gpus, 4);
  EXPECT_NEAR(p.efficiency, 33.0 / 36.0, 1e-12);
  EXPECT_NEAR(p.samples_per_s, 4 * 8 * 1000.0 / 36.0, 1e-9);
}

TEST(StepModel, WithoutOverlapEveryBucketWaitsForTheEndOfBackward) {
  // fc is ready 2 ms into backward, but --no-overlap holds it to the end: the same 36 ms.
  const std::vector<GradientTensor> grads = {{"fc.weight", 20'000'000}};
  FusionPolicy policy;
  policy.overlap = false;
  const StepPrediction p =
      predict_step(profile(1, 10, 20, 2, {2}), grads, four_ranks(), Algorithm::kRing, policy);
  EXPECT_NEAR(p.step_ms, 36, 1e-9);
  policy.overlap = true;
  EXPECT_NEAR(
      predict_step(profile(1, 10, 20, 2, {2}), grads, four_ranks(), Algorithm::kRing, policy)
          .step_ms,
      33, 1e-9);
}

TEST(StepModel, PerfectOverlapHidesEveryBucketButTheLast) {
  // fc (20e6 bytes, ready 2 ms into backward) fills the first bucket alone; conv (1e6, ready at the
  // end) the second. Backward starts at 11: fc reduces 13..16, hidden; conv 31..31.15, exposed.
  const std::vector<GradientTensor> grads = {{"conv.weight", 1'000'000}, {"fc.weight", 20'000'000}};
  const StepPrediction p = predict_step(profile(1, 10, 20, 2, {20, 2}), grads, four_ranks(),
                                        Algorithm::kRing, FusionPolicy());
  EXPECT_EQ(p.collectives, 2);
  EXPECT_NEAR(p.comm_ms, 3.15, 1e-9);
  EXPECT_NEAR(p.exposed_comm_ms, 0.15, 1e-9);
  EXPECT_NEAR(p.step_ms, 33.15, 1e-9);
  EXPECT_NEAR(p.efficiency, 33.0 / 33.15, 1e-12);
}

TEST(StepModel, BucketsQueueBehindThePreviousAllReduce) {
  // Three 20e6-byte tensors ready 1, 2 and 3 ms into a 5 ms backward that starts at 10. The first
  // bucket (1 MiB cap) and each 25 MiB bucket hold one tensor: 3 ms each, back to back from 11:
  // 11-14, 14-17, 17-20. Backward ends at 15, so 5 ms are exposed.
  const std::vector<GradientTensor> grads = {
      {"a.weight", 20'000'000}, {"b.weight", 20'000'000}, {"c.weight", 20'000'000}};
  const StepPrediction p = predict_step(profile(0, 10, 5, 0, {3, 2, 1}), grads, four_ranks(),
                                        Algorithm::kRing, FusionPolicy());
  EXPECT_EQ(p.collectives, 3);
  EXPECT_NEAR(p.step_ms, 20, 1e-9);
  EXPECT_NEAR(p.exposed_comm_ms, 5, 1e-9);
}

TEST(StepModel, CompressionHalvesTheBytesOnTheWire) {
  const std::vector<GradientTensor> grads = {{"fc.weight", 20'000'000}};
  FusionPolicy policy;
  policy.wire_bytes_per_byte = 0.5;
  const StepPrediction p =
      predict_step(profile(1, 10, 20, 2, {20}), grads, four_ranks(), Algorithm::kRing, policy);
  EXPECT_NEAR(p.comm_ms, 1.5, 1e-9);
  EXPECT_NEAR(p.step_ms, 34.5, 1e-9);
}

TEST(StepModel, ExpectedMaximumOfNormalsMatchesClosedForms) {
  EXPECT_EQ(expected_max_normal(1), 0);
  EXPECT_NEAR(expected_max_normal(2), 1 / std::sqrt(M_PI), 1e-9);    // 0.5642
  EXPECT_NEAR(expected_max_normal(3), 1.5 / std::sqrt(M_PI), 1e-9);  // 0.8463
  EXPECT_NEAR(expected_max_normal(5), 1.1629644736, 1e-8);           // tabulated
}

TEST(StepModel, TheSlowestOfGRanksStretchesCompute) {
  // Two ranks, compute varying 10% between steps: the slower of two is 1 + 0.1 / sqrt(pi) times
  // the profile. The one all-reduce (1e6 bytes, ring of 2: 1e6 / 1e7 = 0.1 ms) follows backward.
  ClusterSpec c = four_ranks();
  c.procs_per_node = 2;
  ComputeProfile prof = profile(0, 10, 20, 0, {20});
  prof.compute_cv = 0.1;
  const std::vector<GradientTensor> grads = {{"fc.weight", 1'000'000}};
  const StepPrediction p = predict_step(prof, grads, c, Algorithm::kRing, FusionPolicy());
  const double stretch = 1 + 0.1 / std::sqrt(M_PI);
  EXPECT_NEAR(p.straggler_ms, 30 * (stretch - 1), 1e-8);
  EXPECT_NEAR(p.step_ms, 30 * stretch + 0.1, 1e-8);
  EXPECT_NEAR(p.efficiency, 30 / (30 * stretch + 0.1), 1e-9);
}

TEST(StepModel, HorovodCycleFusesWhatIsReadyAtEachTick) {
  // a, b, c of 10e6 bytes each, ready 12, 2 and 1 ms into a 15 ms backward starting at 10.
  // Ticks every 5 ms from 10: at 15, c and b are ready -> one fused 20e6-byte all-reduce, 15-18;
  // at 20 nothing new; at 25, a -> 25-26.5. Backward ends at 25: 1.5 ms exposed.
  const std::vector<GradientTensor> grads = {
      {"a.weight", 10'000'000}, {"b.weight", 10'000'000}, {"c.weight", 10'000'000}};
  FusionPolicy horovod;
  horovod.cycle_ms = 5;
  horovod.bucket_bytes = 64 << 20;
  const ComputeProfile prof = profile(0, 10, 15, 0, {12, 2, 1});
  const StepPrediction p = predict_step(prof, grads, four_ranks(), Algorithm::kRing, horovod);
  EXPECT_EQ(p.collectives, 2);
  EXPECT_NEAR(p.comm_ms, 4.5, 1e-9);
  EXPECT_NEAR(p.step_ms, 26.5, 1e-9);
  EXPECT_NEAR(p.exposed_comm_ms, 1.5, 1e-9);
  // tandem's static buckets: c alone (the 1 MiB first bucket), 11-12.5; b + a (20e6 <= 25 MiB)
  // once a is ready at 22, 22-25: nothing exposed.
  const StepPrediction s =
      predict_step(prof, grads, four_ranks(), Algorithm::kRing, FusionPolicy());
  EXPECT_EQ(s.collectives, 2);
  EXPECT_NEAR(s.step_ms, 25, 1e-9);
  EXPECT_NEAR(s.exposed_comm_ms, 0, 1e-9);
}

TEST(StepModel, UniformReadinessGoesLayerByLayerFromTheEnd) {
  const std::vector<GradientTensor> grads = {
      {"conv1.weight", 4}, {"bn1.weight", 4}, {"bn1.bias", 4}, {"fc.weight", 4}, {"fc.bias", 4}};
  // Layers from the end: fc, bn1, conv1 -> 10, 20, 30 ms of a 30 ms backward.
  EXPECT_EQ(uniform_layer_ready_ms(grads, 30), (std::vector<double>{30, 20, 20, 10, 10}));
}

TEST(StepModel, BucketPlanMatchesTheReducersOnResNet50) {
  ModelOptions mo;
  mo.in_channels = 3;
  mo.num_classes = 1000;
  Generator gen(0, 0);
  std::shared_ptr<Module> model = make_model("resnet50", mo, gen);
  std::vector<GradientTensor> grads;
  for (const auto& [name, p] : model->named_parameters())
    grads.push_back({name, p.numel() * 4, p.dtype()});
  auto comm = InProcessGroup::create(1);
  for (auto [first_mb, bucket_mb] : {std::pair{1, 25}, std::pair{1, 100}, std::pair{4, 5}}) {
    ReducerOptions ro;
    ro.first_bucket_bytes = int64_t{first_mb} << 20;
    ro.bucket_bytes = int64_t{bucket_mb} << 20;
    Reducer reducer(model->named_parameters(), *comm[0], ro);
    FusionPolicy policy;
    policy.first_bucket_bytes = ro.first_bucket_bytes;
    policy.bucket_bytes = ro.bucket_bytes;
    std::vector<std::vector<std::string>> planned;
    for (const std::vector<int>& bucket :
         plan_reducer_buckets(grads, uniform_layer_ready_ms(grads, 1.0), policy)) {
      planned.emplace_back();
      for (int i : bucket) planned.back().push_back(grads[i].name);
    }
    EXPECT_EQ(planned, reducer.bucket_layout()) << first_mb << "/" << bucket_mb << " MiB";
    // 25 MiB: resnet50's 97.5 MiB of f32 gradients in 6 all-reduces; the first holds fc.bias
    // alone (fc.weight, 7.8 MiB, would overflow the 1 MiB first bucket).
    if (bucket_mb == 25) {
      EXPECT_EQ(planned.size(), 6u);
      EXPECT_EQ(planned[0], (std::vector<std::string>{"fc.bias"}));
    }
  }
}

}  // namespace
}  // namespace tandem::scaling
