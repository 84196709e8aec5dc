// Bad experiment configs: each one must fail with exactly one line naming file, line, column and
// key path (or the override), and saying what was expected.
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

// The ConfigError message parse_config gives for `text`, or "no error".
std::string error_of(const std::string& text, const std::vector<std::string>& overrides = {}) {
  try {
    parse_config(text, "exp.yaml", overrides);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "no error";
}

std::string load_error(const std::string& path) {
  try {
    load_config(path);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "no error";
}

TEST(ConfigErrors, YamlSyntaxErrorNamesLineAndColumn) {
  EXPECT_EQ(error_of("model:\n  name: [mlp\ndata:\n  name: synthetic\n"),
            "exp.yaml:3:5: YAML syntax error: end of sequence flow not found");
  EXPECT_EQ(error_of("model:\n  name: mlp\n bad: 1\n"),
            "exp.yaml:3:2: YAML syntax error: end of map not found");
}

TEST(ConfigErrors, UnknownTopLevelKeySuggestsTheClosest) {
  EXPECT_EQ(error_of(kMinimal + "optimiser:\n  lr: 0.1\n"),
            "exp.yaml:5:1: optimiser: unknown key; did you mean 'optimizer'?");
  EXPECT_EQ(error_of("modle:\n  name: mlp\n"),
            "exp.yaml:1:1: modle: unknown key; did you mean 'model'?");
}

TEST(ConfigErrors, UnknownNestedKeySuggestsTheClosest) {
  EXPECT_EQ(error_of(kMinimal + "optimizer:\n  lrr: 0.1\n"),
            "exp.yaml:6:3: optimizer.lrr: unknown key; did you mean 'lr'?");
  EXPECT_EQ(error_of(kMinimal + "  batchsize: 32\n"),
            "exp.yaml:5:3: data.batchsize: unknown key; did you mean 'batch_size'?");
  EXPECT_EQ(error_of(kMinimal + "cluster:\n  slurm:\n    nodse: 2\n"),
            "exp.yaml:7:5: cluster.slurm.nodse: unknown key; did you mean 'nodes'?");
}

TEST(ConfigErrors, KeyInTheWrongSectionNamesWhereItBelongs) {
  EXPECT_EQ(error_of(kMinimal + "training:\n  lr: 0.1\n"),
            "exp.yaml:6:3: training.lr: unknown key; did you mean 'optimizer.lr'?");
  EXPECT_EQ(error_of(kMinimal + "every_steps: 10\n"),
            "exp.yaml:5:1: every_steps: unknown key; did you mean 'checkpoint.every_steps' or "
            "'logging.every_steps'?");
}

TEST(ConfigErrors, MisspelledKeyInTheWrongSectionNamesTheClosestElsewhere) {
  EXPECT_EQ(error_of(kMinimal + "training:\n  lrr: 0.1\n"),
            "exp.yaml:6:3: training.lrr: unknown key; did you mean 'optimizer.lr'?");
  EXPECT_EQ(error_of(kMinimal + "  x: 1\n"),
            "exp.yaml:5:3: data.x: unknown key; valid keys here: name, path, batch_size, workers, "
            "augment, normalize, synthetic_shape, synthetic_samples, image_size, "
            "validation_fraction");
  EXPECT_EQ(error_of(kMinimal, {"slurm.nodes=2"}),
            "override 'slurm.nodes=2': slurm: unknown key; did you mean 'cluster.slurm'?");
}

TEST(ConfigErrors, DottedKeysInTheFileAreNotPaths) {
  EXPECT_EQ(error_of(kMinimal + "optimizer.lr: 0.1\n"),
            "exp.yaml:5:1: optimizer.lr: unknown key; write each section as a nested key");
}

TEST(ConfigErrors, UnknownKeyWithNothingCloseListsTheValidKeys) {
  EXPECT_EQ(error_of(kMinimal + "optimizer:\n  learning_rate: 0.1\n"),
            "exp.yaml:6:3: optimizer.learning_rate: unknown key; valid keys here: name, lr, "
            "weight_decay, momentum, nesterov, betas, eps");
}

TEST(ConfigErrors, WrongTypesNameWhatWasExpected) {
  EXPECT_EQ(error_of(kMinimal + "  batch_size: abc\n"),
            "exp.yaml:5:15: data.batch_size: expected an integer, got 'abc'");
  EXPECT_EQ(error_of(kMinimal + "  batch_size: 6.5\n"),
            "exp.yaml:5:15: data.batch_size: expected an integer, got '6.5'");
  EXPECT_EQ(error_of(kMinimal + "optimizer:\n  lr: fast\n"),
            "exp.yaml:6:7: optimizer.lr: expected a number, got 'fast'");
  EXPECT_EQ(error_of(kMinimal + "optimizer:\n  lr: .inf\n"),
            "exp.yaml:6:7: optimizer.lr: expected a number, got '.inf'");
  EXPECT_EQ(error_of(kMinimal + "  augment: maybe\n"),
            "exp.yaml:5:12: data.augment: expected true or false, got 'maybe'");
  EXPECT_EQ(error_of(kMinimal + "  augment: [true]\n"),
            "exp.yaml:5:12: data.augment: expected true or false, got a list");
  EXPECT_EQ(error_of("model:\n  name: mlp\n  hidden: 512\ndata:\n  name: synthetic\n"),
            "exp.yaml:3:11: model.hidden: expected a list of integers, got '512'");
  EXPECT_EQ(error_of("model:\n  name: mlp\n  hidden: [512, x]\ndata:\n  name: synthetic\n"),
            "exp.yaml:3:17: model.hidden[1]: expected an integer, got 'x'");
  EXPECT_EQ(error_of("model:\n  name: {a: 1}\n"),
            "exp.yaml:2:9: model.name: expected a string, got a mapping");
}

TEST(ConfigErrors, EmptyValueIsNullAndPointsAtItsKey) {
  EXPECT_EQ(error_of(kMinimal + "  batch_size:\n  workers: 2\n"),
            "exp.yaml:5:3: data.batch_size: expected an integer, got null");
}

TEST(ConfigErrors, SectionThatIsNotAMapping) {
  EXPECT_EQ(error_of(kMinimal + "optimizer: adam\n"),
            "exp.yaml:5:12: optimizer: expected a mapping of keys, got 'adam'");
}

TEST(ConfigErrors, OutOfRangeValuesStateTheRange) {
  EXPECT_EQ(error_of(kMinimal + "  batch_size: -3\n"),
            "exp.yaml:5:15: data.batch_size: must be >= 1, got -3");
  EXPECT_EQ(error_of(kMinimal + "training:\n  epochs: 0\n"),
            "exp.yaml:6:11: training.epochs: must be >= 1, got 0");
  EXPECT_EQ(error_of(kMinimal + "optimizer:\n  lr: 0\n"),
            "exp.yaml:6:7: optimizer.lr: must be > 0, got 0");
  EXPECT_EQ(error_of(kMinimal + "optimizer:\n  lr: -1e-3\n"),
            "exp.yaml:6:7: optimizer.lr: must be > 0, got -1e-3");
  EXPECT_EQ(error_of(kMinimal + "optimizer:\n  momentum: 1\n"),
            "exp.yaml:6:13: optimizer.momentum: must be >= 0 and < 1, got 1");
  EXPECT_EQ(error_of(kMinimal + "optimizer:\n  betas: [0.9, 1.5]\n"),
            "exp.yaml:6:16: optimizer.betas[1]: must be >= 0 and < 1, got 1.5");
  EXPECT_EQ(error_of(kMinimal + "  workers: 99999999999\n"),
            "exp.yaml:5:12: data.workers: must be <= 2147483647, got 99999999999");
  EXPECT_EQ(error_of(kMinimal + "cluster:\n  kubernetes:\n    port: 70000\n"),
            "exp.yaml:7:11: cluster.kubernetes.port: must be >= 1 and <= 65535, got 70000");
  EXPECT_EQ(error_of(kMinimal + "  synthetic_shape: [3, 224]\n"),
            "exp.yaml:5:20: data.synthetic_shape: expected 3 integers [C, H, W], got 2");
}

TEST(ConfigErrors, BadEnumValuesListTheValidOnes) {
  EXPECT_EQ(
      error_of(kMinimal + "optimizer:\n  name: sgdd\n"),
      "exp.yaml:6:9: optimizer.name: unknown value 'sgdd'; expected one of: sgd, adam, adamw");
  EXPECT_EQ(error_of(kMinimal + "training:\n  precision: fp8\n"),
            "exp.yaml:6:14: training.precision: unknown value 'fp8'; expected one of: fp32, tf32, "
            "bf16, fp16, fp64");
  EXPECT_EQ(
      error_of(kMinimal + "strategy:\n  name: horovod\n"),
      "exp.yaml:6:9: strategy.name: unknown value 'horovod'; expected one of: single, mirrored, "
      "ddp, parameter_server");
  EXPECT_EQ(error_of(kMinimal + "training:\n  device: gpu\n"),
            "exp.yaml:6:11: training.device: expected cpu, cuda or cuda:N, got 'gpu'");
  EXPECT_EQ(error_of(kMinimal + "cluster:\n  kubernetes:\n    namespace: My_NS\n"),
            "exp.yaml:7:16: cluster.kubernetes.namespace: expected a DNS label (lowercase letters, "
            "digits and '-', at most 63 characters), got 'My_NS'");
}

TEST(ConfigErrors, ResumeFromAMissingCheckpoint) {
  std::string missing = testing::temp_dir() + "/step_100";
  EXPECT_EQ(error_of(kMinimal + "checkpoint:\n  resume: " + missing + "\n"),
            "exp.yaml:6:11: checkpoint.resume: checkpoint '" + missing +
                "' does not exist; expected auto, never or the path of a checkpoint");
}

TEST(ConfigErrors, MissingRequiredKeys) {
  EXPECT_EQ(error_of("model:\n  hidden: [10]\ndata:\n  name: synthetic\n"),
            "exp.yaml:1:1: model.name: required key is missing; expected one of: mlp, simple_cnn, "
            "lenet, resnet18, resnet50, onnx");
  EXPECT_EQ(error_of("# an experiment\nmodel:\n  name: mlp\n"),
            "exp.yaml:2:1: data.name: required key is missing; expected one of: fashion_mnist, "
            "mnist, cifar10, synthetic, image_folder");
  EXPECT_EQ(error_of("model:\n  name: mlp\ntraining:\n  epochs: 2\ndata:\n  batch_size: 8\n"),
            "exp.yaml:5:1: data.name: required key is missing; expected one of: fashion_mnist, "
            "mnist, cifar10, synthetic, image_folder");
}

TEST(ConfigErrors, MissingDataDirectoryNamesThePath) {
  std::string dir = testing::temp_dir();
  EXPECT_EQ(
      error_of("model:\n  name: lenet\ndata:\n  name: fashion_mnist\n  path: " + dir + "/nope\n"),
      "exp.yaml:5:9: data.path: directory '" + dir + "/nope' does not exist");
  std::string file = dir + "/a_file";
  std::ofstream(file) << "x";
  EXPECT_EQ(error_of("model:\n  name: lenet\ndata:\n  name: mnist\n  path: " + file + "\n"),
            "exp.yaml:5:9: data.path: '" + file + "' is not a directory");
}

TEST(ConfigErrors, MissingDefaultDataDirectoryIsBlamedOnTheDataSetName) {
  std::filesystem::path before = std::filesystem::current_path();
  std::filesystem::current_path(testing::temp_dir());  // where data/cifar-10-batches-bin is not
  std::string error = error_of("model:\n  name: simple_cnn\ndata:\n  name: cifar10\n");
  std::filesystem::current_path(before);
  EXPECT_EQ(error,
            "exp.yaml:4:9: data.path: directory 'data/cifar-10-batches-bin' does not exist (the "
            "default for data.name 'cifar10'; set data.path to the data set's directory)");
}

TEST(ConfigErrors, InitFromMustBeAnExistingFile) {
  std::string dir = testing::temp_dir();
  EXPECT_EQ(error_of("model:\n  name: mlp\n  init_from: " + dir +
                     "/w.safetensors\ndata:\n  name: synthetic\n"),
            "exp.yaml:3:14: model.init_from: file '" + dir + "/w.safetensors' does not exist");
  EXPECT_EQ(
      error_of("model:\n  name: mlp\n  init_from: " + dir + "\ndata:\n  name: synthetic\n"),
      "exp.yaml:3:14: model.init_from: '" + dir + "' is a directory, expected a safetensors file");
}

// /dev/zero passed the check (it exists and is not a directory) and the trainer read it until
// memory ran out.
TEST(ConfigErrors, InitFromMustBeARegularFile) {
  EXPECT_EQ(error_of("model:\n  name: mlp\n  init_from: /dev/zero\ndata:\n  name: synthetic\n"),
            "exp.yaml:3:14: model.init_from: '/dev/zero' is not a regular file (a device, pipe or "
            "socket), expected a safetensors file");
}

TEST(ConfigErrors, DuplicateKeysNameBothLines) {
  EXPECT_EQ(error_of(kMinimal + "optimizer:\n  lr: 0.1\n  momentum: 0.5\n  lr: 0.2\n"),
            "exp.yaml:8:3: optimizer.lr: duplicate key at lines 6 and 8; keep one");
  EXPECT_EQ(error_of(kMinimal + "model:\n  num_classes: 10\n"),
            "exp.yaml:5:1: model: duplicate key at lines 1 and 5; keep one");
}

TEST(ConfigErrors, CrossKeyRules) {
  EXPECT_EQ(error_of(kMinimal + "optimizer:\n  momentum: 0\n  nesterov: true\n"),
            "exp.yaml:7:13: optimizer.nesterov: Nesterov momentum needs optimizer.momentum > 0");
  EXPECT_EQ(
      error_of(kMinimal + "optimizer:\n  lr: 0.001\nschedule:\n  name: cosine\n  min_lr: 0.01\n"),
      "exp.yaml:9:11: schedule.min_lr: must be <= optimizer.lr (0.001), got 0.01");
  EXPECT_EQ(error_of("model:\n  name: lenet\n  num_classes: 100\ndata:\n  name: fashion_mnist\n"),
            "exp.yaml:3:16: model.num_classes: data.name 'fashion_mnist' has 10 classes, got 100");
}

// Values past these overflowed later: timeout_s * 1000 and bucket_mb * 2^20 are cast to int64
// (undefined behaviour above 2^63) and deadlines are added to the clock.
TEST(ConfigErrors, TimeoutsAndBucketSizesHaveUpperBounds) {
  EXPECT_EQ(error_of(kMinimal + "strategy:\n  timeout_s: 1e300\n"),
            "exp.yaml:6:14: strategy.timeout_s: must be >= 0.001 and <= 604800, got 1e300");
  EXPECT_EQ(error_of(kMinimal + "strategy:\n  timeout_s: 0.0001\n"),
            "exp.yaml:6:14: strategy.timeout_s: must be >= 0.001 and <= 604800, got 0.0001");
  EXPECT_EQ(error_of(kMinimal + "strategy:\n  bucket_mb: 1e19\n"),
            "exp.yaml:6:14: strategy.bucket_mb: must be > 0 and <= 65536, got 1e19");
  EXPECT_EQ(error_of(kMinimal + "strategy:\n  first_bucket_mb: 70000\n"),
            "exp.yaml:6:20: strategy.first_bucket_mb: must be > 0 and <= 65536, got 70000");
  EXPECT_EQ(error_of(kMinimal, {"strategy.timeout_s=9e18"}),
            "override 'strategy.timeout_s=9e18': strategy.timeout_s: must be >= 0.001 and <= "
            "604800, got 9e18");
  EXPECT_EQ(error_of(kMinimal + "strategy:\n  timeout_s: 604800\n  bucket_mb: 65536\n"
                                "  first_bucket_mb: 65536\n"),
            "no error");
}

// The sharded update is a CPU loop over the flat parameters; on CUDA it would read device
// pointers from the host.
TEST(ConfigErrors, ShardedOptimizerOnCudaIsRefused) {
  const std::string ddp = kMinimal + "training:\n  device: cuda\nstrategy:\n  name: ddp\n";
  EXPECT_EQ(error_of(ddp + "  shard_optimizer: true\n"),
            "exp.yaml:9:20: strategy.shard_optimizer: the sharded update runs on the CPU, but "
            "training.device is 'cuda'; set strategy.shard_optimizer to auto or false");
  EXPECT_EQ(error_of(ddp, {"strategy.shard_optimizer=true", "training.device=cuda:1"}),
            "override 'strategy.shard_optimizer=true': strategy.shard_optimizer: the sharded "
            "update runs on the CPU, but training.device is 'cuda:1'; set "
            "strategy.shard_optimizer to auto or false");
  // auto shards only over shm; naming shm on CUDA would shard too.
  EXPECT_EQ(error_of(ddp + "  backend: shm\n"),
            "exp.yaml:9:12: strategy.shard_optimizer: the sharded update runs on the CPU, but "
            "training.device is 'cuda'; set strategy.shard_optimizer to auto or false");
  EXPECT_EQ(error_of(ddp + "  shard_optimizer: auto\n"), "no error");
  EXPECT_EQ(error_of(ddp + "  shard_optimizer: false\n"), "no error");
}

// "k0:\n k1:\n  k2:\n..." with `levels` levels.
std::string block_mapping(int levels) {
  std::string text;
  for (int i = 0; i < levels; ++i) text += std::string(i, ' ') + "k" + std::to_string(i) + ":\n";
  return text;
}

TEST(ConfigErrors, DeepBlockNestingIsRefusedBeforeParsing) {
  EXPECT_EQ(error_of(block_mapping(100)),
            "exp.yaml:65:65: nesting deeper than 64 levels; an experiment needs at most 3");
  // 64 levels pass the pre-scan; the parser then meets an unknown key.
  EXPECT_EQ(error_of(block_mapping(64)),
            "exp.yaml:1:1: k0: unknown key; valid keys here: seed, model, data, optimizer, "
            "schedule, training, strategy, checkpoint, logging, cluster");
  std::string dashes;
  for (int i = 0; i < 100000; ++i) dashes += "- ";
  EXPECT_EQ(error_of(dashes + "x\n"),
            "exp.yaml:1:129: nesting deeper than 64 levels; an experiment needs at most 3");
}

TEST(ConfigErrors, DeepFlowNestingIsRefusedBeforeParsing) {
  EXPECT_EQ(error_of(std::string(100000, '[')),
            "exp.yaml:1:64: nesting deeper than 64 levels; an experiment needs at most 3");
  std::string maps;
  for (int i = 0; i < 100; ++i) maps += "{a: ";
  EXPECT_EQ(error_of("model: " + maps + "\n"),
            "exp.yaml:1:260: nesting deeper than 64 levels; an experiment needs at most 3");
  // Brackets spread over lines count just the same (each line's indentation is a level too).
  std::string lines = "model:\n  hidden:\n";
  for (int i = 0; i < 100; ++i) lines += "    [\n";
  EXPECT_EQ(error_of(lines),
            "exp.yaml:64:5: nesting deeper than 64 levels; an experiment needs at most 3");
  EXPECT_EQ(error_of(kMinimal, {"model.hidden=" + std::string(100000, '[')}),
            "override 'model.hidden=" + std::string(100000, '[') +
                "': model.hidden: nesting deeper than 64 levels; an experiment needs at most 3");
}

// yaml-cpp 0.7 loops forever, allocating, on a ',' where a document's first node belongs (the
// config fuzzer found "&a:b,c"); YAML forbids a value that starts with ','. Refused before it.
TEST(ConfigErrors, ACommaWhereAValueBeginsIsRefusedBeforeTheParser) {
  EXPECT_EQ(error_of(",c"), "exp.yaml:1:1: a value cannot start with ','; quote it");
  EXPECT_EQ(error_of("&a:b,c"), "exp.yaml:1:5: a value cannot start with ','; quote it");
  EXPECT_EQ(error_of("!tag,c"), "exp.yaml:1:5: a value cannot start with ','; quote it");
  EXPECT_EQ(error_of("# comment\n--- &a ,c\n"),
            "exp.yaml:2:8: a value cannot start with ','; quote it");
  EXPECT_EQ(error_of(kMinimal, {"model.name=,"}),
            "override 'model.name=,': model.name: a value cannot start with ','; quote it");
  // Inside quotes, flow collections and plain scalars a comma is what it always was.
  EXPECT_EQ(error_of(kMinimal + "logging: {dir: \",x\"}\ncluster: {slurm: {partition: \"a,b\"}}\n"),
            "no error");
  EXPECT_EQ(error_of(kMinimal, {"cluster.slurm.partition=a,b"}), "no error");
}

// The same loop after a quoted value or a flow collection (the config fuzzer found "'',"):
// YAML allows nothing but ':' or a comment after one outside brackets. Refused before the parser.
TEST(ConfigErrors, ACommaAfterAQuotedValueOrABracketIsRefusedBeforeTheParser) {
  const std::string message =
      "',' after a quoted value or a closing bracket, outside brackets; remove it, or put the list "
      "in [ ]";
  EXPECT_EQ(error_of("'',"), "exp.yaml:1:3: " + message);
  EXPECT_EQ(error_of("\"b\" ,"), "exp.yaml:1:5: " + message);
  EXPECT_EQ(error_of("[a],"), "exp.yaml:1:4: " + message);
  EXPECT_EQ(error_of("{a: 1},"), "exp.yaml:1:7: " + message);
  EXPECT_EQ(error_of("&x 'a',"), "exp.yaml:1:7: " + message);
  EXPECT_EQ(error_of("'a\nb' ,"), "exp.yaml:2:4: " + message);  // the quote closes on line 2
  EXPECT_EQ(error_of(kMinimal + "logging: {dir: 'x'},\n"), "exp.yaml:5:20: " + message);
  EXPECT_EQ(error_of(kMinimal, {"model.hidden=[8, 4],"}),
            "override 'model.hidden=[8, 4],': model.hidden: " + message);
  // Inside brackets a comma after a quoted value or a nested list separates items, as always.
  EXPECT_EQ(error_of(kMinimal + "logging: {dir: 'x', trace_steps: [1, 2]}\n"), "no error");
  EXPECT_EQ(error_of(kMinimal, {"model.hidden=[[8], 4]"}).find(message), std::string::npos);
}

TEST(ConfigErrors, FilesOverOneMebibyteAreRefusedUnread) {
  std::string path = testing::temp_dir() + "/big.yaml";
  {
    std::ofstream out(path);
    out << kMinimal;
    std::string comment = "#" + std::string(1023, 'x') + "\n";
    for (int i = 0; i < 2048; ++i) out << comment;
  }
  ASSERT_GT(std::filesystem::file_size(path), 2u << 20);
  EXPECT_EQ(load_error(path), path + ": file is " +
                                  std::to_string(std::filesystem::file_size(path)) +
                                  " bytes; experiment files are limited to 1 MiB (1048576 bytes)");
  EXPECT_EQ(
      error_of(std::string(2 << 20, '#')),
      "exp.yaml: file is 2097152 bytes; experiment files are limited to 1 MiB (1048576 bytes)");
}

TEST(ConfigErrors, MissingOrUnreadableFile) {
  std::string dir = testing::temp_dir();
  EXPECT_EQ(load_error(dir + "/nope.yaml"),
            dir + "/nope.yaml: cannot read the experiment file: it does not exist");
  EXPECT_EQ(load_error(dir), dir + ": is a directory, expected a YAML experiment file");
}

TEST(ConfigErrors, DocumentThatIsNotAMapping) {
  EXPECT_EQ(
      error_of("- model\n- data\n"),
      "exp.yaml:1:1: expected a mapping of sections (model, data, optimizer, ...), got a list");
  EXPECT_EQ(
      error_of("\n\nhello\n"),
      "exp.yaml:3:1: expected a mapping of sections (model, data, optimizer, ...), got 'hello'");
  EXPECT_EQ(error_of(kMinimal + "---\nmodel:\n  name: lenet\n"),
            "exp.yaml:6:1: found 2 YAML documents; an experiment file holds one");
}

TEST(ConfigErrors, EmptyFile) {
  const std::string expected =
      "exp.yaml:1:1: the file is empty; an experiment needs at least model.name and data.name";
  EXPECT_EQ(error_of(""), expected);
  EXPECT_EQ(error_of("# nothing here yet\n\n"), expected);
  EXPECT_EQ(error_of("---\n"), expected);
}

TEST(ConfigErrors, UnevenBatchSplitOverTheWorld) {
  ExperimentConfig c =
      parse_config(kMinimal + "  batch_size: 100\nstrategy:\n  name: ddp\n", "exp.yaml");
  try {
    validate_world(c, 3);
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(),
                 "data.batch_size: global batch 100 does not split evenly over 3 replicas");
  }
  ExperimentConfig mirrored;
  mirrored.data.batch_size = 100;
  mirrored.strategy.name = StrategyName::kMirrored;
  mirrored.strategy.replicas = 3;
  try {
    validate_world(mirrored, 1);
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(),
                 "data.batch_size: global batch 100 does not split evenly over 3 replicas");
  }
  try {
    validate_world(parse_config(kMinimal, "exp.yaml"), 4);
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(),
                 "strategy.name: 'single' runs in one process, but 4 processes were started; use "
                 "ddp or parameter_server");
  }
}

