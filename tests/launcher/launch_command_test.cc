// `tandem launch` as a user runs it: the real `tandem` binary, whose workers are `tandem train`
// on a tiny synthetic experiment; usage errors before any worker starts.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <fstream>
#include <sstream>
#include <string>

#include "tests/support/test_support.h"

#ifndef TANDEM_BINARY
#error "TANDEM_BINARY (the path of the tandem executable) must be defined by the build"
#endif

namespace tandem {
namespace {

struct Outcome {
  int rc = -1;
  std::string out, err;
};

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Runs `ENV tandem ARGS` through /bin/sh in a fresh directory.
Outcome tandem(const std::string& args, const std::string& env = "") {
  const std::string dir = testing::temp_dir();
  std::string cmd = "cd '" + dir + "' && " + env + " '" TANDEM_BINARY "' " + args + " >'" + dir +
                    "/out' 2>'" + dir + "/err' </dev/null";
  int status = std::system(cmd.c_str());
  Outcome o;
  o.rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  o.out = read_file(dir + "/out");
  o.err = read_file(dir + "/err");
  return o;
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

int count_lines(const std::string& text) {
  int n = 0;
  for (char c : text) n += c == '\n';
  return n;
}

std::string tiny_experiment() {
  std::string dir = testing::temp_dir();
  std::ofstream(dir + "/tiny.yaml") << "seed: 0\n"
                                       "model: {name: mlp, hidden: [16]}\n"
                                       "data: {name: synthetic, synthetic_shape: [1, 4, 4], "
                                       "synthetic_samples: 64, batch_size: 16}\n"
                                       "optimizer: {name: sgd, lr: 0.01}\n"
                                       "training: {epochs: 1}\n"
                                       "checkpoint: {dir: " +
                                           dir +
                                           "/ckpt}\n"
                                           "logging: {dir: " +
                                           dir + "/logs}\n";
  return dir + "/tiny.yaml";
}

TEST(AgentCommand, LaunchRunsTandemTrainAsAWorkerWithItsOutputPrefixed) {
  Outcome o = tandem("launch --nproc-per-node 1 '" + tiny_experiment() + "' training.max_steps=2");
  EXPECT_EQ(o.rc, 0) << o.out << o.err;
  EXPECT_TRUE(contains(o.out, "[rank 0] final: ")) << o.out;
  EXPECT_TRUE(
      contains(o.err, "tandem launch: node 0 of 1: 1 worker (rank 0 of 1), store at 127.0.0.1:"))
      << o.err;
}

TEST(AgentCommand, ABadExperimentIsAUsageErrorBeforeAnyWorkerStarts) {
  Outcome o = tandem("launch --nproc-per-node 2 '" + tiny_experiment() + "' training.epochs=-1");
  EXPECT_EQ(o.rc, 2) << o.out << o.err;
  EXPECT_EQ(count_lines(o.err), 1) << o.err;
  EXPECT_TRUE(contains(o.err, "training.epochs")) << o.err;
  EXPECT_FALSE(contains(o.out + o.err, "[rank")) << "a worker ran";
}

TEST(AgentCommand, OptionsThatCannotMakeAJobAreUsageErrors) {
  std::string cfg = tiny_experiment();
  Outcome o = tandem("launch --nnodes 2 --node-rank 1 '" + cfg + "'");
  EXPECT_EQ(o.rc, 2) << o.err;
  EXPECT_TRUE(contains(o.err, "--nnodes 2 needs --rdzv-endpoint")) << o.err;
  EXPECT_EQ(count_lines(o.err), 1) << o.err;

  o = tandem("launch --nproc-per-node 0 '" + cfg + "'");
  EXPECT_EQ(o.rc, 2) << o.err;

  o = tandem("launch --nnodes 2 --rdzv-endpoint 127.0.0.1:1 '" + cfg + "'");
  EXPECT_EQ(o.rc, 2) << o.err;
  EXPECT_TRUE(contains(o.err, "TANDEM_JOB_TOKEN")) << o.err;
}

TEST(AgentCommand, FlagsMayComeFromPetVariablesAsWithTorchrun) {
  // PET_NNODES=2 alone: the same complaint as --nnodes 2 without an endpoint.
  Outcome o = tandem("launch '" + tiny_experiment() + "'", "PET_NNODES=2");
  EXPECT_EQ(o.rc, 2) << o.err;
  EXPECT_TRUE(contains(o.err, "--nnodes 2 needs --rdzv-endpoint")) << o.err;
}

// --exec runs any program as the workers (torchrun's --no-python): each sees the launcher's
// variables, its arguments arrive as given, and its output is prefixed with its rank.
TEST(AgentCommand, ExecRunsAnyProgramWithTheTorchrunVariables) {
  Outcome o = tandem(
      "launch --nproc-per-node 2 --exec -- sh -c 'echo \"$0 $RANK/$WORLD_SIZE $LOCAL_RANK "
      "$MASTER_ADDR\"' -x");
  EXPECT_EQ(o.rc, 0) << o.out << o.err;
  EXPECT_TRUE(contains(o.out, "[rank 0] -x 0/2 0 127.0.0.1\n")) << o.out;
  EXPECT_TRUE(contains(o.out, "[rank 1] -x 1/2 1 127.0.0.1\n")) << o.out;
}

TEST(AgentCommand, ExecOfAMissingProgramIsAUsageErrorNamingIt) {
  Outcome o = tandem("launch --nproc-per-node 2 --exec no-such-program-tandem arg");
  EXPECT_EQ(o.rc, 2) << o.err;
  EXPECT_EQ(o.err, "tandem: error: --exec: no program 'no-such-program-tandem' on PATH\n");
  o = tandem("launch --exec ./not-here");
  EXPECT_EQ(o.rc, 2) << o.err;
  EXPECT_EQ(o.err, "tandem: error: --exec: './not-here' is not an executable file\n");
}

}  // namespace
}  // namespace tandem
