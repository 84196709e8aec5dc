// The `tandem` executable run as a user runs it (a subprocess through /bin/sh): help and version,
// exit codes (0 success, 1 runtime failure, 2 bad usage or config), `config validate|show` on the
// shipped experiments, and a tiny synthetic `tandem train` with its final line.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <string>

#include "core/io/safetensors.h"
#include "tests/support/test_support.h"

#ifndef TANDEM_BINARY
#error "TANDEM_BINARY (the path of the tandem executable) must be defined by the build"
#endif

namespace tandem {
namespace {

namespace fs = std::filesystem;

struct Outcome {
  int rc = -1;
  std::string out, err;
};

// Runs `tandem ARGS` (ARGS as written for /bin/sh) in `cwd` (the test's own when empty).
Outcome tandem(const std::string& args, const std::string& cwd = "") {
  const std::string dir = testing::temp_dir();
  std::string cmd =
      "'" TANDEM_BINARY "' " + args + " >'" + dir + "/out' 2>'" + dir + "/err' </dev/null";
  if (!cwd.empty()) cmd = "cd '" + cwd + "' && " + cmd;
  const int status = std::system(cmd.c_str());
  Outcome o;
  o.rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  o.out = read_file(dir + "/out");
  o.err = read_file(dir + "/err");
  return o;
}

std::string source(const std::string& relative) {
  return std::string(TANDEM_SOURCE_DIR) + "/" + relative;
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

void write(const std::string& path, const std::string& text) {
  std::ofstream f(path);
  f << text;
}

constexpr const char* kFashionMnist = "/usr/share/datasets/fashion-mnist";

TEST(Cli, VersionFlagPrintsTheVersionAndSucceeds) {
  Outcome o = tandem("--version");
  EXPECT_EQ(o.rc, 0) << o.err;
  EXPECT_TRUE(std::regex_search(o.out, std::regex(R"(^tandem \d+\.\d+\.\d+\n?$)"))) << o.out;
}

TEST(Cli, HelpListsTheTrainAndConfigCommands) {
  Outcome o = tandem("--help");
  EXPECT_EQ(o.rc, 0) << o.err;
  EXPECT_TRUE(std::regex_search(o.out, std::regex(R"(\n\s+train\s)"))) << o.out;
  EXPECT_TRUE(std::regex_search(o.out, std::regex(R"(\n\s+config\s)"))) << o.out;
}

TEST(Cli, NoCommandAtAllIsAUsageError) {
  Outcome o = tandem("");
  EXPECT_EQ(o.rc, 2) << o.out << o.err;
}

TEST(Cli, TrainWithoutAConfigIsAUsageError) {
  Outcome o = tandem("train");
  EXPECT_EQ(o.rc, 2) << o.out << o.err;
  EXPECT_TRUE(contains(o.err, "config")) << o.err;
}

TEST(Cli, TrainWithAMissingConfigFileExitsTwoNamingThePath) {
  const std::string path = testing::temp_dir() + "/missing.yaml";
  Outcome o = tandem("train '" + path + "'");
  EXPECT_EQ(o.rc, 2) << o.out << o.err;
  EXPECT_TRUE(contains(o.err, path)) << o.err;
  EXPECT_EQ(std::count(o.err.begin(), o.err.end(), '\n'), 1) << "one line: " << o.err;
}

TEST(Cli, ConfigValidateAcceptsEveryShippedFashionMnistAndSyntheticExperiment) {
  if (!fs::exists(std::string(kFashionMnist) + "/train-images-idx3-ubyte.gz") &&
      !fs::exists(std::string(kFashionMnist) + "/train-images-idx3-ubyte"))
    GTEST_SKIP() << "dataset-fashion-mnist is not installed: data.path checks cannot pass";
  for (const char* name : {"fashion_mnist_mlp", "fashion_mnist_cnn", "resnet50_synthetic"}) {
    Outcome o =
        tandem("config validate '" + source(std::string("configs/") + name + ".yaml") + "'");
    EXPECT_EQ(o.rc, 0) << name << ": " << o.err;
    EXPECT_EQ(o.err, "") << name;
  }
}

TEST(Cli, ConfigValidateOfTheCifarExperimentWithoutItsDataNamesTheMissingDirectory) {
  // Run from an empty directory, where the relative default data/cifar-10-batches-bin cannot exist.
  const std::string cwd = testing::temp_dir();
  Outcome o = tandem("config validate '" + source("configs/cifar10_simple_cnn.yaml") + "'", cwd);
  EXPECT_EQ(o.rc, 2) << o.out << o.err;
  EXPECT_TRUE(contains(o.err, "data.path")) << o.err;
  EXPECT_TRUE(contains(o.err, "cifar-10-batches-bin")) << o.err;

  // With the check pointed at a directory that exists, the rest of the file is valid.
  fs::create_directories(cwd + "/data/cifar-10-batches-bin");
  for (const char* f : {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                        "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"})
    write(cwd + "/data/cifar-10-batches-bin/" + f, "");
  Outcome ok = tandem("config validate '" + source("configs/cifar10_simple_cnn.yaml") + "'", cwd);
  EXPECT_EQ(ok.rc, 0) << ok.err;
}

TEST(Cli, ConfigShowPrintsAConfigThatValidatesAndShowsTheSame) {
  const std::string dir = testing::temp_dir();
  Outcome shown = tandem("config show '" + source("configs/resnet50_synthetic.yaml") +
                         "' training.epochs=3 'model.num_classes=7'");
  ASSERT_EQ(shown.rc, 0) << shown.err;
  EXPECT_TRUE(contains(shown.out, "epochs: 3")) << shown.out;
  EXPECT_TRUE(contains(shown.out, "num_classes: 7")) << shown.out;
  // Every section is printed, defaults included.
  for (const char* section : {"model:", "data:", "optimizer:", "schedule:", "training:",
                              "strategy:", "checkpoint:", "logging:", "cluster:"})
    EXPECT_TRUE(contains(shown.out, std::string("\n") + section) ||
                shown.out.rfind(section, 0) == 0)
        << section;

  const std::string copy = dir + "/shown.yaml";
  write(copy, shown.out);
  Outcome valid = tandem("config validate '" + copy + "'");
  EXPECT_EQ(valid.rc, 0) << valid.err;
  Outcome again = tandem("config show '" + copy + "'");
  ASSERT_EQ(again.rc, 0) << again.err;
  EXPECT_EQ(again.out, shown.out);
}

TEST(Cli, ABadOverrideExitsTwoNamingTheOverride) {
  Outcome o =
      tandem("config validate '" + source("configs/resnet50_synthetic.yaml") + "' optimizer.lr=-1");
  EXPECT_EQ(o.rc, 2) << o.out << o.err;
  EXPECT_TRUE(contains(o.err, "override 'optimizer.lr=-1'")) << o.err;
  EXPECT_TRUE(contains(o.err, "optimizer.lr")) << o.err;

  Outcome typo =
      tandem("train '" + source("configs/resnet50_synthetic.yaml") + "' optimizer.lrr=0.1");
  EXPECT_EQ(typo.rc, 2) << typo.out << typo.err;
  EXPECT_TRUE(contains(typo.err, "override 'optimizer.lrr=0.1'")) << typo.err;
  EXPECT_TRUE(contains(typo.err, "did you mean")) << typo.err;
}

// A tiny synthetic experiment: an mlp on 1x8x8 noise, 256 samples, batch 16 (16 steps per epoch).
std::string tiny_experiment(const std::string& dir) {
  const std::string path = dir + "/tiny.yaml";
  std::string yaml = R"(
model: {name: mlp, hidden: [16]}
data: {name: synthetic, synthetic_shape: [1, 8, 8], synthetic_samples: 256, batch_size: 16, workers: 0}
optimizer: {name: adam, lr: 0.001}
training: {epochs: 2, threads: 1}
checkpoint: {dir: '@DIR@/ck', every_steps: 0}
logging: {dir: '@DIR@/logs', progress: plain, every_steps: 4}
)";
  for (size_t at; (at = yaml.find("@DIR@")) != std::string::npos;) yaml.replace(at, 5, dir);
  write(path, yaml);
  return path;
}

// Shared memory connects the ranks of one host only: a job spread over hosts (LOCAL_WORLD_SIZE <
// WORLD_SIZE) that asks for it is a config error naming the key, before anything connects.
TEST(Cli, SharedMemoryBackendAcrossHostsExitsTwoNamingTheKey) {
  const std::string dir = testing::temp_dir();
  const std::string cfg = tiny_experiment(dir);
  // Run with torchrun-style variables of rank 0 of 2 on a node holding 1 of them.
  const std::string env =
      "RANK=0 LOCAL_RANK=0 WORLD_SIZE=2 LOCAL_WORLD_SIZE=1 "
      "MASTER_ADDR=127.0.0.1 MASTER_PORT=1 TANDEM_JOB_TOKEN=x ";
  const std::string cmd = env + "'" TANDEM_BINARY "' train '" + cfg +
                          "' strategy.name=ddp strategy.backend=shm >'" + dir + "/o' 2>'" + dir +
                          "/e' </dev/null";
  const int status = std::system(cmd.c_str());
  const std::string err = read_file(dir + "/e");
  EXPECT_EQ(WIFEXITED(status) ? WEXITSTATUS(status) : -1, 2) << err;
  EXPECT_TRUE(contains(err, "strategy.backend: shm connects the ranks of one host")) << err;
  EXPECT_TRUE(contains(err, "2 ranks and 1 on this host")) << err;
}

TEST(Cli, TrainPrintsTheFinalLineWithEveryFigure) {
  const std::string dir = testing::temp_dir();
  Outcome o = tandem("train '" + tiny_experiment(dir) + "'");
  ASSERT_EQ(o.rc, 0) << o.out << o.err;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(
      o.out, m,
      std::regex(
          R"((?:^|\n)final: epoch=(\d+) step=(\d+) train_loss=([0-9.]+) test_loss=([0-9.]+) )"
          R"(test_accuracy=([0-9.]+) samples_per_sec=([0-9.]+)\n$)")))
      << o.out;
  EXPECT_EQ(m[1], "2");
  EXPECT_EQ(m[2], "32");
  EXPECT_GT(std::stod(m[3]), 0);
  EXPECT_GT(std::stod(m[4]), 0);
  EXPECT_GE(std::stod(m[5]), 0);
  EXPECT_LE(std::stod(m[5]), 1);
  EXPECT_GT(std::stod(m[6]), 0);
  EXPECT_TRUE(fs::exists(dir + "/ck/step-00000032/model.safetensors"));
  EXPECT_TRUE(fs::exists(dir + "/logs/metrics.jsonl"));

