// Picks and builds the Strategy a `tandem train` process runs, from its config and the
// environment the launcher detected (docs/DESIGN.md sections 3.3, 4 and 5.2): single and mirrored
// need a world of one; ddp's communicator follows strategy.backend (auto: nccl for CUDA tensors,
// hierarchical across hosts with several ranks each, MPI under mpirun/srun --mpi with a Store
// hosted by rank 0 (collectives/mpi/mpi_rendezvous.h), shm over Gloo on one host, else Gloo through
// the launcher's Store); the CPU backends of a job are wrapped in a CheckedCommunicator on that
// Store.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "collectives/communicator.h"
#include "collectives/mpi/mpi_rendezvous.h"
#include "collectives/store/store_client.h"
#include "configs/schema/config.h"
#include "strategies/process_environment.h"
#include "strategies/strategy.h"

namespace tandem {

// Keep it alive while the strategy runs, and destroy the strategy first.
struct StrategyBuild {
  std::unique_ptr<Strategy> strategy;
  std::unique_ptr<MpiRendezvous> rendezvous;  // under MPI: the Store rank 0 hosts
  std::shared_ptr<StoreClient> store;         // set when the process talks to a rendezvous store
};

StrategyBuild make_strategy(const ExperimentConfig& cfg, const ProcessEnvironment& env);

// The communicator ddp would use -- strategy.backend (auto: as above), strategy.timeout_s,
// strategy.debug_collectives -- for programs that drive DdpStrategy (or several of them, over one
// communicator) or call collectives themselves. Keep the whole build alive while it is used.
struct CommunicatorBuild {
  std::shared_ptr<Communicator> comm;
  std::unique_ptr<MpiRendezvous> rendezvous;  // under MPI: the Store rank 0 hosts
  std::shared_ptr<StoreClient> store;         // set when the process talks to a rendezvous store
};
CommunicatorBuild make_communicator(const ExperimentConfig& cfg, const ProcessEnvironment& env);

// TANDEM_PS_ENDPOINTS ("host:port,host:port,...", shard order) checked against strategy.num_ps.
// Throws ConfigError naming the variable.
std::vector<std::string> parse_ps_endpoints(const std::string& value, int num_ps);
std::unique_ptr<Strategy> make_ps_strategy(const ExperimentConfig& cfg,
                                           const ProcessEnvironment& env);

}  // namespace tandem
