// The trainer driven directly, with experiments written in code (parse_config) on synthetic data
// small enough that each test runs in a second or two: exact resume, the NaN/Inf policy, gradient
// accumulation, metrics and TensorBoard files, checkpoint rotation and fallback, init_from.
#include "strategies/trainer/trainer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

#include "core/base/error.h"
#include "core/io/checkpoint.h"
#include "core/io/crc32c.h"
#include "core/io/safetensors.h"
#include "core/metrics/tensorboard_event.pb.h"
#include "core/nn/models.h"
#include "core/random/philox.h"
#include "strategies/single/single_strategy.h"
#include "strategies/trainer/builders.h"
#include "tests/support/test_support.h"

namespace tandem {
namespace {

namespace fs = std::filesystem;

// The experiment text with every "@DIR@" replaced by dir.
std::string in_dir(std::string yaml, const std::string& dir) {
  for (size_t at; (at = yaml.find("@DIR@")) != std::string::npos;) yaml.replace(at, 5, dir);
  return yaml;
}

// A tiny MLP on 1x8x8 noise: 256 training samples, batch 8 -> 32 steps per epoch.
std::string mlp_yaml(const std::string& dir) {
  return in_dir(R"(
seed: 3
model: {name: mlp, hidden: [16]}
data: {name: synthetic, synthetic_shape: [1, 8, 8], synthetic_samples: 256, batch_size: 8, workers: 0}
optimizer: {name: sgd, lr: 0.05, momentum: 0.9}
training: {epochs: 1, threads: 1}
checkpoint: {dir: '@DIR@/checkpoints', every_steps: 0, resume: never}
logging: {dir: '@DIR@/logs', progress: none, tensorboard: false}
)",
                dir);
}

ExperimentConfig config(const std::string& yaml, const std::vector<std::string>& overrides = {}) {
  return parse_config(yaml, "trainer_test.yaml", overrides);
}

struct Captured {
  std::ostringstream out, err;
  RunEnvironment env() { return RunEnvironment{&out, &err, false, "testhost"}; }
};

// Same names in the same order, same dtype and shape, and the same bytes.
void expect_bit_identical(const NamedTensors& a, const NamedTensors& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i) {
    SCOPED_TRACE(what + " " + a[i].first);
    ASSERT_EQ(a[i].first, b[i].first);
    const Tensor x = a[i].second.contiguous(), y = b[i].second.contiguous();
    ASSERT_EQ(x.dtype(), y.dtype());
    ASSERT_EQ(x.shape(), y.shape());
    const size_t bytes = static_cast<size_t>(x.numel()) * dtype_size(x.dtype());
    if (std::memcmp(x.raw_data(), y.raw_data(), bytes) != 0) {
      const std::vector<double> u = x.to_vector(), v = y.to_vector();
      size_t k = 0;
      while (k < u.size() && std::memcmp(&u[k], &v[k], sizeof(double)) == 0) ++k;
      ADD_FAILURE() << "bytes differ, first at element " << k << ": " << (k < u.size() ? u[k] : 0)
                    << " vs " << (k < v.size() ? v[k] : 0);
    }
  }
}

bool all_finite(const NamedTensors& tensors) {
  for (const auto& [name, t] : tensors)
    for (double v : t.to_vector())
      if (!std::isfinite(v)) return false;
  return true;
}

double max_abs_difference(const NamedTensors& a, const NamedTensors& b) {
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    std::vector<double> x = a[i].second.to_vector(), y = b[i].second.to_vector();
    for (size_t j = 0; j < x.size(); ++j) worst = std::max(worst, std::abs(x[j] - y[j]));
  }
  return worst;
}

