// WorkerGroup (launcher/agent_workers.h) on real processes: stopping a worker that ignores SIGTERM
// is bounded by the grace period, then SIGKILL.
#include "launcher/agent_workers.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <thread>

#include "tests/support/test_support.h"

namespace tandem {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

bool wait_for_file(const std::string& path, milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  struct stat st;
  while (stat(path.c_str(), &st) != 0) {
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(milliseconds(20));
  }
  return true;
}

TEST(WorkerGroup, StopSigkillsAWorkerThatIgnoresSigtermWhenTheGraceEnds) {
  const std::string dir = testing::temp_dir();
  const int null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
  ASSERT_GE(null_fd, 0);
  std::vector<WorkerExit> exits;
  double seconds = 0;
  {
    WorkerGroup group(null_fd, null_fd);
    WorkerSpec spec;
    spec.rank = 0;
    spec.env = {"PATH=/usr/bin:/bin", "RANK=0", "WORLD_SIZE=1"};
    group.start({TANDEM_FAKE_WORKER, "--record", dir, "--ignore-signals", "--sleep-ms", "60000"},
                {spec});
    ASSERT_TRUE(wait_for_file(dir + "/rank0.restart0.started", milliseconds(20000)));
    const auto t0 = Clock::now();
    group.stop(milliseconds(700));
    seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    exits = group.take_exits();
    EXPECT_TRUE(group.all_finished());
  }
  close(null_fd);
  EXPECT_GE(seconds, 0.7) << "SIGKILL before the grace period ended";
  EXPECT_LT(seconds, 0.7 + 1.5) << "grace + the output drain";
  ASSERT_EQ(exits.size(), 1u);
  EXPECT_EQ(exits[0].rank, 0);
  EXPECT_EQ(describe_exit(exits[0]), "worker rank 0 exited with status 137 (killed by SIGKILL)");
}

}  // namespace
}  // namespace tandem
