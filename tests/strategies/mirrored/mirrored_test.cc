// The mirrored strategy through the real Trainer: two replicas on the threads of the OpenMP team,
// each on half of the batch, must compute what one replica computes on the whole batch (dropout
// included: masks are keyed by global sample position), and do so reproducibly.
#include "strategies/mirrored/mirrored_strategy.h"

#include <gtest/gtest.h>

#include "strategies/trainer/builders.h"
#include "tests/strategies/replica_runs.h"

namespace tandem {
namespace {

using testing::RankOutcome;

RankOutcome run_mirrored(const std::string& yaml, int replicas,
                         std::vector<std::string> overrides = {}) {
  overrides.push_back("strategy.name=mirrored");
  overrides.push_back("strategy.replicas=" + std::to_string(replicas));
  ExperimentConfig cfg = testing::make_config(yaml, testing::temp_dir(), overrides);
  auto make_replica = [cfg] { return build_model(cfg, *build_dataset(cfg, "train")); };
  std::ostringstream out, err;
  Trainer trainer(cfg, std::make_unique<MirroredStrategy>(replicas, make_replica),
                  RunEnvironment{&out, &err, false, "testhost"});
  RankOutcome o;
  o.result = trainer.run();
  o.state = testing::snapshot(trainer.model().state_dict());
  return o;
}

void expect_mirrored_matches_single(const std::string& model, const std::string& optimizer) {
  SCOPED_TRACE(model + " " + optimizer);
  const std::string yaml = testing::small_yaml(model, optimizer);
  const RankOutcome single = testing::run_single(yaml, {});
  const RankOutcome mirrored = run_mirrored(yaml, 2);
  ASSERT_EQ(single.result.step, 20);
  ASSERT_EQ(mirrored.result.step, 20);
  ExperimentConfig cfg = testing::make_config(yaml, testing::temp_dir(), {});
  NamedTensors init = build_model(cfg, *build_dataset(cfg, "train"))->state_dict();
  EXPECT_GT(testing::max_abs_difference(init, single.state), 1e-3);
  EXPECT_LE(testing::max_abs_difference(mirrored.state, single.state), 1e-5);
  EXPECT_NEAR(mirrored.result.train_loss, single.result.train_loss, 1e-5);
}

TEST(MirroredStrategy, TwoReplicasMatchOneReplicaOnMlpWithSgdMomentumAndAdam) {
  expect_mirrored_matches_single("mlp", "sgd");
  expect_mirrored_matches_single("mlp", "adam");
}

// lenet has dropout 0.4: each replica must draw the masks one replica draws for its rows.
TEST(MirroredStrategy, TwoReplicasMatchOneReplicaOnLenetWithDropout) {
  expect_mirrored_matches_single("lenet", "sgd");
  expect_mirrored_matches_single("lenet", "adam");
}

TEST(MirroredStrategy, TwoRunsAreBitIdentical) {
  const std::string yaml = testing::small_yaml("lenet", "adam");
  const RankOutcome a = run_mirrored(yaml, 2), b = run_mirrored(yaml, 2);
  testing::expect_bit_identical(a.state, b.state, "run a vs run b");
  EXPECT_EQ(a.result.train_loss, b.result.train_loss);
}

TEST(MirroredStrategy, RejectsABatchThatDoesNotSplitEvenlyOverTheReplicas) {
  const std::string yaml = testing::small_yaml("mlp", "sgd");
  try {
    run_mirrored(yaml, 3);
    FAIL() << "8 rows do not split over 3 replicas";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("data.batch_size"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace tandem