std::vector<std::string> step_dirs(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

// ------------------------------------------------------------------------------- exact resume

// simple_cnn (dropout 0.5) on 3x16x16 noise, Adam with weight decay, cosine schedule with warm-up:
// every kind of state a resume has to restore. 256 samples, batch 4 -> 64 steps per epoch, so 200
// steps cross three epoch boundaries and the stop at step 100 falls mid-epoch.
std::string resume_yaml(const std::string& dir) {
  return in_dir(R"(
seed: 7
model: {name: simple_cnn}
data: {name: synthetic, synthetic_shape: [3, 16, 16], synthetic_samples: 256, batch_size: 4, workers: 1}
optimizer: {name: adam, lr: 0.001, weight_decay: 0.0001}
schedule: {name: cosine, warmup_steps: 20, min_lr: 0.00001}
training: {epochs: 4, max_steps: 200, threads: 1}
checkpoint: {dir: '@DIR@/checkpoints', every_steps: 100000, keep: 3}
logging: {dir: '@DIR@/logs', every_steps: 50, progress: none, tensorboard: false}
)",
                dir);
}

TEST(Trainer, ResumedRunEndsBitIdenticalToAStraightRun) {
  const std::string dir_a = testing::temp_dir(), dir_b = testing::temp_dir();

  Captured ca;
  Trainer straight(config(resume_yaml(dir_a), {"checkpoint.resume=never"}),
                   std::make_unique<SingleStrategy>(), ca.env());
  TrainResult ra = straight.run();
  EXPECT_EQ(ra.step, 200);
  EXPECT_FALSE(ra.stopped_early);

  Captured cb1;
  Trainer first(config(resume_yaml(dir_b)), std::make_unique<SingleStrategy>(), cb1.env());
  TrainResult rb1 = first.run(/*stop_at_step=*/100);
  EXPECT_TRUE(rb1.stopped_early);
  EXPECT_EQ(rb1.step, 100);
  EXPECT_EQ(cb1.out.str().find("final:"), std::string::npos)
      << "a stopped run prints no final line";
  ASSERT_TRUE(fs::exists(dir_b + "/checkpoints/step-00000100"));

  Captured cb2;
  Trainer second(config(resume_yaml(dir_b)), std::make_unique<SingleStrategy>(), cb2.env());
  TrainResult rb2 = second.run();
  EXPECT_NE(cb2.out.str().find("resumed from " + dir_b + "/checkpoints/step-00000100 (step 100"),
            std::string::npos)
      << cb2.out.str();
  EXPECT_EQ(cb2.err.str(), "") << "same config: no digest warning";
  EXPECT_EQ(rb2.step, 200);
  EXPECT_EQ(rb2.epoch, ra.epoch);

  // The parameters moved away from their initial values, so agreeing means something.
  ExperimentConfig cfg = config(resume_yaml(dir_a));
  NamedTensors init = build_model(cfg, *build_dataset(cfg, "train"))->state_dict();
  EXPECT_GT(max_abs_difference(init, straight.model().state_dict()), 1e-3);

  expect_bit_identical(straight.model().state_dict(), second.model().state_dict(), "model");
  expect_bit_identical(straight.optimizer().state_dict(), second.optimizer().state_dict(),
                       "optimizer");
  EXPECT_EQ(straight.optimizer().lr(), second.optimizer().lr());
  EXPECT_EQ(straight.optimizer().step_count(), 200);
  EXPECT_EQ(second.optimizer().step_count(), 200);
  EXPECT_EQ(ra.test_loss, rb2.test_loss);
  EXPECT_EQ(ra.test_accuracy, rb2.test_accuracy);
}

// ---------------------------------------------------------------------------- NaN/Inf policy

