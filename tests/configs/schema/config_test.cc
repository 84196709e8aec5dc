// Experiment configs: the shipped files, defaults, overrides and rendering; bad configs in
// config_errors_test.cc.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "configs/schema/config.h"
#include "core/base/error.h"
#include "tests/support/test_support.h"

namespace tandem {
namespace {

const std::string kMinimal =
    "model:\n"
    "  name: mlp\n"
    "data:\n"
    "  name: synthetic\n";

std::string shipped(const std::string& name) {
  return std::string(TANDEM_SOURCE_DIR) + "/configs/" + name;
}

// The shipped files are checked without their data directories, which a test machine may lack.
LoadOptions no_path_checks() {
  LoadOptions options;
  options.check_paths = false;
  return options;
}

TEST(Config, ShippedConfigsLoadAndRoundTripThroughRender) {
  for (const char* name : {"fashion_mnist_mlp.yaml", "fashion_mnist_cnn.yaml",
                           "cifar10_simple_cnn.yaml", "resnet50_synthetic.yaml"}) {
    SCOPED_TRACE(name);
    ExperimentConfig c = load_config(shipped(name), {}, no_path_checks());
    std::string text = render_config(c);
    ExperimentConfig again = parse_config(text, c.source_path, {}, no_path_checks());
    EXPECT_EQ(again, c);
    EXPECT_EQ(render_config(again), text);
    EXPECT_EQ(config_digest(again), config_digest(c));
  }
}

TEST(Config, ShippedConfigsHoldTheirDocumentedChoices) {
  ExperimentConfig mlp = load_config(shipped("fashion_mnist_mlp.yaml"), {}, no_path_checks());
  EXPECT_EQ(mlp.experiment_name, "fashion_mnist_mlp");
  EXPECT_EQ(mlp.model.name, ModelName::kMlp);
  EXPECT_EQ(mlp.model.hidden, (std::vector<int64_t>{512, 512}));
  EXPECT_EQ(mlp.data.path, "/usr/share/datasets/fashion-mnist");
  EXPECT_EQ(mlp.data.batch_size, 128);
  EXPECT_EQ(mlp.optimizer.name, OptimizerName::kAdam);
  EXPECT_EQ(mlp.optimizer.lr, 1e-3);
  EXPECT_EQ(mlp.schedule.name, ScheduleName::kCosine);
  EXPECT_EQ(mlp.checkpoint.dir, "runs/fashion_mnist_mlp/checkpoints");
  EXPECT_EQ(mlp.logging.dir, "runs/fashion_mnist_mlp");

  ExperimentConfig cnn = load_config(shipped("fashion_mnist_cnn.yaml"), {}, no_path_checks());
  EXPECT_EQ(cnn.model.name, ModelName::kLenet);
  EXPECT_EQ(cnn.data.batch_size, 64);
  EXPECT_FALSE(cnn.data.augment);

  ExperimentConfig cifar = load_config(shipped("cifar10_simple_cnn.yaml"), {}, no_path_checks());
  EXPECT_EQ(cifar.model.name, ModelName::kSimpleCnn);
  EXPECT_EQ(cifar.data.path, "data/cifar-10-batches-bin");

  ExperimentConfig resnet = load_config(shipped("resnet50_synthetic.yaml"), {}, no_path_checks());
  EXPECT_EQ(resnet.model.num_classes, 1000);
  EXPECT_EQ(resnet.data.synthetic_shape, (std::vector<int64_t>{3, 224, 224}));
  EXPECT_EQ(resnet.data.path, "");
  EXPECT_EQ(resnet.optimizer.momentum, 0.9);
  EXPECT_EQ(resnet.strategy.name, StrategyName::kDdp);
  EXPECT_EQ(resnet.cluster.slurm.time, "00:30:00");
}

TEST(Config, FashionMnistConfigsFindTheirDataWhereTheDebianPackagePutsIt) {
  if (!std::filesystem::is_directory("/usr/share/datasets/fashion-mnist"))
    GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  EXPECT_EQ(load_config(shipped("fashion_mnist_mlp.yaml")).data.path,
            "/usr/share/datasets/fashion-mnist");
  EXPECT_EQ(load_config(shipped("fashion_mnist_cnn.yaml")).model.name, ModelName::kLenet);
}

TEST(Config, MinimalConfigRendersEveryDefault) {
  ExperimentConfig c = parse_config(kMinimal, "configs/tiny.yaml");
  EXPECT_EQ(c.source_path, "configs/tiny.yaml");
  EXPECT_EQ(c.experiment_name, "tiny");
  EXPECT_EQ(render_config(c),
            "seed: 0\n"
            "model:\n"
            "  name: mlp\n"
            "  onnx: null\n"
            "  init_from: null\n"
            "  hidden: [512, 512]\n"
            "  num_classes: 10\n"
            "data:\n"
            "  name: synthetic\n"
            "  path: null\n"
            "  batch_size: 64\n"
            "  workers: 2\n"
            "  augment: false\n"
            "  normalize: true\n"
            "  synthetic_shape: [3, 224, 224]\n"
            "  synthetic_samples: 1024\n"
            "  image_size: 224\n"
            "  validation_fraction: 0\n"
            "optimizer:\n"
            "  name: sgd\n"
            "  lr: 0.01\n"
            "  weight_decay: 0\n"
            "  momentum: 0.9\n"
            "  nesterov: false\n"
            "  betas: [0.9, 0.999]\n"
            "  eps: 1.0e-08\n"
            "schedule:\n"
            "  name: constant\n"
            "  warmup_steps: 0\n"
            "  step_size: 1000\n"
            "  gamma: 0.1\n"
            "  min_lr: 0\n"
            "training:\n"
            "  epochs: 1\n"
            "  max_steps: 0\n"
            "  threads: 0\n"
            "  precision: fp32\n"
            "  grad_clip: 0\n"
            "  accumulate_steps: 1\n"
            "  device: cpu\n"
            "  max_nonfinite_steps: 5\n"
            "  eval_every_epoch: true\n"
            "  log_memory: false\n"
            "  early_stopping:\n"
            "    metric: none\n"
            "    patience: 0\n"
            "    min_delta: 0\n"
            "strategy:\n"
            "  name: single\n"
            "  replicas: 1\n"
            "  backend: auto\n"
            "  bucket_mb: 25\n"
            "  first_bucket_mb: 1\n"
            "  compression: none\n"
            "  shard_optimizer: auto\n"
            "  timeout_s: 600\n"
            "  debug_collectives: false\n"
            "  mode: sync\n"
            "  max_staleness: 0\n"
            "  num_ps: 1\n"
            "  max_message_mb: 256\n"
            "checkpoint:\n"
            "  dir: runs/tiny/checkpoints\n"
            "  every_steps: 500\n"
            "  keep: 3\n"
            "  resume: auto\n"
            "  allow_config_change: false\n"
            "  keep_best: none\n"
            "logging:\n"
            "  dir: runs/tiny\n"
            "  every_steps: 50\n"
            "  tensorboard: true\n"
            "  progress: auto\n"
            "  trace: false\n"
            "  trace_steps: [20, 30]\n"
            "cluster:\n"
            "  slurm:\n"
            "    partition: null\n"
            "    time: \"01:00:00\"\n"
            "    account: null\n"
            "    nodes: 1\n"
            "    ntasks_per_node: 1\n"
            "    gpus_per_node: 0\n"
            "    cpus_per_task: 0\n"
            "    launcher: tandem\n"
            "    port: 29400\n"
            "  kubernetes:\n"
            "    image: \"tandem:latest\"\n"
            "    namespace: default\n"
            "    nodes: 1\n"
            "    gpus_per_node: 0\n"
            "    nproc_per_node: 0\n"
            "    backoff_limit: 0\n"
            "    port: 29400\n"
            "    flavor: indexed\n");
}

TEST(Config, OverridesSetIntFloatBoolListAndNestedKeys) {
  ExperimentConfig c =
      parse_config(kMinimal + "optimizer:\n  lr: 0.5\n", "exp.yaml",
                   {"data.batch_size=256", "optimizer.lr=3e-4", "data.augment=true",
                    "model.hidden=[256,128]", "cluster.slurm.nodes=4",
                    "cluster.slurm.time=2-00:00:00", "optimizer.betas=[0.8, 0.99]", "seed=7"});
  EXPECT_EQ(c.data.batch_size, 256);
  EXPECT_EQ(c.optimizer.lr, 3e-4);
  EXPECT_TRUE(c.data.augment);
  EXPECT_EQ(c.model.hidden, (std::vector<int64_t>{256, 128}));
  EXPECT_EQ(c.cluster.slurm.nodes, 4);
  EXPECT_EQ(c.cluster.slurm.time, "2-00:00:00");
  EXPECT_EQ(c.optimizer.betas, (std::vector<double>{0.8, 0.99}));
  EXPECT_EQ(c.seed, 7);
}

TEST(Config, LaterOverridesWinAndASectionCanBeOverriddenAsAMapping) {
  ExperimentConfig c = parse_config(kMinimal, "exp.yaml",
                                    {"optimizer={name: adamw, lr: 0.002}", "optimizer.lr=0.004",
                                     "training.epochs=3", "training.epochs=5"});
  EXPECT_EQ(c.optimizer.name, OptimizerName::kAdamW);
  EXPECT_EQ(c.optimizer.lr, 0.004);
  EXPECT_EQ(c.optimizer.momentum, 0.9);  // untouched keys keep their values
  EXPECT_EQ(c.training.epochs, 5);
}

TEST(Config, OverridesCanSupplyRequiredKeysAndResetOptionalOnes) {
  std::string dir = testing::temp_dir();
  std::string weights = dir + "/init.safetensors";
  std::ofstream(weights) << "x";
  ExperimentConfig c =
      parse_config("data:\n  name: synthetic\nmodel:\n  init_from: " + weights + "\n", "exp.yaml",
                   {"model.name=resnet18"});
  EXPECT_EQ(c.model.name, ModelName::kResnet18);
  EXPECT_EQ(c.model.init_from, weights);
  c = parse_config(kMinimal + "  path: /nonexistent\n", "exp.yaml", {"data.path="});
  EXPECT_EQ(c.data.path, "");
  c = parse_config(kMinimal, "exp.yaml", {"data.name=cifar10", "data.path=" + dir});
  EXPECT_EQ(c.data.path, dir);
}

TEST(Config, DataPathDefaultFollowsTheDataSetNameAfterOverrides) {
  ExperimentConfig c = parse_config(kMinimal, "exp.yaml", {"data.name=mnist"}, no_path_checks());
  EXPECT_EQ(c.data.path, "/usr/share/datasets/mnist");
  c = parse_config(kMinimal, "exp.yaml", {"data.name=cifar10"}, no_path_checks());
  EXPECT_EQ(c.data.path, "data/cifar-10-batches-bin");
}

TEST(Config, ValuesInAnySpellingYamlAllows) {
  ExperimentConfig c = parse_config(
      "# leading comment\n"
      "model: {name: mlp, hidden: [64]}\n"
      "data:\n"
      "  name: \"synthetic\"\n"
      "  batch_size: '32'\n"
      "  augment: yes\n"
      "  normalize: Off\n"
      "  synthetic_shape:\n"
      "    - 1\n"
      "    - 28\n"
      "    - 28\n"
      "optimizer:\n"
      "  lr: +1.5E-2\n"
      "  momentum: 0\n"
      "cluster:\n"
      "  kubernetes:\n"
      "  slurm:\n"
      "    partition: ~\n",
      "exp.yaml");
  EXPECT_EQ(c.model.hidden, (std::vector<int64_t>{64}));
  EXPECT_EQ(c.data.name, DatasetName::kSynthetic);
  EXPECT_EQ(c.data.batch_size, 32);
  EXPECT_TRUE(c.data.augment);
  EXPECT_FALSE(c.data.normalize);
  EXPECT_EQ(c.data.synthetic_shape, (std::vector<int64_t>{1, 28, 28}));
  EXPECT_EQ(c.optimizer.lr, 0.015);
  EXPECT_EQ(c.optimizer.momentum, 0.0);
  EXPECT_EQ(c.cluster.slurm.partition, "");
}

TEST(Config, StringsThatNeedQuotesRoundTrip) {
  std::string base = testing::temp_dir();
  std::string dir = base + "/my runs: #1 \"q\" \\ x";
  ExperimentConfig c = parse_config(kMinimal, "exp.yaml",
                                    {"checkpoint.dir='" + dir + "'", "cluster.slurm.partition=yes",
                                     "cluster.slurm.account='0123'", "training.device=cuda:1"});
  EXPECT_EQ(c.checkpoint.dir, dir);
  EXPECT_EQ(c.cluster.slurm.partition, "yes");
  EXPECT_EQ(c.cluster.slurm.account, "0123");
  std::string text = render_config(c);
  EXPECT_NE(text.find("  dir: \"" + base + "/my runs: #1 \\\"q\\\" \\\\ x\"\n"), std::string::npos);
  EXPECT_NE(text.find("    partition: \"yes\"\n"), std::string::npos);
  EXPECT_NE(text.find("    account: \"0123\"\n"), std::string::npos);
  EXPECT_NE(text.find("  device: \"cuda:1\"\n"), std::string::npos);
  EXPECT_EQ(parse_config(text, "exp.yaml"), c);
}

TEST(Config, DigestIsStableAndChangesWithAnyValue) {
  ExperimentConfig a = parse_config(kMinimal, "exp.yaml");
  ExperimentConfig b = parse_config(kMinimal, "exp.yaml");
  EXPECT_EQ(config_digest(a), config_digest(b));
  EXPECT_EQ(config_digest(a).size(), 16u);
  EXPECT_EQ(config_digest(a).find_first_not_of("0123456789abcdef"), std::string::npos);
  b.optimizer.eps = 1e-7;
  EXPECT_NE(config_digest(a), config_digest(b));
  ExperimentConfig c = parse_config(kMinimal, "exp.yaml", {"training.epochs=2"});
  EXPECT_NE(config_digest(a), config_digest(c));
}

TEST(Config, SameKeyNameInDifferentSectionsIsNotADuplicate) {
  ExperimentConfig c = parse_config(
      kMinimal + "checkpoint:\n  every_steps: 7\nlogging:\n  every_steps: 9\n", "exp.yaml");
  EXPECT_EQ(c.checkpoint.every_steps, 7);
  EXPECT_EQ(c.logging.every_steps, 9);
}

TEST(Config, BracketsInStringsCommentsAndBlockScalarsDoNotCountAsNesting) {
  std::string text = kMinimal +
                     "  # DEEP\n"
                     "logging:\n"
                     "  dir: 'DEEP'\n"
                     "cluster:\n"
                     "  slurm:\n"
                     "    partition: \"DEEP\"\n"
                     "    account: |-\n"
                     "      abc\n"
                     "          DEEP\n"
                     "            {{{{\n"
                     "  kubernetes:\n"
                     "    image: reg/x[DEEP\n"
                     "  # ]]\n";
  const std::string deep(200, '[');
  for (size_t at; (at = text.find("DEEP")) != std::string::npos;) text.replace(at, 4, deep);
  for (int i = 0; i < 70; ++i) text += "# " + std::string(i, ' ') + "{\n";
  ExperimentConfig c = parse_config(text, "exp.yaml");
  EXPECT_EQ(c.logging.dir, deep);
  EXPECT_EQ(c.cluster.slurm.partition, deep);
  EXPECT_EQ(c.cluster.slurm.account, "abc\n    " + deep + "\n      {{{{");
  EXPECT_EQ(c.cluster.kubernetes.image, "reg/x[" + deep);
}

TEST(Config, NestingUpToTheLimitIsAcceptedByThePrescan) {
  // 62 nested flow lists (64 levels with data and its key) pass the pre-scan and then fail
  // only on their type.
  std::string text =
      kMinimal + "  synthetic_shape: " + std::string(62, '[') + std::string(62, ']') + "\n";
  try {
    parse_config(text, "exp.yaml");
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(),
                 "exp.yaml:5:20: data.synthetic_shape: expected 3 integers [C, H, W], got 1");
  }
}

TEST(Config, OneLevelPastTheLimitIsRefused) {
  std::string text =
      kMinimal + "  synthetic_shape: " + std::string(63, '[') + std::string(63, ']') + "\n";
  try {
    parse_config(text, "exp.yaml");
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(),
                 "exp.yaml:5:82: nesting deeper than 64 levels; an experiment needs at most 3");
  }
}

TEST(Config, OverrideKeysMayCarrySpacesAroundThem) {
  EXPECT_EQ(parse_config(kMinimal, "exp.yaml", {" optimizer.lr = 0.5"}).optimizer.lr, 0.5);
}

TEST(Config, ValidateWorldAcceptsEvenSplits) {
  ExperimentConfig c =
      parse_config(kMinimal + "  batch_size: 96\nstrategy:\n  name: ddp\n", "exp.yaml");
  validate_world(c, 1);
  validate_world(c, 3);
  validate_world(c, 32);
  c.strategy.name = StrategyName::kMirrored;
  c.strategy.replicas = 4;
  validate_world(c, 1);
  EXPECT_THROW(validate_world(c, 2), ConfigError);
}

}  // namespace
}  // namespace tandem