  // The same command again resumes from the last checkpoint, which is the end: nothing to train,
  // and the final line reports the same model's test figures.
  Outcome again = tandem("train '" + tiny_experiment(dir) + "'");
  ASSERT_EQ(again.rc, 0) << again.out << again.err;
  EXPECT_TRUE(contains(again.out, "resumed from " + dir + "/ck/step-00000032")) << again.out;
  EXPECT_TRUE(contains(again.out, "final: epoch=2 step=32 ")) << again.out;
  EXPECT_TRUE(
      contains(again.out, " test_loss=" + m[4].str() + " test_accuracy=" + m[5].str() + " "))
      << again.out;
}

TEST(Cli, ARuntimeFailureExitsOne) {
  const std::string dir = testing::temp_dir();
  Outcome o = tandem("train '" + tiny_experiment(dir) +
                     "' optimizer.name=sgd optimizer.lr=1e30 training.max_nonfinite_steps=2");
  EXPECT_EQ(o.rc, 1) << o.out << o.err;
  EXPECT_TRUE(contains(o.err, "tandem: error: training diverged")) << o.err;
}

// Resuming a checkpoint trained with other math (a learning rate, a batch size, a model) is
// refused, naming the keys, unless checkpoint.allow_config_change says otherwise; keys that only
// say how long or how to run (epochs, threads, logging) may change freely.
TEST(Cli, ResumingACheckpointOfDifferentMathIsRefusedNamingTheKeys) {
  const std::string dir = testing::temp_dir();
  const std::string cfg = "train '" + tiny_experiment(dir) + "' training.epochs=1";
  ASSERT_EQ(tandem(cfg).rc, 0);
  Outcome changed = tandem(cfg + " optimizer.lr=0.002 data.batch_size=32");
  EXPECT_EQ(changed.rc, 2) << changed.out << changed.err;
  EXPECT_TRUE(contains(changed.err,
                       "was trained with other values of data.batch_size (16, now "
                       "32), optimizer.lr (0.001, now 0.002)"))
      << changed.err;
  EXPECT_TRUE(contains(changed.err, "checkpoint.allow_config_change=true")) << changed.err;
  EXPECT_FALSE(fs::exists(dir + "/ck/step-00000032")) << "it trained anyway";

  Outcome longer = tandem(cfg + " training.epochs=2 training.threads=2 logging.every_steps=8");
  ASSERT_EQ(longer.rc, 0) << longer.out << longer.err;
  EXPECT_TRUE(contains(longer.out, "resumed from " + dir + "/ck/step-00000016")) << longer.out;

  Outcome allowed = tandem(cfg + " training.epochs=3 optimizer.lr=0.002 " +
                           "checkpoint.allow_config_change=true");
  ASSERT_EQ(allowed.rc, 0) << allowed.out << allowed.err;
  EXPECT_TRUE(contains(allowed.err, "warning: resuming")) << allowed.err;
  EXPECT_TRUE(contains(allowed.err, "optimizer.lr (0.001, now 0.002)")) << allowed.err;
  EXPECT_TRUE(fs::exists(dir + "/ck/step-00000048/model.safetensors"));
}

}  // namespace
}  // namespace tandem
