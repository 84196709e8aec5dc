// The agent of `tandem launch` (launcher/agent.h) with real processes: a fake worker
// (fake_worker.cc) in place of `tandem train`, run by run_agent in this process, or by a fake
// agent process (fake_agent.cc) where the test sends signals or runs two agents as two nodes.
#include "launcher/agent.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include "collectives/store/store_client.h"
#include "core/base/error.h"
#include "strategies/process_environment.h"
#include "tests/support/test_support.h"

extern char** environ;

namespace tandem {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr const char* kToken = "0123456789abcdef-test-token";

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

bool exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

bool has_line(const std::string& text, const std::string& line) {
  for (const std::string& l : lines_of(text))
    if (l == line) return true;
  return false;
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// The port the agent printed: "tandem launch: ... store at 127.0.0.1:PORT".
std::string store_port(const std::string& err) {
  std::smatch m;
  if (!std::regex_search(err, m, std::regex("store at 127\\.0\\.0\\.1:([0-9]+)"))) return "?";
  return m[1];
}

AgentOptions fast_options(int nproc) {
  AgentOptions o;
  o.nproc_per_node = nproc;
  o.monitor_interval = milliseconds(100);
  o.heartbeat_timeout = milliseconds(0);
  o.stop_grace = milliseconds(3000);
  o.restart_backoff = milliseconds(0);
  o.job_token = kToken;
  o.cpu_count = 4;
  o.environment = {{"PATH", "/usr/bin:/bin"}, {"INHERITED", "yes"}};
  return o;
}

struct JobResult {
  int code = -1;
  std::string out, err;
  double seconds = 0;
};

// run_agent with the fake worker and `args`; its output captured in files.
JobResult run_job(AgentOptions o, const std::vector<std::string>& args) {
  std::string dir = testing::temp_dir();
  int out = open((dir + "/out").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  int err = open((dir + "/err").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  o.out_fd = out;
  o.err_fd = err;
  std::vector<std::string> argv = {TANDEM_FAKE_WORKER};
  argv.insert(argv.end(), args.begin(), args.end());
  JobResult r;
  auto start = Clock::now();
  r.code = run_agent(o, argv);
  r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  close(out);
  close(err);
  r.out = read_file(dir + "/out");
  r.err = read_file(dir + "/err");
  return r;
}

// A process with extra variables and its output in files.
struct Process {
  pid_t pid = -1;
  std::string out_path, err_path;
  std::string out() const { return read_file(out_path); }
  std::string err() const { return read_file(err_path); }
};

Process spawn(const std::vector<std::string>& argv, const std::map<std::string, std::string>& extra,
              const std::string& name) {
  std::string dir = testing::temp_dir();
  Process p;
  p.out_path = dir + "/" + name + ".out";
  p.err_path = dir + "/" + name + ".err";
  std::map<std::string, std::string> env = current_environment();
  for (const auto& [k, v] : extra) env[k] = v;
  std::vector<std::string> env_strings;
  for (const auto& [k, v] : env) env_strings.push_back(k + "=" + v);
  std::vector<char*> c_env, c_argv;
  for (std::string& e : env_strings) c_env.push_back(e.data());
  c_env.push_back(nullptr);
  std::vector<std::string> args = argv;
  for (std::string& a : args) c_argv.push_back(a.data());
  c_argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, p.out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0644);
  posix_spawn_file_actions_addopen(&actions, 2, p.err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0644);
  int rc = posix_spawn(&p.pid, c_argv[0], &actions, nullptr, c_argv.data(), c_env.data());
  posix_spawn_file_actions_destroy(&actions);
  EXPECT_EQ(rc, 0) << "cannot start " << argv[0];
  return p;
}

// The wait status of `p`, or -1 after SIGKILLing it when it runs longer than `timeout`.
int wait_for(const Process& p, std::chrono::seconds timeout) {
  auto deadline = Clock::now() + timeout;
  int status = 0;
  while (waitpid(p.pid, &status, WNOHANG) == 0) {
    if (Clock::now() > deadline) {
      kill(p.pid, SIGKILL);
      waitpid(p.pid, &status, 0);
      ADD_FAILURE() << "process still running after " << timeout.count() << " s; stderr:\n"
                    << p.err();
      return -1;
    }
    std::this_thread::sleep_for(milliseconds(20));
  }
  return status;
}

bool wait_for_file(const std::string& path, std::chrono::seconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (!exists(path)) {
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(milliseconds(20));
  }
  return true;
}

int free_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

TEST(Agent, WorkersSeeTorchrunStyleVariablesAndTheJobSucceeds) {
  JobResult r = run_job(fast_options(2), {"--print-env"});
  ASSERT_EQ(r.code, 0) << r.err;
  std::string port = store_port(r.err);
  ASSERT_NE(port, "?") << r.err;
  for (int rank = 0; rank < 2; ++rank) {
    std::string p = "[rank " + std::to_string(rank) + "] ";
    for (const std::string& expected :
         {p + "RANK=" + std::to_string(rank), p + "LOCAL_RANK=" + std::to_string(rank),
          p + "WORLD_SIZE=2", p + "LOCAL_WORLD_SIZE=2", p + "NODE_RANK=0", p + "GROUP_RANK=0",
          p + "MASTER_ADDR=127.0.0.1", p + "MASTER_PORT=" + port, p + "TANDEM_JOB_TOKEN=" + kToken,
          p + "TANDEM_RESTART_COUNT=0", p + "TORCHELASTIC_RESTART_COUNT=0",
          p + "OMP_NUM_THREADS=2",  // 4 cpus / 2 workers
          p + "TANDEM_HEARTBEAT_INTERVAL_MS=<unset>", p + "INHERITED=yes",
          p + "detected source=torchrun rank=" + std::to_string(rank) +
              " local_rank=" + std::to_string(rank) +
              " world_size=2 local_world_size=2 node_rank=0 endpoint=127.0.0.1:" + port})
      EXPECT_TRUE(has_line(r.out, expected)) << "missing: " << expected << "\nin:\n" << r.out;
  }
  EXPECT_FALSE(contains(r.err, kToken)) << "the agent printed the token:\n" << r.err;
}

TEST(Agent, KeepsTheUsersOmpNumThreadsAndAsksForHeartbeatsWhenWatchingThem) {
  AgentOptions o = fast_options(3);
  o.environment["OMP_NUM_THREADS"] = "7";
  o.heartbeat_timeout = milliseconds(4000);  // interval: min(5 s, timeout / 4)
  JobResult r = run_job(o, {"--print-env"});
  ASSERT_EQ(r.code, 0) << r.err;
  for (int rank = 0; rank < 3; ++rank) {
    std::string p = "[rank " + std::to_string(rank) + "] ";
    EXPECT_TRUE(has_line(r.out, p + "OMP_NUM_THREADS=7")) << r.out;
    EXPECT_TRUE(has_line(r.out, p + "TANDEM_HEARTBEAT_INTERVAL_MS=1000")) << r.out;
    EXPECT_TRUE(has_line(r.out, p + "WORLD_SIZE=3")) << r.out;
  }
}

TEST(Agent, PrefixesEveryLineWithItsRankAndNeverMixesPartialLines) {
  JobResult r = run_job(fast_options(3), {"--lines", "15"});
  ASSERT_EQ(r.code, 0) << r.err;
  std::regex line_re(
      R"(\[rank (\d)\] (line (\d+) of rank (\d) written in two pieces|last words of rank (\d)))");
  std::vector<int> next_line(3, 0), last_words(3, 0);
  for (const std::string& line : lines_of(r.out)) {
    std::smatch m;
    ASSERT_TRUE(std::regex_match(line, m, line_re)) << "mixed or unprefixed line: '" << line << "'";
    int rank = std::stoi(m[1]);
    if (m[3].matched) {
      EXPECT_EQ(std::stoi(m[4]), rank) << line;
      EXPECT_EQ(std::stoi(m[3]), next_line[rank]++) << "out of order: " << line;
    } else {
      EXPECT_EQ(std::stoi(m[5]), rank) << line;
      ++last_words[rank];
    }
  }
  EXPECT_EQ(next_line, std::vector<int>({15, 15, 15}));
  EXPECT_EQ(last_words, std::vector<int>({1, 1, 1}));  // the unterminated last line, completed
}

TEST(Agent, RestartsAllWorkersAfterOneIsKilledAndTheJobCompletes) {
  std::string dir = testing::temp_dir();
  AgentOptions o = fast_options(2);
  o.max_restarts = 1;
  // Round 0: rank 1 SIGKILLs itself while rank 0 sleeps; round 1: both finish at once.
  JobResult r = run_job(o, {"--record", dir, "--fail", "1:kill:1", "--sleep-ms", "30000:1"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(contains(r.err,
                       "tandem launch: worker rank 1 exited with status 137 (killed by "
                       "SIGKILL); restarting all 2 workers (restart 1 of 1)\n"))
      << r.err;
  for (const char* f : {"rank0.restart0.started", "rank1.restart0.started",
                        "rank0.restart1.started", "rank1.restart1.started"})
    EXPECT_TRUE(exists(dir + "/" + f)) << f;
  EXPECT_EQ(read_file(dir + "/rank0.restart0.signal"), "15");  // stopped with SIGTERM
  EXPECT_TRUE(has_line(r.out, "[rank 0] rank 0 got signal 15")) << r.out;
  EXPECT_FALSE(exists(dir + "/rank0.restart2.started"));
  EXPECT_LT(r.seconds, 25) << "rank 0 was not stopped";
}

TEST(Agent, WithoutRestartsLeftExitsNonZeroNamingTheRankAndItsStatus) {
  std::string dir = testing::temp_dir();
  JobResult r =
      run_job(fast_options(2), {"--record", dir, "--fail", "1:kill", "--sleep-ms", "30000"});
  EXPECT_EQ(r.code, 1);
  std::vector<std::string> err = lines_of(r.err);
  ASSERT_FALSE(err.empty());
  EXPECT_EQ(err.back(),
            "tandem launch: worker rank 1 exited with status 137 (killed by SIGKILL); "
            "no restarts left (--max-restarts 0)");
  EXPECT_EQ(read_file(dir + "/rank0.restart0.signal"), "15");
  EXPECT_FALSE(exists(dir + "/rank0.restart1.started"));
  EXPECT_LT(r.seconds, 25) << "rank 0 was not stopped";
}

TEST(Agent, GivesUpAfterMaxRestartsWhenAWorkerKeepsFailing) {
  std::string dir = testing::temp_dir();
  AgentOptions o = fast_options(2);
  o.max_restarts = 2;
  JobResult r = run_job(o, {"--record", dir, "--fail", "0:exit3"});
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(contains(r.err,
                       "worker rank 0 exited with status 3; restarting all 2 workers "
                       "(restart 2 of 2)\n"))
      << r.err;
  EXPECT_EQ(
      lines_of(r.err).back(),
      "tandem launch: worker rank 0 exited with status 3; no restarts left (--max-restarts 2)");
  EXPECT_TRUE(exists(dir + "/rank0.restart2.started"));
  EXPECT_FALSE(exists(dir + "/rank0.restart3.started"));
}

TEST(Agent, AWorkerThatExitsWithAUsageErrorEndsTheJobWithItsStatusAndIsNotRestarted) {
  std::string dir = testing::temp_dir();
  AgentOptions o = fast_options(2);
  o.max_restarts = 3;
  JobResult r = run_job(o, {"--record", dir, "--fail", "1:exit2", "--sleep-ms", "30000"});
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_EQ(lines_of(r.err).back(),
            "tandem launch: worker rank 1 exited with status 2 (a usage or configuration error: a "
            "restart would fail the same way); not restarting (exit status 2)");
  EXPECT_EQ(read_file(dir + "/rank0.restart0.signal"), "15");  // the other worker was stopped
  EXPECT_FALSE(exists(dir + "/rank0.restart1.started"));
  EXPECT_FALSE(exists(dir + "/rank1.restart1.started"));
  EXPECT_LT(r.seconds, 25) << "rank 0 was not stopped";
}

TEST(Agent, RestartBackoffDoublesFromTheGivenWaitUpToItsCap) {
  EXPECT_EQ(restart_backoff(milliseconds(1000), 1), milliseconds(1000));
  EXPECT_EQ(restart_backoff(milliseconds(1000), 2), milliseconds(2000));
  EXPECT_EQ(restart_backoff(milliseconds(1000), 3), milliseconds(4000));
  EXPECT_EQ(restart_backoff(milliseconds(1000), 7), milliseconds(64000));
  EXPECT_EQ(restart_backoff(milliseconds(1000), 8), kMaxRestartBackoff);
  EXPECT_EQ(restart_backoff(milliseconds(1000), 1000000), kMaxRestartBackoff);
  EXPECT_EQ(restart_backoff(milliseconds(300), 3), milliseconds(1200));
  EXPECT_EQ(restart_backoff(milliseconds(0), 5), milliseconds(0));
}

// The starts of restart k and k-1 are at least the k-th backoff apart (0.3, 0.6, 1.2 s), measured
// by the modification times of the files each start writes.
TEST(Agent, WaitsADoublingBackoffBeforeEachRestart) {
  std::string dir = testing::temp_dir();
  AgentOptions o = fast_options(1);
  o.max_restarts = 3;
  o.restart_backoff = milliseconds(300);
  JobResult r = run_job(o, {"--record", dir, "--fail", "0:exit3"});
  EXPECT_EQ(r.code, 1) << r.err;
  for (const char* line : {"restarting 1 worker in 0.3 s (restart 1 of 3)\n",
                           "restarting 1 worker in 0.6 s (restart 2 of 3)\n",
                           "restarting 1 worker in 1.2 s (restart 3 of 3)\n"})
    EXPECT_TRUE(contains(r.err, line)) << line << " not in:\n" << r.err;
  auto started_at = [&](int k) {
    struct stat st {};
    EXPECT_EQ(stat(str(dir, "/rank0.restart", k, ".started").c_str(), &st), 0) << k;
    return st.st_mtim.tv_sec * 1000.0 + st.st_mtim.tv_nsec / 1e6;
  };
  const double expected_ms[] = {300, 600, 1200};
  for (int k = 1; k <= 3; ++k) {
    const double gap = started_at(k) - started_at(k - 1);
    EXPECT_GE(gap, expected_ms[k - 1]) << "restart " << k;
    EXPECT_LT(gap, expected_ms[k - 1] + 2000) << "restart " << k;
  }
  EXPECT_GE(r.seconds, 2.1);
}

TEST(Agent, SigtermToTheAgentReachesTheWorkersAndItWaitsForThem) {
  std::string dir = testing::temp_dir();
  Process agent = spawn({TANDEM_FAKE_AGENT, "--nproc", "2", "--max-restarts", "3", "--",
                         TANDEM_FAKE_WORKER, "--record", dir, "--sleep-ms", "30000"},
                        {{"TANDEM_JOB_TOKEN", kToken}}, "agent");
  ASSERT_TRUE(wait_for_file(dir + "/rank0.restart0.started", std::chrono::seconds(20)))
      << agent.err();
  ASSERT_TRUE(wait_for_file(dir + "/rank1.restart0.started", std::chrono::seconds(20)))
      << agent.err();
  kill(agent.pid, SIGTERM);
  int status = wait_for(agent, std::chrono::seconds(20));
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 128 + SIGTERM) << agent.err();
  EXPECT_EQ(read_file(dir + "/rank0.restart0.signal"), "15");
  EXPECT_EQ(read_file(dir + "/rank1.restart0.signal"), "15");
  // The workers' last words came through before the agent exited, and nothing restarted.
  EXPECT_TRUE(has_line(agent.out(), "[rank 1] rank 1 got signal 15")) << agent.out();
  EXPECT_TRUE(contains(agent.err(), "tandem launch: got SIGTERM: passed it to the workers"))
      << agent.err();
  EXPECT_FALSE(exists(dir + "/rank0.restart1.started"));
}

TEST(Agent, ASecondSigintKillsWorkersThatIgnoreTheFirst) {
  std::string dir = testing::temp_dir();
  Process agent = spawn({TANDEM_FAKE_AGENT, "--nproc", "2", "--", TANDEM_FAKE_WORKER, "--record",
                         dir, "--ignore-signals", "--sleep-ms", "30000"},
                        {{"TANDEM_JOB_TOKEN", kToken}}, "agent");
  ASSERT_TRUE(wait_for_file(dir + "/rank0.restart0.started", std::chrono::seconds(20)))
      << agent.err();
  ASSERT_TRUE(wait_for_file(dir + "/rank1.restart0.started", std::chrono::seconds(20)))
      << agent.err();
  kill(agent.pid, SIGINT);
  std::this_thread::sleep_for(milliseconds(500));
  EXPECT_EQ(waitpid(agent.pid, nullptr, WNOHANG), 0) << "the agent must wait for its workers";
  kill(agent.pid, SIGINT);
  int status = wait_for(agent, std::chrono::seconds(10));
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 128 + SIGINT) << agent.err();
  EXPECT_TRUE(contains(agent.err(), "got SIGINT again: killing the workers")) << agent.err();
}

// One preemption delivered twice (Slurm signals the agent, and srun forwards the same SIGTERM):
// the copy must not kill workers that are still saving; a SIGINT afterwards still does.
TEST(Agent, ASigtermCopyWithinFiveSecondsWaitsForTheWorkersAndASigintThenKillsThem) {
  std::string dir = testing::temp_dir();
  Process agent = spawn({TANDEM_FAKE_AGENT, "--nproc", "2", "--", TANDEM_FAKE_WORKER, "--record",
                         dir, "--ignore-signals", "--sleep-ms", "30000"},
                        {{"TANDEM_JOB_TOKEN", kToken}}, "agent");
  ASSERT_TRUE(wait_for_file(dir + "/rank0.restart0.started", std::chrono::seconds(20)))
      << agent.err();
  ASSERT_TRUE(wait_for_file(dir + "/rank1.restart0.started", std::chrono::seconds(20)))
      << agent.err();
  kill(agent.pid, SIGTERM);
  std::this_thread::sleep_for(milliseconds(300));
  kill(agent.pid, SIGTERM);
  std::this_thread::sleep_for(milliseconds(700));
  EXPECT_EQ(waitpid(agent.pid, nullptr, WNOHANG), 0) << "the copy must not end the workers";
  kill(agent.pid, SIGINT);
  int status = wait_for(agent, std::chrono::seconds(10));
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 128 + SIGTERM) << agent.err();
  EXPECT_TRUE(
      contains(agent.err(), "got SIGTERM again within 5.0 s of the first: the same request"))
      << agent.err();
  EXPECT_TRUE(contains(agent.err(), "got SIGINT again: killing the workers")) << agent.err();
}

// Node 0's agent hosts the store; while it is stopped (SIGSTOP) the store hears nobody. A heartbeat
// read right after SIGCONT must not count that time as the sender's silence: before, another
// node's agent read "rank 1 sent no heartbeat for 41.9 s" after a 40 s freeze of node 0's agent
// and restarted a healthy job (faults.NodeZerosAgentStoppedFortySecondsTheJobRidesItOut).
TEST(Agent, HeartbeatAgesLeaveOutTheTimeTheStoresProcessWasStopped) {
  const int port = free_port();
  const std::string endpoint = "127.0.0.1:" + std::to_string(port);
  Process agent =
      spawn({TANDEM_FAKE_AGENT, "--nproc", "1", "--nnodes", "2", "--endpoint", endpoint,
             "--rdzv-timeout-ms", "60000", "--", TANDEM_FAKE_WORKER, "--sleep-ms", "30000"},
            {{"TANDEM_JOB_TOKEN", kToken}}, "agent");
  StoreClient client(endpoint, kToken, milliseconds(2000));
  bool up = false;
  for (int i = 0; i < 200 && !up; ++i) {
    try {
      client.heartbeat(7);
      up = true;
    } catch (const Error&) {
      std::this_thread::sleep_for(milliseconds(50));
    }
  }
  ASSERT_TRUE(up) << agent.err();
  kill(agent.pid, SIGSTOP);
  std::this_thread::sleep_for(milliseconds(3000));
  kill(agent.pid, SIGCONT);
  int64_t age_ms = -1;
  for (const HeartbeatRecord& r : client.last_heartbeats())
    if (r.rank == 7) age_ms = r.age_ms;
  kill(agent.pid, SIGKILL);
  wait_for(agent, std::chrono::seconds(10));
  EXPECT_GE(age_ms, 0) << "no heartbeat of rank 7";
  EXPECT_LT(age_ms, 1500) << "the 3 s the store was stopped counted as rank 7's silence";
}

TEST(Agent, RestartsAWorkerThatStopsHeartbeating) {
  std::string dir = testing::temp_dir();
  // Round 0: rank 1 sends heartbeats, then freezes (SIGSTOP) without exiting.
  Process agent = spawn({TANDEM_FAKE_AGENT,
                         "--nproc",
                         "2",
                         "--max-restarts",
                         "1",
                         "--heartbeat-timeout-ms",
                         "1500",
                         "--heartbeat-interval-ms",
                         "100",
                         "--stop-grace-ms",
                         "1000",
                         "--",
                         TANDEM_FAKE_WORKER,
                         "--record",
                         dir,
                         "--heartbeat",
                         "--fail",
                         "1:hang:1",
                         "--sleep-ms",
                         "30000:1"},
                        {{"TANDEM_JOB_TOKEN", kToken}}, "agent");
  int status = wait_for(agent, std::chrono::seconds(40));
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0) << agent.err();
  std::smatch m;
  std::string err = agent.err();
  ASSERT_TRUE(std::regex_search(
      err, m,
      std::regex(
          R"(tandem launch: worker rank 1 sent no heartbeat for ([0-9.]+) s \(--heartbeat-timeout 1\.5\); restarting all 2 workers \(restart 1 of 1\))")))
      << err;
  EXPECT_GT(std::stod(m[1]), 1.5);
  EXPECT_LT(std::stod(m[1]), 10.0);
  EXPECT_TRUE(exists(dir + "/rank1.restart1.started"));
}

TEST(Agent, AWorkerCommandThatCannotRunIsAnError) {
  AgentOptions o = fast_options(1);
  try {
    run_agent(o, {"/nonexistent/worker", "train"});
    ADD_FAILURE() << "expected an IoError";
  } catch (const IoError& e) {
    EXPECT_TRUE(contains(e.what(), "cannot run '/nonexistent/worker' for worker rank 0"))
        << e.what();
  }
}

TEST(Agent, RejectsOptionsThatCannotMakeAJob) {
  AgentOptions o = fast_options(1);
  o.nnodes = 2;
  o.node_rank = 2;
  o.rdzv_endpoint = "127.0.0.1:29400";
  EXPECT_THROW(run_agent(o, {TANDEM_FAKE_WORKER}), ConfigError);
  o.node_rank = 1;
  o.rdzv_endpoint = "";
  EXPECT_THROW(run_agent(o, {TANDEM_FAKE_WORKER}), ConfigError);
  o.rdzv_endpoint = "127.0.0.1";  // no port
  EXPECT_THROW(run_agent(o, {TANDEM_FAKE_WORKER}), ConfigError);
  o.rdzv_endpoint = "127.0.0.1:29400";
  o.job_token = "";  // other nodes could not know a generated token
  try {
    run_agent(o, {TANDEM_FAKE_WORKER});
    ADD_FAILURE() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_TRUE(contains(e.what(), "TANDEM_JOB_TOKEN")) << e.what();
  }
}

std::vector<std::string> agent_argv(int node, int port, std::vector<std::string> extra,
                                    std::vector<std::string> worker) {
  std::vector<std::string> argv = {
      TANDEM_FAKE_AGENT,    "--nproc",    "2",
      "--nnodes",           "2",          "--node-rank",
      std::to_string(node), "--endpoint", "127.0.0.1:" + std::to_string(port)};
  argv.insert(argv.end(), extra.begin(), extra.end());
  argv.push_back("--");
  argv.push_back(TANDEM_FAKE_WORKER);
  argv.insert(argv.end(), worker.begin(), worker.end());
  return argv;
}

TEST(Agent, TwoAgentsMeetAtTheStoreAndRunAWorldOfFour) {
  int port = free_port();
  // Node 1 first: it must keep trying until node 0's store answers.
  Process node1 =
      spawn(agent_argv(1, port, {}, {"--print-env"}), {{"TANDEM_JOB_TOKEN", kToken}}, "node1");
  std::this_thread::sleep_for(milliseconds(1000));
  Process node0 =
      spawn(agent_argv(0, port, {}, {"--print-env"}), {{"TANDEM_JOB_TOKEN", kToken}}, "node0");
  int s1 = wait_for(node1, std::chrono::seconds(40));
  int s0 = wait_for(node0, std::chrono::seconds(20));
  ASSERT_TRUE(WIFEXITED(s0) && WIFEXITED(s1)) << s0 << " " << s1;
  EXPECT_EQ(WEXITSTATUS(s0), 0) << node0.err();
  EXPECT_EQ(WEXITSTATUS(s1), 0) << node1.err();
  std::string p = std::to_string(port);
  for (int rank = 0; rank < 4; ++rank) {
    std::string out = rank < 2 ? node0.out() : node1.out();
    std::string pre = "[rank " + std::to_string(rank) + "] ";
    for (const std::string& expected :
         {pre + "RANK=" + std::to_string(rank), pre + "LOCAL_RANK=" + std::to_string(rank % 2),
          pre + "WORLD_SIZE=4", pre + "NODE_RANK=" + std::to_string(rank / 2),
          pre + "MASTER_ADDR=127.0.0.1", pre + "MASTER_PORT=" + p})
      EXPECT_TRUE(has_line(out, expected)) << "missing " << expected << " in\n" << out;
  }
}

TEST(Agent, AFailureOnOneNodeRestartsTheWorkersOfBoth) {
  int port = free_port();
  std::string dir = testing::temp_dir();
  std::vector<std::string> worker = {"--record", dir,          "--fail",
                                     "3:kill:1", "--sleep-ms", "30000:1"};
  Process node0 = spawn(agent_argv(0, port, {"--max-restarts", "1"}, worker),
                        {{"TANDEM_JOB_TOKEN", kToken}}, "node0");
  Process node1 = spawn(agent_argv(1, port, {"--max-restarts", "1"}, worker),
                        {{"TANDEM_JOB_TOKEN", kToken}}, "node1");
  int s0 = wait_for(node0, std::chrono::seconds(45));
  int s1 = wait_for(node1, std::chrono::seconds(10));
  ASSERT_TRUE(WIFEXITED(s0) && WIFEXITED(s1)) << s0 << " " << s1;
  EXPECT_EQ(WEXITSTATUS(s0), 0) << node0.err();
  EXPECT_EQ(WEXITSTATUS(s1), 0) << node1.err();
  const char* line =
      "tandem launch: worker rank 3 exited with status 137 (killed by SIGKILL); "
      "restarting all 4 workers (restart 1 of 1)";
  EXPECT_TRUE(has_line(node0.err(), line)) << node0.err();
  EXPECT_TRUE(has_line(node1.err(), line)) << node1.err();
  EXPECT_EQ(read_file(dir + "/rank0.restart0.signal"), "15");  // node 0 stopped its own workers
  for (int rank = 0; rank < 4; ++rank)
    EXPECT_TRUE(exists(dir + "/rank" + std::to_string(rank) + ".restart1.started")) << rank;
}

TEST(Agent, AnAgentWithTheWrongTokenIsRefusedAndNodeZeroGivesUpWaiting) {
  int port = free_port();
  Process node0 = spawn(agent_argv(0, port, {"--rdzv-timeout-ms", "3000"}, {}),
                        {{"TANDEM_JOB_TOKEN", kToken}}, "node0");
  Process node1 = spawn(agent_argv(1, port, {"--rdzv-timeout-ms", "3000"}, {}),
                        {{"TANDEM_JOB_TOKEN", "not-the-token"}}, "node1");
  int s1 = wait_for(node1, std::chrono::seconds(20));
  int s0 = wait_for(node0, std::chrono::seconds(20));
  ASSERT_TRUE(WIFEXITED(s0) && WIFEXITED(s1));
  EXPECT_EQ(WEXITSTATUS(s1), 3);  // run_agent threw
  EXPECT_TRUE(contains(node1.err(), "refused")) << node1.err();
  EXPECT_FALSE(contains(node1.err(), kToken));
  EXPECT_EQ(WEXITSTATUS(s0), 3);
  EXPECT_TRUE(contains(node0.err(),
                       "only 1 of 2 agents came to join the job within 3.0 s "
                       "(never seen: node 1)"))
      << node0.err();
}

TEST(Agent, SigtermToOneAgentStopsTheWorkersOfEveryNode) {
  int port = free_port();
  std::string dir = testing::temp_dir();
  std::vector<std::string> worker = {"--record", dir, "--sleep-ms", "30000"};
  Process node0 = spawn(agent_argv(0, port, {"--max-restarts", "2"}, worker),
                        {{"TANDEM_JOB_TOKEN", kToken}}, "node0");
  Process node1 = spawn(agent_argv(1, port, {"--max-restarts", "2"}, worker),
                        {{"TANDEM_JOB_TOKEN", kToken}}, "node1");
  for (int rank = 0; rank < 4; ++rank)
    ASSERT_TRUE(wait_for_file(dir + "/rank" + std::to_string(rank) + ".restart0.started",
                              std::chrono::seconds(30)))
        << rank << "\n"
        << node0.err() << node1.err();
  kill(node1.pid, SIGTERM);
  int s1 = wait_for(node1, std::chrono::seconds(20));
  int s0 = wait_for(node0, std::chrono::seconds(20));
  ASSERT_TRUE(WIFEXITED(s0) && WIFEXITED(s1)) << s0 << " " << s1;
  EXPECT_EQ(WEXITSTATUS(s1), 128 + SIGTERM) << node1.err();
  EXPECT_EQ(WEXITSTATUS(s0), 1) << node0.err();
  EXPECT_TRUE(has_line(node0.err(), "tandem launch: stopped: SIGTERM to the agent on node 1"))
      << node0.err();
  for (int rank = 0; rank < 4; ++rank)
    EXPECT_EQ(read_file(dir + "/rank" + std::to_string(rank) + ".restart0.signal"), "15") << rank;
  EXPECT_FALSE(exists(dir + "/rank0.restart1.started"));  // a stop is not a failure
}

TEST(Agent, AnAgentOnAnotherNodeGivesUpWhenNoStoreAnswers) {
  int port = free_port();  // nobody listens there
  Process node1 = spawn(agent_argv(1, port, {"--rdzv-timeout-ms", "2000"}, {}),
                        {{"TANDEM_JOB_TOKEN", kToken}}, "node1");
  int s1 = wait_for(node1, std::chrono::seconds(20));
  ASSERT_TRUE(WIFEXITED(s1));
  EXPECT_EQ(WEXITSTATUS(s1), 3);
  EXPECT_TRUE(contains(
      node1.err(), "node 1 found no store at 127.0.0.1:" + std::to_string(port) + " within 2.0 s"))
      << node1.err();
}

TEST(Agent, WithoutRestartsLeftEveryNodeNamesTheSameFailedRank) {
  int port = free_port();
  std::string dir = testing::temp_dir();
  std::vector<std::string> worker = {"--record", dir, "--fail", "2:exit7", "--sleep-ms", "30000"};
  Process node0 = spawn(agent_argv(0, port, {}, worker), {{"TANDEM_JOB_TOKEN", kToken}}, "node0");
  Process node1 = spawn(agent_argv(1, port, {}, worker), {{"TANDEM_JOB_TOKEN", kToken}}, "node1");
  int s1 = wait_for(node1, std::chrono::seconds(30));
  int s0 = wait_for(node0, std::chrono::seconds(20));
  ASSERT_TRUE(WIFEXITED(s0) && WIFEXITED(s1)) << s0 << " " << s1;
  EXPECT_EQ(WEXITSTATUS(s0), 1) << node0.err();
  EXPECT_EQ(WEXITSTATUS(s1), 1) << node1.err();
  const std::string line =
      "tandem launch: worker rank 2 exited with status 7; no restarts left (--max-restarts 0)";
  EXPECT_EQ(lines_of(node0.err()).back(), line) << node0.err();
  EXPECT_EQ(lines_of(node1.err()).back(), line) << node1.err();
  EXPECT_EQ(read_file(dir + "/rank0.restart0.signal"), "15");
}

}  // namespace
}  // namespace tandem
