// The agent behind `tandem launch` (torchrun's elastic agent, without elasticity): one per node.
// It hosts the rendezvous store on node 0, starts the node's workers with torchrun-compatible
// variables, prefixes their output with the rank, forwards SIGINT/SIGTERM, and restarts the whole
// job (every worker on every node) when a worker dies or stops heartbeating, at most
// max_restarts times. Workers resume from the newest complete checkpoint by themselves
// (checkpoint.resume: auto); the agent only tells them which restart this is.
//
// The one decision: a restart is a new *round* for every node. Agents agree through keys on the
// store ("tandem/launch/..."): the first failure of round n is written once (compare-and-set),
// every agent that sees it stops its workers, and they all start round n+1 after a barrier. Workers
// get TANDEM_RESTART_COUNT -- the restarts so far, agreed by all nodes for each round (it runs
// ahead of the round number after a single-worker restart or a node's rejoin) -- and must
// namespace their own store keys by it (the store outlives rounds, so older keys are still there).
//
// Ownership: run_agent owns the store server, the worker processes and the process's SIGINT,
// SIGTERM, SIGCHLD and SIGPIPE handlers for its duration (restored on return). One run_agent at a
// time per process; it blocks until the job ends.
#pragma once

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "collectives/store/job_tls.h"

namespace tandem {

// The longest wait before a restart, however many came before it.
constexpr std::chrono::milliseconds kMaxRestartBackoff{64'000};

// Exit status 2 is a usage or configuration error (launcher/main.cc): the same command fails the
// same way when started again, so the agent ends the job with it instead of restarting.
constexpr int kUsageErrorExitStatus = 2;

// The wait before restart number `restart` (1 for the first): see AgentOptions::restart_backoff.
std::chrono::milliseconds restart_backoff(std::chrono::milliseconds initial, int restart);

struct AgentOptions {
  int nproc_per_node = 1;
  int nnodes = 1;
  int node_rank = 0;
  // "host:port" of node 0's store. Empty: a one-node job with the store on 127.0.0.1 at a free
  // port. Node 0 binds the store (and the parameter servers) to the address `host` is on this
  // node -- 127.0.0.1 for a loopback name, the address itself, or the one of the addresses a name
  // resolves to that belongs to this node -- never to every interface; a host that is not this
  // node is a ConfigError.
  std::string rdzv_endpoint;
  int max_restarts = 0;
  // How often the agent reads heartbeats and (with several nodes) the other agents' news.
  std::chrono::milliseconds monitor_interval{1000};
  // A worker that has sent a heartbeat and then sends none for this long is restarted; 0 turns the
  // check off (and workers send none).
  std::chrono::milliseconds heartbeat_timeout{60'000};
  // How often workers send one; 0: min(5 s, heartbeat_timeout / 4).
  std::chrono::milliseconds heartbeat_interval{0};
  // SIGTERM -> SIGKILL when stopping workers for a restart. 30 s: torch elastic's close() timeout.
  std::chrono::milliseconds stop_grace{30'000};
  // The wait before a restart: restart_backoff before the first, doubled for each one after it,
  // at most kMaxRestartBackoff (1 s, 2 s, 4 s, ... 64 s). A worker failing at start-up (a missing
  // file, a port in use) then does not spin through its restarts in a second. 0: no wait.
  std::chrono::milliseconds restart_backoff{1000};
  // How long agents on other nodes retry the store, and how long every agent waits for the others
  // to arrive at a rendezvous or a restart barrier.
  std::chrono::milliseconds rdzv_timeout{300'000};
  // The job's secret. Empty: generated, which only a one-node job can do (other nodes could not
  // know it); `tandem launch` fills it from TANDEM_JOB_TOKEN.
  std::string job_token;
  // The job's certificate and key (job_tls.h): node 0's store serves TLS, and every agent's client
  // pins the certificate, when the store is not on loopback. `tandem launch` fills it from
  // TANDEM_TLS, TANDEM_TLS_CERT and TANDEM_TLS_KEY, which the workers and servers inherit.
  JobTls tls;
  // The workers' environment before the agent adds its variables (normally the agent's own).
  std::map<std::string, std::string> environment;
  // Parameter servers (strategy.name: parameter_server): node 0 starts num_ps processes running
  // ps_argv plus `--shard S --host H --port P` (a free port, picked anew each round) beside its
  // workers, and every worker gets TANDEM_PS_ENDPOINTS (other nodes read it from the store). The
  // servers are part of the round: a server that dies fails it (and a restart restarts them, the
  // chief then restores them from the newest checkpoint); a round succeeds once workers and
  // servers all exited 0 (servers exit when every worker reported it finished).
  int num_ps = 0;
  std::vector<std::string> ps_argv;
  // Async parameter_server: a worker that dies is restarted alone (it resumes from the newest
  // checkpoint and rejoins) while the others keep training; each such restart counts against
  // max_restarts. A dead server still restarts the whole job.
  bool restart_single_workers = false;
  int cpu_count = 0;  // for OMP_NUM_THREADS; 0: the CPUs this process may run on
  int out_fd = 1;     // where the workers' stdout lines go
  int err_fd = 2;     // where their stderr lines and the agent's own messages go
};

// Runs the job: starts nproc_per_node workers running worker_argv (argv[0] is a path: no PATH
// search), each with RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, NODE_RANK (and torchrun's
// GROUP_RANK), MASTER_ADDR, MASTER_PORT, TANDEM_JOB_TOKEN, TANDEM_RESTART_COUNT and
// TORCHELASTIC_RESTART_COUNT, TANDEM_HEARTBEAT_INTERVAL_MS (when heartbeats are watched) and
// OMP_NUM_THREADS = max(1, cpus / nproc_per_node) unless already set, and TANDEM_SHM_PREFIX (a
// prefix of this agent's own for the workers' /dev/shm segments: after each round the agent
// removes what a killed worker left under it, see collectives/shm/shm_segments.h).
// Returns 0 when every worker of the last round exited 0; 1 when a failure outlived max_restarts
// (after printing one line naming the rank and its exit status) or the job was stopped from
// another node; 2 when a worker or server exited 2 (a usage or configuration error: never
// restarted); 128 + signal when this agent got SIGINT or SIGTERM (forwarded to the workers,
// whose exit it waits for; a second signal kills them, except a SIGTERM within 5 s of the first:
// the same preemption delivered twice, launcher/stop_signal.h).
// Throws ConfigError for bad options, CommError/TimeoutError when the agents cannot meet, IoError
// when a worker cannot be started.
int run_agent(const AgentOptions& options, const std::vector<std::string>& worker_argv);

}  // namespace tandem
