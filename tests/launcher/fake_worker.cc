// A stand-in for `tandem train` in the agent's tests: it reads the variables the agent sets and
// does what its flags say -- print, sleep, exit with a code, kill itself, stop heartbeating.
//
//   launcher_fake_worker [--record DIR] [--print-env] [--lines N] [--heartbeat]
//                        [--sleep-ms MS[:ROUNDS]] [--fail RANK:HOW[:ROUNDS]] [--ignore-signals]
//                        [--exit CODE]
//
// --record DIR   writes DIR/rank<R>.restart<K>.started at start, and DIR/rank<R>.restart<K>.signal
//                (the signal's number) when SIGTERM/SIGINT arrives; then it exits 130, as the
//                trainer does after saving a checkpoint
// --print-env    prints NAME=value for the agent's variables, then the detected environment
// --lines N      prints N lines, each written in two pieces 20 ms apart, then one without newline
// --heartbeat    starts WorkerHeartbeat::start_under_launcher (as `tandem train` does)
// --sleep-ms MS[:ROUNDS]  sleeps MS (while TANDEM_RESTART_COUNT < ROUNDS), until a signal
// --ignore-signals        ignores SIGTERM and SIGINT (only SIGKILL stops it)
// --fail R:HOW[:ROUNDS]  rank R, while TANDEM_RESTART_COUNT < ROUNDS (default: always), once every
//                rank has recorded its start (with --record) and 100 ms more: HOW = kill
//                (SIGKILL itself), exitN (exit N), hang (stops its heartbeats
//                and SIGSTOPs itself)
#include <signal.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>

#include "launcher/heartbeat.h"
#include "strategies/process_environment.h"

namespace {

volatile sig_atomic_t g_signal = 0;
void on_signal(int sig) {
  g_signal = sig;
}

std::string getenv_or(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v != nullptr ? v : fallback;
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}

// Two writes per line, so a reader that does not wait for the newline would see halves.
void print_in_pieces(const std::string& line) {
  std::string first = line.substr(0, line.size() / 2), rest = line.substr(line.size() / 2) + "\n";
  ssize_t ignored = write(1, first.data(), first.size());
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ignored = write(1, rest.data(), rest.size());
  (void)ignored;
}

}  // namespace

int main(int argc, char** argv) {
  std::string record_dir, fail;
  bool print_env = false, heartbeat = false, ignore_signals = false;
  int lines = 0, sleep_ms = 0, sleep_rounds = 1 << 30, exit_code = 0;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--record")
      record_dir = next();
    else if (a == "--print-env")
      print_env = true;
    else if (a == "--lines")
      lines = std::atoi(next().c_str());
    else if (a == "--heartbeat")
      heartbeat = true;
    else if (a == "--sleep-ms") {
      std::string v = next();
      sleep_ms = std::atoi(v.c_str());
      if (v.find(':') != std::string::npos) sleep_rounds = std::atoi(v.c_str() + v.find(':') + 1);
    } else if (a == "--ignore-signals")
      ignore_signals = true;
    else if (a == "--fail")
      fail = next();
    else if (a == "--exit")
      exit_code = std::atoi(next().c_str());
    else {
      std::fprintf(stderr, "fake worker: unknown argument %s\n", a.c_str());
      return 64;
    }
  }
  std::signal(SIGTERM, ignore_signals ? SIG_IGN : on_signal);
  std::signal(SIGINT, ignore_signals ? SIG_IGN : on_signal);

  tandem::ProcessEnvironment env = tandem::detect_environment(tandem::current_environment());
  std::string tag =
      "rank" + std::to_string(env.rank) + ".restart" + std::to_string(env.restart_count);
  if (!record_dir.empty()) write_file(record_dir + "/" + tag + ".started", "");

  if (print_env) {
    for (const char* name : {"RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "NODE_RANK",
                             "GROUP_RANK", "MASTER_ADDR", "MASTER_PORT", "TANDEM_JOB_TOKEN",
                             "TANDEM_RESTART_COUNT", "TORCHELASTIC_RESTART_COUNT",
                             "OMP_NUM_THREADS", "TANDEM_HEARTBEAT_INTERVAL_MS", "INHERITED"})
      std::printf("%s=%s\n", name, getenv_or(name, "<unset>").c_str());
    std::printf(
        "detected source=%s rank=%d local_rank=%d world_size=%d local_world_size=%d "
        "node_rank=%d endpoint=%s\n",
        env.source.c_str(), env.rank, env.local_rank, env.world_size, env.local_world_size,
        env.node_rank, env.master_endpoint().c_str());
    std::fflush(stdout);
  }
  for (int i = 0; i < lines; ++i)
    print_in_pieces("line " + std::to_string(i) + " of rank " + std::to_string(env.rank) +
                    " written in two pieces");
  if (lines > 0) {
    std::string last = "last words of rank " + std::to_string(env.rank);
    ssize_t ignored = write(1, last.data(), last.size());  // no newline: the agent adds one
    (void)ignored;
  }

  std::unique_ptr<tandem::WorkerHeartbeat> beat;
  if (heartbeat) beat = tandem::WorkerHeartbeat::start_under_launcher(env);

  if (!fail.empty()) {
    int rank = std::atoi(fail.c_str());
    size_t c1 = fail.find(':'), c2 = fail.find(':', c1 + 1);
    std::string how =
        fail.substr(c1 + 1, c2 == std::string::npos ? std::string::npos : c2 - c1 - 1);
    int rounds = c2 == std::string::npos ? 1 << 30 : std::atoi(fail.c_str() + c2 + 1);
    if (rank == env.rank && env.restart_count < rounds) {
      // Fail only once every rank of the round runs (and handles SIGTERM), so the test sees the
      // others stopped, however slowly this machine starts processes.
      for (int r = 0; r < env.world_size && !record_dir.empty(); ++r) {
        std::string other = record_dir + "/rank" + std::to_string(r) + ".restart" +
                            std::to_string(env.restart_count) + ".started";
        for (int i = 0; i < 2000 && access(other.c_str(), F_OK) != 0; ++i)
          std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      std::fprintf(stderr, "rank %d fails now (%s)\n", env.rank, how.c_str());
      std::fflush(stderr);
      if (how == "kill") raise(SIGKILL);
      if (how.rfind("exit", 0) == 0) return std::atoi(how.c_str() + 4);
      if (how == "hang") {
        std::this_thread::sleep_for(std::chrono::milliseconds(500));  // a few heartbeats first
        beat.reset();
        raise(SIGSTOP);
      }
    }
  }

  if (env.restart_count >= sleep_rounds) sleep_ms = 0;
  for (int slept = 0; slept < sleep_ms && g_signal == 0; slept += 10)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  if (g_signal != 0) {
    std::printf("rank %d got signal %d\n", env.rank, static_cast<int>(g_signal));
    std::fflush(stdout);
    if (!record_dir.empty())
      write_file(record_dir + "/" + tag + ".signal", std::to_string(g_signal));
    return 130;
  }
  return exit_code;
}
