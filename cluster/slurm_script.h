// The sbatch script of `tandem submit slurm`: a pure function of the resolved experiment and the
// paths it runs from, so the same inputs give the same bytes.
//
// The one decision: the job token is *not* in the script. The script reads it at start from a file
// beside the resolved config (mode 0600) and exports it, so every process of the job -- each node's
// `tandem launch`, each MPI rank, each parameter server -- carries the same secret, while the
// script itself stays printable (`--dry-run`) and deterministic. The job's TLS certificate and key
// lie beside it the same way, and the script exports their paths.
//
// Layout of one job (cluster.slurm): N nodes x T tasks per node = N*T training processes.
//   launcher: tandem -> one srun step of N tasks (one per node) runs `tandem launch --nnodes N
//                       --node-rank $SLURM_NODEID --nproc-per-node T`, rendezvous on the first host
//                       of SLURM_JOB_NODELIST at cluster.slurm.port + a per-job offset.
//   launcher: mpi    -> one srun --mpi=pmix step of N*T tasks runs `tandem train` directly (ranks
//                       from PMIx/Slurm, strategy.backend auto -> MPI, hierarchical over MPI with
//                       several tasks on each of several nodes).
//   parameter_server -> in addition, a background srun step of strategy.num_ps tasks on the first
//                       node runs `tandem ps --shard I --host <first host> --port <port>`; the
//                       workers find the servers in TANDEM_PS_ENDPOINTS (shard order).
#pragma once

#include <string>

#include "configs/schema/config.h"

namespace tandem::cluster {

struct SlurmJobPaths {
  std::string workdir;      // absolute; `--chdir`: where the config's relative paths resolve
  std::string output_dir;   // absolute; slurm-<jobid>.out / .err go here (logging.dir)
  std::string config_path;  // absolute; the resolved experiment the job runs
  std::string token_path;   // absolute; the job token (mode 0600), read when the job starts
  std::string tandem_path;  // the tandem executable on the compute nodes
  // absolute; the job's TLS certificate and key (mode 0600, job_tls.h), exported to every process
  // as TANDEM_TLS_CERT / TANDEM_TLS_KEY. Empty: not exported (the listeners across hosts then
  // refuse to start unless TANDEM_TLS=0).
  std::string tls_cert_path;
  std::string tls_key_path;
};

// "tandem-<experiment>": the job name shown by squeue.
std::string slurm_job_name(const ExperimentConfig& config);

// Checks what must hold before a job is queued (an error now beats one after an hour in the
// queue): the world size suits the strategy and batch, GPUs are asked for only when
// training.device is a GPU, ports stay in range. Throws ConfigError naming the key.
void check_slurm_job(const ExperimentConfig& config);

// The script text; check_slurm_job first.
std::string render_slurm_script(const ExperimentConfig& config, const SlurmJobPaths& paths);

}  // namespace tandem::cluster
