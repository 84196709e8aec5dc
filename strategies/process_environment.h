// ProcessEnvironment: who this process is in a job -- its ranks, where the rendezvous store is, the
// job's secret -- as the launcher found it (launcher/environment.h reads it from the variables its
// starter set). The strategy factory (strategy_factory.h) builds communicators from it, so a C++
// program that knows its ranks by other means can fill one in and build a ddp strategy without the
// launcher.
#pragma once

#include <string>
#include <vector>

namespace tandem {

struct ProcessEnvironment {
  int rank = 0;        // global rank, 0 .. world_size-1
  int local_rank = 0;  // rank on this node, 0 .. local_world_size-1
  int world_size = 1;
  int local_world_size = 1;               // processes on this node
  int node_rank = 0;                      // index of this node
  std::string master_addr = "127.0.0.1";  // host of the rendezvous store ("" when unknown)
  int master_port = 29500;                // 29500: torchrun's default MASTER_PORT
  std::string job_token;                  // TANDEM_JOB_TOKEN; a secret: never print or log it
  std::string source = "single";          // "torchrun", "openmpi", "pmix", "slurm", "single"
  // TANDEM_PS_ENDPOINTS: "host:port,host:port,..." of the parameter servers, in shard order.
  std::string ps_endpoints;
  int restart_count = 0;  // TANDEM_RESTART_COUNT or TORCHELASTIC_RESTART_COUNT (0 when unset)
  // TANDEM_SOCKET_IFNAME (or GLOO_SOCKET_IFNAME, PyTorch's name): the network interface whose
  // address this process gives peers on other hosts; empty: the one that routes to MASTER_ADDR.
  std::string socket_ifname;
  // TANDEM_HEARTBEAT_INTERVAL_MS: set by `tandem launch` when it watches heartbeats; 0 otherwise.
  int heartbeat_interval_ms = 0;
  // Things the user may want to know, one line each (e.g. a RANK that was ignored).
  std::vector<std::string> notes;

  bool under_tandem_launch() const { return heartbeat_interval_ms > 0; }
  std::string master_endpoint() const;  // "host:port"
};

}  // namespace tandem
