// Rank discovery: who this process is in the job, from the variables its starter set
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
#pragma once

#include <map>
#include <string>

#include <vector>
#include "strategies/process_environment.h"

namespace tandem {

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