TEST(ConfigErrors, UnevenMirroredSplitIsCaughtAtLoadTime) {
  EXPECT_EQ(error_of(kMinimal + "  batch_size: 100\nstrategy:\n  name: mirrored\n  replicas: 3\n"),
            "exp.yaml:5:15: data.batch_size: global batch 100 does not split evenly over 3 "
            "replicas (strategy.replicas)");
  EXPECT_EQ(error_of(kMinimal, {"strategy.name=mirrored", "strategy.replicas=5"}),
            "override 'strategy.replicas=5': data.batch_size: global batch 64 does not split "
            "evenly over 5 replicas (strategy.replicas)");
}

TEST(ConfigErrors, OverrideWithoutEqualsSign) {
  EXPECT_EQ(error_of(kMinimal, {"optimizer.lr"}),
            "override 'optimizer.lr': expected key.path=value, e.g. optimizer.lr=0.1");
  EXPECT_EQ(error_of(kMinimal, {"=0.1"}),
            "override '=0.1': expected key.path=value, e.g. optimizer.lr=0.1");
  EXPECT_EQ(error_of(kMinimal, {"optimizer..lr=0.1"}),
            "override 'optimizer..lr=0.1': expected key.path=value, e.g. optimizer.lr=0.1");
}

TEST(ConfigErrors, OverrideOfAnUnknownKey) {
  EXPECT_EQ(error_of(kMinimal, {"optimizer.lrr=0.1"}),
            "override 'optimizer.lrr=0.1': optimizer.lrr: unknown key; did you mean 'lr'?");
  EXPECT_EQ(error_of(kMinimal, {"optimzer.lr=0.1"}),
            "override 'optimzer.lr=0.1': optimzer: unknown key; did you mean 'optimizer'?");
  EXPECT_EQ(
      error_of(kMinimal, {"optimizer.lr.x=0.1"}),
      "override 'optimizer.lr.x=0.1': optimizer.lr.x: unknown key; 'optimizer.lr' is a value, "
      "not a section");
  EXPECT_EQ(
      error_of(kMinimal, {"optimizer={lr: 0.1, lrr: 2}"}),
      "override 'optimizer={lr: 0.1, lrr: 2}': optimizer.lrr: unknown key; did you mean 'lr'?");
}

