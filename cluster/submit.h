// `tandem submit slurm|k8s`, `tandem status` and `tandem cancel`: render the job, write its files
// into the run directory, hand it to sbatch or kubectl, and report what happened.
//
// Files of a submission live in <logging.dir>/submit/<config digest>/ (absolute paths in the
// script): the resolved experiment (<experiment>.yaml), the script or manifests, and the job
// token with the job's TLS certificate and key (job_token, job_tls.crt, job_tls.key, or the
// Kubernetes Secret; mode 0600). A digest-named folder means a second submission with other
// overrides never rewrites the config a queued job is about to read. Output files of Slurm jobs:
// <logging.dir>/slurm-<jobid>.out and .err.
//
// Errors: ConfigError (exit 2) for a bad request, IoError (exit 1) for a missing tool or a tool
// that fails. The job token is never written to `out` or `err`.
#pragma once

#include <ostream>
#include <string>

#include "configs/schema/config.h"

namespace tandem::cluster {

// What only the launcher knows (library code reads no environment).
struct SubmitContext {
  std::string path_env;         // PATH: where sbatch, scontrol, scancel, kubectl are looked up
  std::string workdir;          // the working directory, absolute: relative config paths start here
  std::string tandem_path;      // the tandem executable the Slurm job runs on the compute nodes
  bool dry_run = false;         // print the script or manifests; write and submit nothing
  std::ostream* out = nullptr;  // the job id and paths (or the dry-run text)
};

// Returns the process exit code (0) or throws.
int submit_slurm(const ExperimentConfig& config, const SubmitContext& context);
int submit_k8s(const ExperimentConfig& config, const SubmitContext& context);

// "JOB STATE key=value ..." from `scontrol show job -o JOB` (pending, running and recently ended
// jobs alike). Throws ConfigError for a job id that is not one, IoError for an unknown job.
int slurm_status(const std::string& job_id, const SubmitContext& context);
// scancel JOB; prints "cancelled JOB".
int slurm_cancel(const std::string& job_id, const SubmitContext& context);

}  // namespace tandem::cluster
