// A stand-in for `tandem launch` in tests and benchmarks: hosts a Store on 127.0.0.1 (a free port,
// a fresh job token) and starts `world` copies of a program as the ranks of one local job, with
// torchrun's variables (RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT)
// plus TANDEM_JOB_TOKEN. Blocks until every rank has exited; when one fails, or the deadline
// passes, the others get a short grace period and are then killed, so a hung collective cannot
// hang the test.
//
// Header-only because two programs use it (tests/collectives/collectives_check.cc and
// benchmarks/allreduce_busbw.cc). posix_spawn with an explicit environment: the parent has gRPC
// threads, so nothing may run between fork and exec.
#pragma once

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "collectives/store/job_token.h"
#include "collectives/store/store_server.h"

extern char** environ;

namespace tandem::testing {

// Runs `program args...` as ranks 0..world-1; returns 0 when all exit 0, else the first non-zero
// status (128 + signal for a killed rank, 124 after the deadline).
inline int spawn_local_ranks(const std::string& program, const std::vector<std::string>& args,
                             int world, std::chrono::seconds deadline) {
  const std::string token = generate_job_token();
  StoreServer server("127.0.0.1", 0, token);
  const std::vector<std::string> ours = {
      "RANK",        "LOCAL_RANK",  "WORLD_SIZE",      "LOCAL_WORLD_SIZE",
      "MASTER_ADDR", "MASTER_PORT", "TANDEM_JOB_TOKEN"};
  std::vector<pid_t> pids;
  for (int rank = 0; rank < world; ++rank) {
    std::vector<std::string> env;
    for (char** e = environ; *e; ++e) {
      std::string kv = *e;
      bool replaced = false;
      for (const std::string& name : ours) replaced |= kv.rfind(name + "=", 0) == 0;
      if (!replaced) env.push_back(kv);
    }
    env.push_back("RANK=" + std::to_string(rank));
    env.push_back("LOCAL_RANK=" + std::to_string(rank));
    env.push_back("WORLD_SIZE=" + std::to_string(world));
    env.push_back("LOCAL_WORLD_SIZE=" + std::to_string(world));
    env.push_back("MASTER_ADDR=127.0.0.1");
    env.push_back("MASTER_PORT=" + std::to_string(server.port()));
    env.push_back("TANDEM_JOB_TOKEN=" + token);
    std::vector<char*> envp, argv;
    for (std::string& kv : env) envp.push_back(kv.data());
    envp.push_back(nullptr);
    std::vector<std::string> argv_s = {program};
    argv_s.insert(argv_s.end(), args.begin(), args.end());
    for (std::string& a : argv_s) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t pid = 0;
    int rc = posix_spawn(&pid, program.c_str(), nullptr, nullptr, argv.data(), envp.data());
    if (rc != 0) {
      std::fprintf(stderr, "spawn_local_ranks: cannot start %s: %s\n", program.c_str(),
                   std::strerror(rc));
      for (pid_t p : pids) kill(p, SIGKILL);
      for (pid_t p : pids) waitpid(p, nullptr, 0);
      return 127;
    }
    pids.push_back(pid);
  }

  using Clock = std::chrono::steady_clock;
  const auto end = Clock::now() + deadline;
  auto kill_at = Clock::time_point::max();  // set when a rank fails: the others' grace period
  int result = 0;
  int running = world;
  std::vector<bool> exited(world, false);
  while (running > 0) {
    for (int r = 0; r < world; ++r) {
      if (exited[r]) continue;
      int status = 0;
      if (waitpid(pids[r], &status, WNOHANG) != pids[r]) continue;
      exited[r] = true;
      --running;
      int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      if (code != 0) {
        std::fprintf(stderr, "spawn_local_ranks: rank %d exited with status %d\n", r, code);
        if (result == 0) result = code;
        kill_at = std::min(kill_at, Clock::now() + std::chrono::seconds(5));
      }
    }
    const auto now = Clock::now();
    if (running > 0 && (now >= end || now >= kill_at)) {
      if (now >= end) {
        std::fprintf(stderr, "spawn_local_ranks: deadline of %lld s passed\n",
                     static_cast<long long>(deadline.count()));
        if (result == 0) result = 124;
      }
      for (int r = 0; r < world; ++r) {
        if (exited[r]) continue;
        std::fprintf(stderr, "spawn_local_ranks: killing rank %d\n", r);
        kill(pids[r], SIGKILL);
        waitpid(pids[r], nullptr, 0);
        exited[r] = true;
        --running;
      }
    }
    if (running > 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return result;
}

}  // namespace tandem::testing
