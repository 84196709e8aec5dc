// `tandem ps CONFIG --shard I [--host H] [--port P] [overrides...]`: serves shard I of
// strategy.num_ps parameter-server shards (strategies/parameter_server/ps_server.h) for the
// workers of one job.
//
// Contract (used by `tandem launch --num-ps` and `tandem submit`): binds 127.0.0.1 unless --host
// is given; --port 0 or absent picks a free port; the job token comes from TANDEM_JOB_TOKEN
// (missing: a one-line error, exit 2); prints `tandem ps: shard I listening on HOST:PORT` once
// serving; exits 0 when every worker of the job has reported that it finished training (a
// completed run, or one stopped after its checkpoint), after the calls in flight are answered.
//
// SIGTERM/SIGINT do not stop it at once: a preemption signals the servers and the workers
// together, and the chief's last checkpoint reads the servers' state. The server keeps serving
// until every worker has reported, or --stop-grace seconds (default 20: less than the 30 s that
// `tandem launch`, Slurm's KillWait and Kubernetes' terminationGracePeriodSeconds give before
// SIGKILL); a second signal stops it at once -- but not a SIGTERM within 5 s of the first, which is
// the same preemption reaching the server twice (launcher/stop_signal.h).
#pragma once

#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace tandem {

struct PsCommand {
  CLI::App* app = nullptr;
  std::string config_path;
  std::vector<std::string> overrides;
  int shard = -1;
  std::string host;
  int port = 0;
  double stop_grace_s = 20;
};

void add_ps_command(CLI::App& app, PsCommand& c);

// Keeps freed buffers of up to 128 MiB in the heap instead of returning them to the kernel.
// Parameter-server messages are megabytes each, allocated and freed every step by protobuf and
// gRPC; with glibc's defaults each one is a fresh mmap whose pages fault in again (measured on
// this project's VMs: a 2.7 MB push 63 ms -> 8 ms, a pull 27 ms -> 5.5 ms). For `tandem ps` and
// for workers of parameter_server experiments.
void keep_large_buffers_in_heap();
// Returns the exit code; throws ConfigError (exit 2) and other Errors (exit 1) like the others.
int cmd_ps(PsCommand& c);

}  // namespace tandem