// lr = 1e30: the first update leaves finite but huge weights, whose logits then overflow, so the
// loss turns non-finite a step or two later and stays so.
TEST(Trainer, DivergingLossStopsWithAnErrorAfterMaxNonfiniteStepsAndSkipsTheirUpdates) {
  const std::string dir = testing::temp_dir();
  const std::vector<std::string> diverge = {"optimizer.lr=1e30", "optimizer.momentum=0",
                                            "training.max_nonfinite_steps=3",
                                            "training.max_steps=30"};
  Captured c;
  Trainer trainer(config(mlp_yaml(dir), diverge), std::make_unique<SingleStrategy>(), c.env());
  try {
    trainer.run();
    FAIL() << "a diverging run must throw";
  } catch (const ConfigError& e) {
    FAIL() << "divergence is a runtime failure, not a config error: " << e.what();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("non-finite"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("3 steps in a row"), std::string::npos) << e.what();
  }

  // Exactly three warnings, for three consecutive steps.
  std::regex warning(R"(warning: step (\d+): non-finite loss)");
  std::vector<int64_t> skipped;
  const std::string err = c.err.str();
  for (auto it = std::sregex_iterator(err.begin(), err.end(), warning);
       it != std::sregex_iterator(); ++it)
    skipped.push_back(std::stoll((*it)[1]));
  ASSERT_EQ(skipped.size(), 3u) << err;
  EXPECT_EQ(skipped[1], skipped[0] + 1);
  EXPECT_EQ(skipped[2], skipped[0] + 2);
  const int64_t last_good = skipped[0] - 1;
  ASSERT_GE(last_good, 1) << "the first step of a fresh model should be finite";

  // The same run stopped before the first bad step: its (finite) parameters are what the skipped
  // steps must have left untouched.
  Captured cref;
  std::vector<std::string> until_good = diverge;
  until_good.push_back("training.max_steps=" + std::to_string(last_good));
  Trainer reference(config(mlp_yaml(testing::temp_dir()), until_good),
                    std::make_unique<SingleStrategy>(), cref.env());
  reference.run();
  ASSERT_TRUE(all_finite(reference.model().state_dict()));
  expect_bit_identical(trainer.model().state_dict(), reference.model().state_dict(), "model");
  expect_bit_identical(trainer.optimizer().state_dict(), reference.optimizer().state_dict(),
                       "optimizer");
}

// ---------------------------------------------------------------------- gradient accumulation

// The sampler cuts one permutation of the epoch into consecutive batches, so two micro-batches of
// 8 are exactly the first 16 samples that one batch of 16 takes: the mean loss and its gradient
// are the same, and so is the update.
TEST(Trainer, TwoAccumulatedBatchesOfEightMatchOneBatchOfSixteen) {
  Captured c1, c2;
  const std::vector<std::string> one_step = {"training.max_steps=1",
                                             "training.eval_every_epoch=false"};
  std::vector<std::string> accumulated = one_step, large = one_step;
  accumulated.insert(accumulated.end(), {"data.batch_size=8", "training.accumulate_steps=2"});
  large.insert(large.end(), {"data.batch_size=16", "training.accumulate_steps=1"});
  ExperimentConfig cfg_acc = config(mlp_yaml(testing::temp_dir()), accumulated);
  Trainer acc(cfg_acc, std::make_unique<SingleStrategy>(), c1.env());
  Trainer big(config(mlp_yaml(testing::temp_dir()), large), std::make_unique<SingleStrategy>(),
              c2.env());
  TrainResult ra = acc.run(), rb = big.run();
  EXPECT_EQ(ra.step, 1);
  EXPECT_EQ(rb.step, 1);
  EXPECT_NEAR(ra.train_loss, rb.train_loss, 1e-6);

  NamedTensors init = build_model(cfg_acc, *build_dataset(cfg_acc, "train"))->state_dict();
  const NamedTensors pa = acc.model().state_dict(), pb = big.model().state_dict();
  // lr 0.05 times a gradient of order 0.1: far above the tolerance below.
  EXPECT_GT(max_abs_difference(init, pa), 1e-3);
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i)
    testing::expect_close(pa[i].second, pb[i].second, 1e-6, pa[i].first);
}

// ------------------------------------------------------------------------------------- fp64

