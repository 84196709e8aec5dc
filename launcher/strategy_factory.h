// Picks and builds the Strategy a `tandem train` process runs, from its config and the
// environment the launcher detected (DESIGN.md sections 3-5): single and mirrored need a world
// of one; ddp talks over MPI when started by mpirun/srun --mpi, else over Gloo bootstrapped
// through the launcher's Store.
#pragma once

#include <memory>

#include "collectives/store/store_client.h"
#include "configs/schema/config.h"
#include "launcher/environment.h"
#include "strategies/strategy.h"

namespace tandem {

struct StrategyBuild {
  std::unique_ptr<Strategy> strategy;
  std::shared_ptr<StoreClient> store;  // set when the process talks to a rendezvous store
};

StrategyBuild make_strategy(const ExperimentConfig& cfg, const ProcessEnvironment& env);

}  // namespace tandem
