// Crash safety: a child process saves a 128 MiB checkpoint in a loop and is SIGKILLed at random
// moments, spread over the phases of a save by timing one first (serializing, writing, fsync,
// rename, pruning, the next save); the parent then checks that every `step-*` directory loads
// (none is half-written), the newest complete checkpoint survived, and the next save removes the
// dead child's .tmp directory.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <random>
#include <set>
#include <thread>

#include "core/io/checkpoint.h"
#include "tests/support/test_support.h"

namespace tandem {
namespace {

namespace fs = std::filesystem;

// Filled with plain loops. The parent builds the tensors and the children inherit them (no copy
// until written), so a child starts saving at once; children must not touch OpenMP, whose thread
// pool does not survive fork.
Tensor filled(const Shape& shape, float base) {
  Tensor t = empty(shape);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = base + static_cast<float>(i % 1024);
  return t;
}

// 96 MiB of model and 32 MiB of optimizer state; element 0 of each tensor carries the step.
struct Big {
  NamedTensors model, optimizer;
  explicit Big(int64_t step) {
    model.emplace_back("encoder.weight", filled({4096, 4096}, 0));                      // 64 MiB
    model.emplace_back("decoder.weight", filled({1024, 4096}, 1));                      // 16 MiB
    model.emplace_back("head.weight", filled({1024, 4096}, 2));                         // 16 MiB
    optimizer.emplace_back("encoder.weight.momentum_buffer", filled({2048, 4096}, 3));  // 32 MiB
    optimizer.emplace_back("step", scalar_tensor(0, DType::kI64));
    set_step(step);
  }
  void set_step(int64_t step) {
    for (auto& [name, t] : model) t.data<float>()[0] = static_cast<float>(step);
    optimizer[0].second.data<float>()[0] = static_cast<float>(step);
    optimizer[1].second.data<int64_t>()[0] = step;
  }
};

TrainerState state_for(int64_t step) {
  TrainerState s;
  s.step = step;
  s.epoch = step / 1000;
  s.rng["data"] = {7, 1, static_cast<uint64_t>(step) * 64};
  return s;
}

int count_tmp(const std::string& dir) {
  int n = 0;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().rfind(".tmp-", 0) == 0) ++n;
  return n;
}

// Forks a child that saves steps first_step, first_step + 1, ... of `big` with keep=2 until
// killed. Returns its pid once it is about to start the first save.
pid_t start_saver(const std::string& dir, Big& big, int64_t first_step) {
  int fds[2];
  if (::pipe(fds) != 0) throw IoError("pipe failed");
  pid_t pid = ::fork();
  if (pid < 0) throw IoError("fork failed");
  if (pid == 0) {
    ::close(fds[0]);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive a test binary that died
    try {
      char ready = 'r';
      if (::write(fds[1], &ready, 1) != 1) ::_exit(4);
      for (int64_t step = first_step;; ++step) {
        big.set_step(step);
        save_checkpoint(dir, big.model, big.optimizer, state_for(step), /*keep=*/2);
      }
    } catch (const std::exception& e) {
      std::fprintf(stderr, "saver child: %s\n", e.what());
    }
    ::_exit(3);  // never exit(): that would run the parent's atexit handlers
  }
  ::close(fds[1]);
  char ready = 0;
  ssize_t got = ::read(fds[0], &ready, 1);
  ::close(fds[0]);
  if (got != 1) throw IoError("saver child died before it was ready");
  return pid;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

TEST(CheckpointCrash, SigkillWhileSavingNeverLeavesAPartialCheckpoint) {
  const std::string dir = testing::temp_dir() + "/ckpt";
  Big big(1);
  const auto t0 = std::chrono::steady_clock::now();
  save_checkpoint(dir, big.model, big.optimizer, state_for(1), 2);
  const double save_s = seconds_since(t0);

  std::mt19937 rng(std::random_device{}());
  std::set<std::string> verified;  // step-* directories never change once published
  int64_t newest_complete = 1;
  int rounds_killed_mid_save = 0;
  // Fractions of one save's time: early (serializing), writing, fsync, rename and pruning, and
  // well into the following save.
  const double fractions[] = {0.05, 0.3, 0.6, 0.9, 1.5};
  for (int round = 0; round < 5; ++round) {
    const int64_t first_step = 1000 * (round + 1);
    const double delay_s =
        save_s * (fractions[round] + 0.1 * std::uniform_real_distribution<>()(rng));
    pid_t pid = start_saver(dir, big, first_step);
    std::this_thread::sleep_for(std::chrono::duration<double>(delay_s));
    ASSERT_EQ(::kill(pid, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        << "round " << round << ": the saver exited by itself (status " << status << ")";
    if (count_tmp(dir) > 0) ++rounds_killed_mid_save;

    // Every step-* directory is complete and verified; the newest never goes backwards.
    auto list = list_checkpoints(dir);
    ASSERT_FALSE(list.empty()) << "round " << round << " (killed after " << delay_s << " s)";
    for (const auto& [step, path] : list) {
      if (verified.count(path)) continue;
      LoadedCheckpoint c;
      ASSERT_NO_THROW(c = load_checkpoint(path))
          << "round " << round << " (killed after " << delay_s << " s): " << path;
      EXPECT_EQ(c.state.step, step);
      EXPECT_EQ(c.model[0].second.data<float>()[0], static_cast<float>(step));
      EXPECT_EQ(c.optimizer[1].second.data<int64_t>()[0], step);
      EXPECT_EQ(c.model[2].second.data<float>()[5], 2.0f + 5.0f);
      verified.insert(path);
    }
    EXPECT_GE(list.back().first, newest_complete) << "round " << round;
    newest_complete = list.back().first;
  }
  // The earliest kill lands in the first save of its child: the checks above saw a crash's
  // leftovers at least once.
  EXPECT_GE(rounds_killed_mid_save, 1);

  std::vector<std::string> warnings;
  auto latest = find_latest_checkpoint(dir, &warnings);
  ASSERT_TRUE(latest.has_value());
  EXPECT_TRUE(warnings.empty()) << warnings.front();
  EXPECT_EQ(*latest, dir + "/" + checkpoint_dir_name(newest_complete));

  big.set_step(99999);
  save_checkpoint(dir, big.model, big.optimizer, state_for(99999), 2);
  EXPECT_EQ(count_tmp(dir), 0);
  auto list = list_checkpoints(dir);
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list.back().first, 99999);
  EXPECT_EQ(list.front().first, newest_complete);
}

}  // namespace
}  // namespace tandem
