// `tandem launch` with a fake worker, as its own process: for the agent tests that send it signals
// or run two agents (two "nodes") side by side. Its exit status is run_agent's result (3 when
// run_agent throws, after printing the error).
//
//   launcher_fake_agent [--nproc N] [--nnodes M] [--node-rank R] [--endpoint HOST:PORT]
//                       [--max-restarts K] [--heartbeat-timeout-ms T] [--heartbeat-interval-ms T]
//                       [--stop-grace-ms T] [--rdzv-timeout-ms T]
//                       -- WORKER [ARGS...]
// The job token comes from TANDEM_JOB_TOKEN, as in `tandem launch`.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "launcher/agent.h"
#include "strategies/process_environment.h"

int main(int argc, char** argv) {
  tandem::AgentOptions o;
  o.monitor_interval = std::chrono::milliseconds(100);
  o.stop_grace = std::chrono::milliseconds(3000);
  o.restart_backoff = std::chrono::milliseconds(0);  // tests restart at once
  o.heartbeat_timeout = std::chrono::milliseconds(0);
  o.rdzv_timeout = std::chrono::milliseconds(20'000);
  std::vector<std::string> worker;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    auto ms = [&]() { return std::chrono::milliseconds(std::atoi(next().c_str())); };
    if (a == "--nproc")
      o.nproc_per_node = std::atoi(next().c_str());
    else if (a == "--nnodes")
      o.nnodes = std::atoi(next().c_str());
    else if (a == "--node-rank")
      o.node_rank = std::atoi(next().c_str());
    else if (a == "--endpoint")
      o.rdzv_endpoint = next();
    else if (a == "--max-restarts")
      o.max_restarts = std::atoi(next().c_str());
    else if (a == "--heartbeat-timeout-ms")
      o.heartbeat_timeout = ms();
    else if (a == "--heartbeat-interval-ms")
      o.heartbeat_interval = ms();
    else if (a == "--stop-grace-ms")
      o.stop_grace = ms();
    else if (a == "--rdzv-timeout-ms")
      o.rdzv_timeout = ms();
    else if (a == "--") {
      worker.assign(argv + i + 1, argv + argc);
      break;
    } else {
      std::fprintf(stderr, "fake agent: unknown argument %s\n", a.c_str());
      return 64;
    }
  }
  o.environment = tandem::current_environment();
  if (auto it = o.environment.find("TANDEM_JOB_TOKEN"); it != o.environment.end())
    o.job_token = it->second;
  try {
    return tandem::run_agent(o, worker);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fake agent: error: %s\n", e.what());
    return 3;
  }
}