// training.precision: fp64 widens the fp32 initial weights, trains in f64 (the saved checkpoint
// holds F64 tensors) and, over 3 SGD steps, agrees with the fp32 run to f32 rounding -- while the
// parameters moved by far more than that.
TEST(Trainer, Fp64TrainsInDoublesFromTheFp32InitialWeightsAndTracksTheFp32Run) {
  Captured c32, c64;
  const std::vector<std::string> steps = {"training.max_steps=3",
                                          "training.eval_every_epoch=false"};
  std::vector<std::string> doubles = steps;
  doubles.push_back("training.precision=fp64");
  const std::string dir64 = testing::temp_dir();
  ExperimentConfig cfg32 = config(mlp_yaml(testing::temp_dir()), steps);
  ExperimentConfig cfg64 = config(mlp_yaml(dir64), doubles);
  NamedTensors init32 = build_model(cfg32, *build_dataset(cfg32, "train"))->state_dict();
  NamedTensors init64 = build_model(cfg64, *build_dataset(cfg64, "train"))->state_dict();
  ASSERT_EQ(init32.size(), init64.size());
  for (size_t i = 0; i < init32.size(); ++i) {
    EXPECT_EQ(init64[i].second.dtype(), DType::kF64) << init64[i].first;
    EXPECT_EQ(init64[i].second.to_vector(), init32[i].second.to_vector()) << init64[i].first;
  }
  Trainer t32(cfg32, std::make_unique<SingleStrategy>(), c32.env());
  Trainer t64(cfg64, std::make_unique<SingleStrategy>(), c64.env());
  TrainResult r32 = t32.run(), r64 = t64.run();
  EXPECT_EQ(r64.step, 3);
  EXPECT_NEAR(r32.train_loss, r64.train_loss, 1e-5);
  const NamedTensors p32 = t32.model().state_dict(), p64 = t64.model().state_dict();
  EXPECT_GT(max_abs_difference(init64, p64), 1e-3);
  EXPECT_LT(max_abs_difference(p32, p64), 1e-5);
  LoadedCheckpoint ck = load_checkpoint(*find_latest_checkpoint(dir64 + "/checkpoints"));
  for (const auto& [name, t] : ck.model) EXPECT_EQ(t.dtype(), DType::kF64) << name;
}

TEST(Trainer, Fp64OnACudaDeviceIsAConfigErrorNamingTheKey) {
  Captured c;
  Trainer t(
      config(mlp_yaml(testing::temp_dir()), {"training.precision=fp64", "training.device=cuda:0"}),
      std::make_unique<SingleStrategy>(), c.env());
  try {
    t.run();
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()),
              "training.precision: 'fp64' runs on the CPU only (training.device is 'cuda:0'); use "
              "fp32 or tf32 on GPUs");
  }
}

// ------------------------------------------------------------------------------ grad clipping

// With plain SGD (no momentum) the update is lr x the clipped gradient, whose norm is grad_clip
// whenever the raw norm is larger: so the parameters move by exactly lr x grad_clip, and the norm
// logged is the raw one, before clipping.
TEST(Trainer, ClippedStepMovesTheParametersByLrTimesTheClipAndLogsTheNormBeforeClipping) {
  const std::string dir = testing::temp_dir();
  Captured c;
  ExperimentConfig cfg =
      config(mlp_yaml(dir),
             {"optimizer.momentum=0", "optimizer.lr=0.1", "training.grad_clip=0.01",
              "training.max_steps=1", "logging.every_steps=1", "training.eval_every_epoch=false"});
  Trainer trainer(cfg, std::make_unique<SingleStrategy>(), c.env());
  ASSERT_EQ(trainer.run().step, 1);

  NamedTensors init = build_model(cfg, *build_dataset(cfg, "train"))->state_dict();
  const NamedTensors after = trainer.model().state_dict();
  double moved_sq = 0;
  for (size_t i = 0; i < init.size(); ++i) {
    std::vector<double> a = init[i].second.to_vector(), b = after[i].second.to_vector();
    for (size_t j = 0; j < a.size(); ++j) moved_sq += (b[j] - a[j]) * (b[j] - a[j]);
  }
  EXPECT_NEAR(std::sqrt(moved_sq), 0.1 * 0.01, 1e-3 * 0.1 * 0.01);

  std::ifstream f(dir + "/logs/metrics.jsonl");
  std::string line;
  ASSERT_TRUE(std::getline(f, line));
  nlohmann::json j = nlohmann::json::parse(line);
  EXPECT_EQ(j.at("step").get<int64_t>(), 1);
  ASSERT_TRUE(j.contains("train/grad_norm")) << line;
  EXPECT_GT(j["train/grad_norm"].get<double>(), 0.05)
      << "a fresh model's gradient is far above the clip";
}

