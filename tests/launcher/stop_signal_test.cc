// StopSignals (launcher/stop_signal.h): which signal after the first means "stop now", and the
// handler of `tandem train` built on it, in a real process that gets one preemption twice.
#include "launcher/stop_signal.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "tests/support/test_support.h"

namespace tandem {
namespace {

using Meaning = StopSignals::Meaning;
using std::chrono::milliseconds;

TEST(StopSignals, ASigtermWithinTheWindowOfTheFirstIsTheSameRequest) {
  StopSignals s(milliseconds(60'000));
  EXPECT_EQ(s.classify(SIGTERM), Meaning::kFirst);
  EXPECT_EQ(s.classify(SIGTERM), Meaning::kSameRequest);
  EXPECT_EQ(s.classify(SIGTERM), Meaning::kSameRequest);
}

TEST(StopSignals, SigintAfterAFirstSignalMeansNow) {
  StopSignals a(milliseconds(60'000));
  EXPECT_EQ(a.classify(SIGINT), Meaning::kFirst);
  EXPECT_EQ(a.classify(SIGINT), Meaning::kNow);  // Ctrl-C twice
  StopSignals b(milliseconds(60'000));
  EXPECT_EQ(b.classify(SIGTERM), Meaning::kFirst);
  EXPECT_EQ(b.classify(SIGINT), Meaning::kNow);  // the agent releasing a parameter server
  StopSignals c(milliseconds(60'000));
  EXPECT_EQ(c.classify(SIGINT), Meaning::kFirst);
  EXPECT_EQ(c.classify(SIGTERM), Meaning::kNow);  // the window follows a SIGTERM only
}

TEST(StopSignals, ASigtermAfterTheWindowMeansNowAndResetForgetsTheFirst) {
  StopSignals s(milliseconds(50));
  EXPECT_EQ(s.classify(SIGTERM), Meaning::kFirst);
  std::this_thread::sleep_for(milliseconds(120));
  EXPECT_EQ(s.classify(SIGTERM), Meaning::kNow);
  s.reset();
  EXPECT_EQ(s.classify(SIGTERM), Meaning::kFirst);
}

// `tandem train` as Slurm preempts it: SIGTERM, and the same SIGTERM again 20 ms later (the agent's
// forward). It must save the stop's checkpoint and exit 130; a SIGINT after the first SIGTERM must
// still end it at once, killed by SIGINT. The MLP is large enough (2048-2048, 4.2 M parameters)
// that the step in flight and the stop's checkpoint (50 MB with Adam's moments) take far longer
// than 20 ms, so the second signal always finds the process saving.
int run_train_and_signal(const std::string& dir, int second_signal, std::string* err) {
  const std::string cfg = dir + "/exp.yaml";
  std::ofstream(cfg) << "model: {name: mlp, hidden: [2048, 2048]}\n"
                        "data: {name: synthetic, synthetic_shape: [1, 8, 8], "
                        "synthetic_samples: 4096, batch_size: 16, workers: 0}\n"
                        "training: {epochs: 100000, threads: 1, eval_every_epoch: false}\n"
                        "checkpoint: {dir: '"
                     << dir << "/ck', every_steps: 0}\nlogging: {dir: '" << dir
                     << "/log', every_steps: 1, progress: none, tensorboard: false}\n";
  const std::string err_path = dir + "/err.log";
  pid_t pid = fork();
  if (pid == 0) {
    freopen(err_path.c_str(), "w", stderr);
    freopen((dir + "/out.log").c_str(), "w", stdout);
    execl(TANDEM_BINARY, TANDEM_BINARY, "train", cfg.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  // Until it trains (its metrics file has a line), at most 60 s.
  for (int i = 0; i < 600; ++i) {
    std::ifstream m(dir + "/log/metrics.jsonl");
    if (m && m.peek() != EOF) break;
    std::this_thread::sleep_for(milliseconds(100));
  }
  kill(pid, SIGTERM);
  std::this_thread::sleep_for(milliseconds(20));
  kill(pid, second_signal);
  int status = 0;
  for (int i = 0; i < 600 && waitpid(pid, &status, WNOHANG) == 0; ++i)
    std::this_thread::sleep_for(milliseconds(100));
  if (waitpid(pid, &status, WNOHANG) == 0) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
  }
  std::stringstream e;
  e << std::ifstream(err_path).rdbuf() << std::ifstream(dir + "/out.log").rdbuf();
  *err = e.str();
  return status;
}

TEST(TrainSignals, SavesWhenOnePreemptionArrivesAsTwoSigterms) {
  const std::string dir = testing::temp_dir();
  std::string out;
  const int status = run_train_and_signal(dir, SIGTERM, &out);
  ASSERT_TRUE(WIFEXITED(status)) << "status " << status << ": " << out;
  EXPECT_EQ(WEXITSTATUS(status), 130) << out;
  EXPECT_NE(out.find("SIGTERM again within 5 s of the first: the same stop request"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("stopped at step"), std::string::npos) << out;
}

TEST(TrainSignals, EndsAtOnceOnSigintAfterSigterm) {
  const std::string dir = testing::temp_dir();
  std::string out;
  const int status = run_train_and_signal(dir, SIGINT, &out);
  ASSERT_TRUE(WIFSIGNALED(status)) << "status " << status << ": " << out;
  EXPECT_EQ(WTERMSIG(status), SIGINT) << out;
}

}  // namespace
}  // namespace tandem
