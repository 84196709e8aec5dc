// ProcessEnvironment: who this process is in the job -- its ranks, where the rendezvous store is,
// the job's secret -- and rank discovery: finding that out from the variables its starter set
// (docs/DESIGN.md section 5.2, "Rank discovery").
//
// The one decision: the sources are tried in a fixed order and the first that applies wins, so a
// process started by `mpirun` inside an `sbatch` script (every rank on the first node sees
// SLURM_PROCID=0) takes its rank from Open MPI, never from Slurm:
//   1. LOCAL_RANK set           -> torchrun-style ("torchrun"; `tandem launch` sets these too)
//   2. OMPI_COMM_WORLD_RANK set -> Open MPI ("openmpi")
//   3. PMIX_RANK set            -> `srun --mpi=pmix` ("pmix"; sizes from SLURM_*)
//   4. SLURM_STEP_ID set        -> an srun step ("slurm"; the batch script itself has no step id)
//   5. otherwise                -> a world of one ("single")
// A source that applies but has a missing or malformed variable is an error naming it; there is no
// silent fallback to the next source.
//
// detect_environment is a pure function of a copy of the environment, so every source is testable
// without setting variables; current_environment() is the one place that reads the real one.
//
// The strategy factory (strategy_factory.h) builds communicators from a ProcessEnvironment, so any
// program -- `tandem train`, or a C++ program of one's own started by `tandem launch --exec`,
// mpirun or srun -- gets the same ranks and communicators.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "collectives/store/job_tls.h"

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
  // TANDEM_TLS, TANDEM_TLS_CERT, TANDEM_TLS_KEY: the job's certificate for stores and servers
  // that are not on loopback (job_tls.h); the files are read when first needed.
  JobTls tls;
  std::string source = "single";  // "torchrun", "openmpi", "pmix", "slurm", "single"
  // TANDEM_PS_ENDPOINTS: "host:port,host:port,..." of the parameter servers, in shard order.
  std::string ps_endpoints;
  int restart_count = 0;  // TANDEM_RESTART_COUNT or TORCHELASTIC_RESTART_COUNT (0 when unset)
  // TANDEM_SOCKET_IFNAME (or GLOO_SOCKET_IFNAME, PyTorch's name): the network interface whose
  // address this process gives peers on other hosts; empty: the one that routes to MASTER_ADDR.
  std::string socket_ifname;
  // TANDEM_SHM_PREFIX: set by `tandem launch`, which removes what is left under it after each
  // round; the name prefix of this process's shared-memory segments (shm_segments.h).
  std::string shm_prefix = "tandem-";
  // TANDEM_HEARTBEAT_INTERVAL_MS: set by `tandem launch` when it watches heartbeats; 0 otherwise.
  int heartbeat_interval_ms = 0;
  // Things the user may want to know, one line each (e.g. a RANK that was ignored).
  std::vector<std::string> notes;

  bool under_tandem_launch() const { return heartbeat_interval_ms > 0; }
  std::string master_endpoint() const;  // "host:port"
};

// Throws ConfigError (one line, naming the variable) for a missing or malformed value.
ProcessEnvironment detect_environment(const std::map<std::string, std::string>& env);

// A copy of this process's environment (environ).
std::map<std::string, std::string> current_environment();

// "node[01-03],gpu7" -> "node01": the first host of a Slurm host list (SLURM_JOB_NODELIST), without
// running `scontrol show hostnames`. Throws ConfigError on a malformed list.
std::string first_host_of_slurm_nodelist(const std::string& nodelist);

// "2(x3),1" (SLURM_STEP_TASKS_PER_NODE) and a node index -> that node's task count. Throws
// ConfigError on a malformed value or a node index beyond the list.
int slurm_tasks_on_node(const std::string& tasks_per_node, int node_index);

}  // namespace tandem