// ------------------------------------------------------------------------------------ metrics

std::vector<nlohmann::json> read_jsonl(const std::string& path) {
  std::vector<nlohmann::json> lines;
  std::ifstream f(path);
  for (std::string line; std::getline(f, line);) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

uint32_t le32(const std::string& b, size_t at) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i)
    v |= static_cast<uint32_t>(static_cast<unsigned char>(b[at + i])) << (8 * i);
  return v;
}

// (tag, step) -> value of every scalar in a TFRecord event file, both CRCs of each record checked.
std::map<std::pair<std::string, int64_t>, float> read_scalars(const std::string& path) {
  const std::string b = read_file(path);
  std::map<std::pair<std::string, int64_t>, float> out;
  size_t pos = 0;
  while (pos + 12 <= b.size()) {
    uint64_t len = 0;
    for (int i = 0; i < 8; ++i)
      len |= static_cast<uint64_t>(static_cast<unsigned char>(b[pos + i])) << (8 * i);
    EXPECT_EQ(le32(b, pos + 8), crc32c_mask(crc32c(b.data() + pos, 8))) << "length CRC at " << pos;
    if (pos + 16 + len > b.size()) break;
    const std::string data = b.substr(pos + 12, len);
    EXPECT_EQ(le32(b, pos + 12 + len), crc32c_mask(crc32c(data))) << "data CRC at " << pos;
    tensorboard::Event e;
    EXPECT_TRUE(e.ParseFromString(data));
    for (const auto& v : e.summary().value()) out[{v.tag(), e.step()}] = v.simple_value();
    pos += 16 + len;
  }
  EXPECT_EQ(pos, b.size()) << "trailing bytes in " << path;
  return out;
}

