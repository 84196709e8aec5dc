// The trainer with a validation split: val metrics after every epoch, early stopping decided from
// them (and the same after a restart), and the best checkpoint kept beside checkpoint.keep's.
// The trainer's decisions are checked against the Keras rules applied here, independently, to the
// values it logged in metrics.jsonl.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/io/checkpoint.h"
#include "strategies/single/single_strategy.h"
#include "strategies/trainer/trainer.h"
#include "tests/support/test_support.h"

namespace tandem {
namespace {

namespace fs = std::filesystem;

// A tiny MLP on 1x8x8 noise (random labels, so it overfits): 256 samples, a quarter held out ->
// 192 training samples, batch 8 -> 24 steps per epoch.
ExperimentConfig experiment(const std::string& dir, const std::vector<std::string>& overrides) {
  std::string yaml = R"(
seed: 5
model: {name: mlp, hidden: [64]}
data: {name: synthetic, synthetic_shape: [1, 8, 8], synthetic_samples: 256, batch_size: 8,
       workers: 0, validation_fraction: 0.25}
optimizer: {name: sgd, lr: 0.1, momentum: 0.9}
training: {epochs: 12, threads: 1, eval_every_epoch: false}
checkpoint: {dir: '@DIR@/checkpoints', every_steps: 0, keep: 1}
logging: {dir: '@DIR@/logs', progress: none, tensorboard: false}
)";
  for (size_t at; (at = yaml.find("@DIR@")) != std::string::npos;) yaml.replace(at, 5, dir);
  return parse_config(yaml, "validation_test.yaml", overrides);
}

struct Captured {
  std::ostringstream out, err;
  RunEnvironment env() { return RunEnvironment{&out, &err, false, "testhost"}; }
};

// The values of `tag` in metrics.jsonl, in order.
std::vector<double> logged(const std::string& dir, const std::string& tag) {
  std::ifstream in(dir + "/logs/metrics.jsonl");
  std::vector<double> v;
  for (std::string line; std::getline(in, line);) {
    nlohmann::json j = nlohmann::json::parse(line);
    if (j.contains(tag)) v.push_back(j[tag].get<double>());
  }
  return v;
}

std::vector<std::string> entries(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

constexpr int64_t kStepsPerEpoch = 24;

TEST(TrainerValidation, KeepBestKeepsTheBestEpochsCheckpointBesideKeepOne) {
  const std::string dir = testing::temp_dir();
  Captured c;
  Trainer trainer(experiment(dir, {"training.epochs=5", "checkpoint.keep_best=val_accuracy"}),
                  std::make_unique<SingleStrategy>(), c.env());
  const TrainResult r = trainer.run();
  EXPECT_EQ(r.step, 5 * kStepsPerEpoch);
  const std::vector<double> acc = logged(dir, "val/accuracy");
  ASSERT_EQ(acc.size(), 5u) << "val/accuracy after every epoch";
  for (double a : acc) EXPECT_DOUBLE_EQ(a * 64, std::round(a * 64)) << "64 held-out samples";
  EXPECT_EQ(logged(dir, "val/loss").size(), 5u);
  // ModelCheckpoint(save_best_only): the first epoch of the strictly best value.
  size_t best = 0;
  for (size_t e = 1; e < acc.size(); ++e)
    if (acc[e] > acc[best]) best = e;
  EXPECT_EQ(entries(dir + "/checkpoints"), (std::vector<std::string>{"best", "step-00000120"}));
  const LoadedCheckpoint ck = load_checkpoint(dir + "/checkpoints/best");
  EXPECT_EQ(ck.state.step, static_cast<int64_t>(best + 1) * kStepsPerEpoch);
  EXPECT_DOUBLE_EQ(ck.state.extra["keep_best"]["best"].get<double>(), acc[best]);
  // resume: auto takes the newest step-*, never best/.
  EXPECT_EQ(*find_latest_checkpoint(dir + "/checkpoints"), dir + "/checkpoints/step-00000120");
}

// The epoch after which Keras' EarlyStopping(val_loss, patience, min_delta 0) stops; 0 if never.
int64_t keras_stop_epoch(const std::vector<double>& loss, int patience) {
  double best = INFINITY;
  int wait = 0;
  for (size_t e = 0; e < loss.size(); ++e) {
    if (loss[e] < best) {
      best = loss[e];
      wait = 0;
    } else if (++wait >= patience) {
      return static_cast<int64_t>(e) + 1;
    }
  }
  return 0;
}

TEST(TrainerValidation, EarlyStoppingStopsWhereKerasWouldAndAgainAfterARestart) {
  const std::vector<std::string> es = {"training.early_stopping.metric=val_loss",
                                       "training.early_stopping.patience=2"};
  const std::string straight = testing::temp_dir() + "/straight";
  Captured c;
  Trainer a(experiment(straight, es), std::make_unique<SingleStrategy>(), c.env());
  const TrainResult r = a.run();
  const std::vector<double> loss = logged(straight, "val/loss");
  const int64_t expected = keras_stop_epoch(loss, 2);
  ASSERT_GT(expected, 0) << "the noise-fitting MLP was expected to overfit within 12 epochs";
  EXPECT_TRUE(r.early_stopping);
  EXPECT_FALSE(r.stopped_early) << "early stopping is a normal end, not an interruption";
  EXPECT_EQ(r.epoch, expected);
  EXPECT_EQ(r.step, expected * kStepsPerEpoch);
  EXPECT_EQ(static_cast<int64_t>(loss.size()), expected);
  EXPECT_NE(c.out.str().find("early stopping: val_loss has not improved"), std::string::npos)
      << c.out.str();

  // Interrupted after the epoch before the stop, then resumed: the record in trainer_state.json
  // carries the count on, so it stops after the same epoch.
  const std::string resumed = testing::temp_dir() + "/resumed";
  Captured c1, c2;
  Trainer first(experiment(resumed, es), std::make_unique<SingleStrategy>(), c1.env());
  EXPECT_TRUE(first.run((expected - 1) * kStepsPerEpoch).stopped_early);
  Trainer second(experiment(resumed, es), std::make_unique<SingleStrategy>(), c2.env());
  const TrainResult r2 = second.run();
  EXPECT_TRUE(r2.early_stopping);
  EXPECT_EQ(r2.step, r.step);
  // A third start finds the run finished and trains no further.
  Captured c3;
  Trainer third(experiment(resumed, es), std::make_unique<SingleStrategy>(), c3.env());
  EXPECT_EQ(third.run().step, r.step);
}

TEST(TrainerValidation, EarlyStoppingWithoutAValidationSplitIsAConfigErrorNamingTheKey) {
  const std::string dir = testing::temp_dir();
  try {
    experiment(dir, {"data.validation_fraction=0", "training.early_stopping.metric=val_loss"});
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("training.early_stopping.metric"), std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("data.validation_fraction"), std::string::npos);
  }
}

}  // namespace
}  // namespace tandem