TEST(ConfigErrors, OverrideValuesAreCheckedLikeFileValues) {
  EXPECT_EQ(error_of(kMinimal, {"data.batch_size=-3"}),
            "override 'data.batch_size=-3': data.batch_size: must be >= 1, got -3");
  EXPECT_EQ(error_of(kMinimal, {"model.hidden=[256,x]"}),
            "override 'model.hidden=[256,x]': model.hidden[1]: expected an integer, got 'x'");
  EXPECT_EQ(error_of(kMinimal, {"model.hidden=[256"}),
            "override 'model.hidden=[256': model.hidden: YAML syntax error in the value: end of "
            "sequence flow not found");
  EXPECT_EQ(error_of(kMinimal, {"model.name="}),
            "override 'model.name=': model.name: expected a string, got null");
}

TEST(ConfigErrors, BadSlurmTimeFormat) {
  for (const char* bad : {"1h", "01:75:00", "1-25:00:00", "10:00", "1:2:3"}) {
    EXPECT_EQ(error_of(kMinimal + "cluster:\n  slurm:\n    time: " + bad + "\n"),
              "exp.yaml:7:11: cluster.slurm.time: expected HH:MM:SS or D-HH:MM:SS, got '" +
                  std::string(bad) + "'");
  }
  EXPECT_EQ(
      error_of(kMinimal, {"cluster.slurm.time=00:00:00"}),
      "override 'cluster.slurm.time=00:00:00': cluster.slurm.time: must be longer than 00:00:00");
  for (const char* good : {"00:30:00", "100:00:00", "2-12:00:00", "0-00:00:01"})
    EXPECT_EQ(parse_config(kMinimal, "exp.yaml", {std::string("cluster.slurm.time=") + good})
                  .cluster.slurm.time,
              good);
}

TEST(ConfigErrors, TraceStepsMustBeAWindowOfAtLeastOneStep) {
  EXPECT_EQ(error_of(kMinimal + "logging:\n  trace: true\n  trace_steps: [30, 30]\n"),
            "exp.yaml:7:16: logging.trace_steps: expected [first, end] with end > first (the steps "
            "first .. end-1 are traced), got [30, 30]");
  EXPECT_EQ(error_of(kMinimal + "logging:\n  trace_steps: [3]\n"),
            "exp.yaml:6:16: logging.trace_steps: expected 2 integers [first, end], got 1");
  EXPECT_EQ(error_of(kMinimal, {"logging.trace_steps=[5,9]"}), "no error");
}

}  // namespace
}  // namespace tandem