// Two epochs of 32 steps cut at 48 by max_steps: losses every 8 steps, an evaluation at the end
// of epoch 1 (step 32) and the final one at step 48.
TEST(Trainer, WritesMetricsLinesAndTensorBoardScalarsThatAgree) {
  const std::string dir = testing::temp_dir();
  Captured c;
  Trainer trainer(config(mlp_yaml(dir), {"training.epochs=2", "training.max_steps=48",
                                         "logging.every_steps=8", "logging.tensorboard=true"}),
                  std::make_unique<SingleStrategy>(), c.env());
  TrainResult r = trainer.run();
  ASSERT_EQ(r.step, 48);

  std::vector<int64_t> loss_steps;
  std::map<int64_t, double> loss, accuracy, epoch_loss;
  for (const auto& j : read_jsonl(dir + "/logs/metrics.jsonl")) {
    const int64_t step = j.at("step").get<int64_t>();
    if (j.contains("train/loss")) {
      loss_steps.push_back(step);
      loss[step] = j["train/loss"].get<double>();
      EXPECT_TRUE(j.contains("train/lr"));
      EXPECT_TRUE(j.contains("train/samples_per_sec"));
    }
    if (j.contains("test/accuracy")) accuracy[step] = j["test/accuracy"].get<double>();
    if (j.contains("train/epoch_loss")) epoch_loss[step] = j["train/epoch_loss"].get<double>();
  }
  EXPECT_EQ(loss_steps, (std::vector<int64_t>{8, 16, 24, 32, 40, 48}));
  for (const auto& [step, v] : loss) {
    EXPECT_TRUE(std::isfinite(v));
    EXPECT_GT(v, 0);
  }
  ASSERT_EQ(accuracy.size(), 2u) << "one evaluation per epoch end and one at the final step";
  EXPECT_TRUE(accuracy.count(32));
  ASSERT_TRUE(accuracy.count(48));
  EXPECT_EQ(accuracy[48], r.test_accuracy);
  for (const auto& [step, a] : accuracy) {
    EXPECT_GE(a, 0);
    EXPECT_LE(a, 1);
  }
  // The epoch's loss is the mean over its 32 steps, i.e. of the four equal intervals logged.
  ASSERT_TRUE(epoch_loss.count(32));
  EXPECT_NEAR(epoch_loss[32], (loss[8] + loss[16] + loss[24] + loss[32]) / 4, 1e-9);

  std::vector<std::string> events;
  for (const auto& e : fs::directory_iterator(dir + "/logs"))
    if (e.path().filename().string().rfind("events.out.tfevents.", 0) == 0)
      events.push_back(e.path());
  ASSERT_EQ(events.size(), 1u);
  EXPECT_NE(events[0].find(".testhost"), std::string::npos) << events[0];
  auto scalars = read_scalars(events[0]);
  for (const auto& [step, v] : loss) {
    auto it = scalars.find(std::make_pair(std::string("train/loss"), step));
    ASSERT_NE(it, scalars.end()) << step;
    EXPECT_EQ(it->second, static_cast<float>(v)) << step;
  }
  auto final_accuracy = scalars.find(std::make_pair(std::string("test/accuracy"), int64_t{48}));
  ASSERT_NE(final_accuracy, scalars.end());
  EXPECT_EQ(final_accuracy->second, static_cast<float>(r.test_accuracy));
}

// A full disk under metrics.jsonl (/dev/full: every write is ENOSPC) is one warning; the run
// trains on and ends where a run with a writable log does, on the same weights.
TEST(Trainer, AFullDiskUnderTheMetricsFileOnlyWarnsOnceAndTrainingGoesOn) {
  const std::string reference_dir = testing::temp_dir() + "/reference";
  const std::string dir = testing::temp_dir() + "/full";
  const std::vector<std::string> overrides = {"training.max_steps=24", "logging.every_steps=4"};
  Captured ref_out;
  Trainer reference(config(mlp_yaml(reference_dir), overrides), std::make_unique<SingleStrategy>(),
                    ref_out.env());
  TrainResult expected = reference.run();

  fs::create_directories(dir + "/logs");
  fs::create_symlink("/dev/full", dir + "/logs/metrics.jsonl");
  Captured c;
  Trainer trainer(config(mlp_yaml(dir), overrides), std::make_unique<SingleStrategy>(), c.env());
  TrainResult r;
  ASSERT_NO_THROW(r = trainer.run()) << c.err.str();
  EXPECT_EQ(r.step, 24);
  EXPECT_EQ(r.test_accuracy, expected.test_accuracy);
  EXPECT_EQ(r.test_loss, expected.test_loss);
  expect_bit_identical(trainer.model().state_dict(), reference.model().state_dict(), "model");
  const std::string err = c.err.str();
  std::smatch m;
  const std::regex warning(
      "warning: metrics not written \\(.*metrics\\.jsonl: write failed "
      "\\(No space left on device\\)\\); training goes on");
  EXPECT_TRUE(std::regex_search(err, m, warning)) << err;
  size_t count = 0;
  for (size_t at = 0; (at = err.find("warning: metrics not written", at)) != std::string::npos;
       ++at)
    ++count;
  EXPECT_EQ(count, 1u) << "one warning, not one per write (7 writes failed):\n" << err;
}

// ---------------------------------------------------------------------------------- checkpoints

TEST(Trainer, KeepsOnlyTheNewestCheckpoints) {
  const std::string dir = testing::temp_dir();
  Captured c;
  Trainer trainer(config(mlp_yaml(dir), {"data.synthetic_samples=1024", "training.max_steps=50",
                                         "checkpoint.every_steps=10", "checkpoint.keep=2",
                                         "training.eval_every_epoch=false"}),
                  std::make_unique<SingleStrategy>(), c.env());
  EXPECT_EQ(trainer.run().step, 50);
  EXPECT_EQ(step_dirs(dir + "/checkpoints"),
            (std::vector<std::string>{"step-00000040", "step-00000050"}));
  LoadedCheckpoint ck = load_checkpoint(dir + "/checkpoints/step-00000050");
  EXPECT_EQ(ck.state.step, 50);
  EXPECT_EQ(ck.state.epoch, 0);
  EXPECT_EQ(ck.state.step_in_epoch, 50);
  expect_bit_identical(ck.model, trainer.model().state_dict(), "saved model");
}

TEST(Trainer, ResumeFallsBackToThePreviousCheckpointWhenTheNewestIsCorrupt) {
  const std::string dir = testing::temp_dir();
  const std::vector<std::string> base = {"data.synthetic_samples=1024", "checkpoint.every_steps=10",
                                         "checkpoint.resume=auto",
                                         "training.eval_every_epoch=false"};
  std::vector<std::string> first = base, second = base;
  first.push_back("training.max_steps=20");
  second.push_back("training.max_steps=30");
  {
    Captured c;
    Trainer t(config(mlp_yaml(dir), first), std::make_unique<SingleStrategy>(), c.env());
    ASSERT_EQ(t.run().step, 20);
  }
  const std::string newest = dir + "/checkpoints/step-00000020";
  {
    // Flip one bit of the last tensor's data: the file still parses, its CRC no longer matches.
    std::fstream f(newest + "/model.safetensors", std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(-1, std::ios::end);
    char byte = 0;
    f.read(&byte, 1);
    byte ^= 0x01;
    f.seekp(-1, std::ios::end);
    f.write(&byte, 1);
  }
  ASSERT_THROW(load_checkpoint(newest), IoError);

  Captured c;
  Trainer t(config(mlp_yaml(dir), second), std::make_unique<SingleStrategy>(), c.env());
  TrainResult r = t.run();
  EXPECT_NE(c.err.str().find("warning: skipping checkpoint " + newest), std::string::npos)
      << c.err.str();
  EXPECT_NE(c.out.str().find("resumed from " + dir + "/checkpoints/step-00000010 (step 10"),
            std::string::npos)
      << c.out.str();
  EXPECT_EQ(r.step, 30);
  // The rerun of steps 11..20 wrote a good step-20 over the corrupt one.
  EXPECT_EQ(load_checkpoint(newest).state.step, 20);
}

// ---------------------------------------------------------------------------------- init_from

TEST(Trainer, InitFromAnotherModelsWeightsNamesTheFileAndTheKeysThatDoNotFit) {
  const std::string dir = testing::temp_dir();
  ModelOptions mo;
  mo.in_channels = 1;
  mo.image_size = 8;
  Generator gen(1, 0);
  const std::string weights = dir + "/cnn.safetensors";
  safetensors_save(weights, make_model("simple_cnn", mo, gen)->state_dict());

  Captured c;
  Trainer trainer(config(mlp_yaml(dir), {"model.init_from=" + weights}),
                  std::make_unique<SingleStrategy>(), c.env());
  try {
    trainer.run();
    FAIL() << "loading a simple_cnn's weights into an mlp must fail";
  } catch (const ConfigError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(weights), std::string::npos) << what;
    EXPECT_NE(what.find("missing keys (4): 1.weight, 1.bias, 3.weight, 3.bias"), std::string::npos)
        << what;
    EXPECT_NE(what.find("unexpected keys"), std::string::npos) << what;
    EXPECT_NE(what.find("conv1.weight"), std::string::npos) << what;
  }
  EXPECT_FALSE(fs::exists(dir + "/checkpoints"))
      << "nothing is saved from a run that could not start";
}

}  // namespace
}  // namespace tandem
