#include "cluster/slurm_script.h"

#include <cctype>

#include <sstream>

#include "cluster/text.h"
#include "core/base/error.h"

namespace tandem::cluster {
namespace {

// Jobs that share a node must not share ports: job j uses the block of `stride` ports starting at
// base + (j % kPortBlocks) * stride (the store, then one per parameter server).
constexpr int kPortBlocks = 1000;

bool uses_ps(const ExperimentConfig& c) {
  return c.strategy.name == StrategyName::kParameterServer;
}

int port_stride(const ExperimentConfig& c) {
  return 1 + (uses_ps(c) ? c.strategy.num_ps : 0);
}

bool is_gpu_device(const std::string& device) {
  return device.rfind("cuda", 0) == 0;
}

}  // namespace

std::string slurm_job_name(const ExperimentConfig& config) {
  return "tandem-" + (config.experiment_name.empty() ? "experiment" : config.experiment_name);
}

namespace {
// Slurm partition and account names: letters, digits, '_', '-', '.' (partitions: several,
// separated by commas). Anything else -- a space, a quote, a newline -- is refused before it can
// reach the script.
bool slurm_names(const std::string& v, bool list) {
  if (v.empty() || v.front() == ',' || v.back() == ',') return false;
  for (size_t i = 0; i < v.size(); ++i) {
    const char ch = v[i];
    if (ch == ',' && list && v[i - 1] != ',') continue;
    if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '_' && ch != '-' && ch != '.')
      return false;
  }
  return true;
}
}  // namespace

void check_slurm_job(const ExperimentConfig& c) {
  const SlurmConfig& s = c.cluster.slurm;
  TANDEM_CHECK_T(ConfigError, s.partition.empty() || slurm_names(s.partition, true),
                 "cluster.slurm.partition: '", s.partition,
                 "' is not a Slurm partition name (letters, digits, '_', '-', '.'; several "
                 "separated by commas)");
  TANDEM_CHECK_T(ConfigError, s.account.empty() || slurm_names(s.account, false),
                 "cluster.slurm.account: '", s.account,
                 "' is not a Slurm account name (letters, digits, '_', '-', '.')");
  TANDEM_CHECK_T(ConfigError, s.gpus_per_node == 0 || is_gpu_device(c.training.device),
                 "cluster.slurm.gpus_per_node: ", s.gpus_per_node,
                 " GPUs per node requested, but training.device is '", c.training.device,
                 "' (a CPU-only experiment); set training.device=cuda or --gpus-per-node 0");
  validate_world(c, s.nodes * s.ntasks_per_node);
  const int last_port = s.port + kPortBlocks * port_stride(c) - 1;
  TANDEM_CHECK_T(ConfigError, last_port <= 65535, "cluster.slurm.port: ", s.port, " + ",
                 kPortBlocks, " blocks of ", port_stride(c),
                 " ports (store + strategy.num_ps servers) would end at ", last_port,
                 ", above 65535; lower cluster.slurm.port or strategy.num_ps");
}

namespace {

constexpr const char* kScript = "the sbatch script";

// Every string the script interpolates, by the key a user would change. A control character would
// end a comment or #SBATCH line and start a command of its own; quoting cannot prevent that.
void check_script_values(const ExperimentConfig& c, const SlurmJobPaths& p) {
  check_no_control_chars("experiment file", c.source_path, kScript);
  check_no_control_chars("experiment name", c.experiment_name, kScript);
  check_no_control_chars("logging.dir", c.logging.dir, kScript);
  check_no_control_chars("cluster.slurm.partition", c.cluster.slurm.partition, kScript);
  check_no_control_chars("cluster.slurm.account", c.cluster.slurm.account, kScript);
  check_no_control_chars("cluster.slurm.time", c.cluster.slurm.time, kScript);
  check_no_control_chars("working directory", p.workdir, kScript);
  // The files of a submission live under logging.dir (submit.h).
  check_no_control_chars("logging.dir", p.output_dir, kScript);
  check_no_control_chars("logging.dir", p.config_path, kScript);
  check_no_control_chars("logging.dir", p.token_path, kScript);
  check_no_control_chars("logging.dir", p.tls_cert_path, kScript);
  check_no_control_chars("logging.dir", p.tls_key_path, kScript);
  check_no_control_chars("--tandem", p.tandem_path, kScript);
  TANDEM_CHECK_T(ConfigError, p.output_dir.find('\\') == std::string::npos,
                 "logging.dir: ", escaped(p.output_dir),
                 " holds a backslash, which turns off sbatch's %j in --output: remove it");
}

// An sbatch file name pattern for `dir`/`name`: a '%' of the directory is written "%%" (sbatch
// would read "%j" and the like in it as a replacement).
std::string output_pattern(const std::string& dir, const std::string& name) {
  std::string out;
  for (char ch : dir) out += ch == '%' ? std::string("%%") : std::string(1, ch);
  return out + "/" + name;
}

// The opening comment and the #SBATCH lines.
void write_sbatch_header(std::ostream& o, const ExperimentConfig& c, const SlurmJobPaths& p) {
  const SlurmConfig& s = c.cluster.slurm;
  const bool mpi = s.launcher == SlurmLauncher::kMpi;
  const int world = s.nodes * s.ntasks_per_node;
  o << "#!/bin/bash\n"
    << "# " << slurm_job_name(c) << ": generated by `tandem submit slurm` from " << c.source_path
    << " (config digest " << config_digest(c) << ").\n"
    << "# The same inputs give the same file. The job token is not in it: the job reads it when "
       "it\n"
    << "# starts from a file only its owner can read, so this script is safe to print and share.\n"
    << "#\n"
    << "# " << s.nodes << (s.nodes == 1 ? " node" : " nodes") << " x " << s.ntasks_per_node
    << " tasks = " << world << " training processes ("
    << (mpi ? "srun --mpi=pmix starts each one as `tandem train`"
            : "one `tandem launch` per node starts its node's workers")
    << ")";
  if (uses_ps(c)) o << ", plus " << c.strategy.num_ps << " parameter server(s) on the first node";
  o << ".\n"
    << "#SBATCH --job-name=" << sbatch_quote(slurm_job_name(c)) << "\n"
    << "#SBATCH --nodes=" << s.nodes << "\n"
    << "#SBATCH --ntasks-per-node=" << s.ntasks_per_node << "\n";
  if (s.cpus_per_task > 0) o << "#SBATCH --cpus-per-task=" << s.cpus_per_task << "\n";
  if (s.gpus_per_node > 0) o << "#SBATCH --gpus-per-node=" << s.gpus_per_node << "\n";
  if (!s.partition.empty()) o << "#SBATCH --partition=" << sbatch_quote(s.partition) << "\n";
  if (!s.account.empty()) o << "#SBATCH --account=" << sbatch_quote(s.account) << "\n";
  o << "#SBATCH --time=" << sbatch_quote(s.time) << "\n"
    << "#SBATCH --chdir=" << sbatch_quote(p.workdir) << "\n"
    << "#SBATCH --output=" << sbatch_quote(output_pattern(p.output_dir, "slurm-%j.out")) << "\n"
    << "#SBATCH --error=" << sbatch_quote(output_pattern(p.output_dir, "slurm-%j.err")) << "\n";
}

// The shell variables every step shares: the binary, the config, the job token, OpenMP threads
// (mpi) and the rendezvous host and ports (launch, or parameter servers).
void write_environment(std::ostream& o, const ExperimentConfig& c, const SlurmJobPaths& p) {
  const SlurmConfig& s = c.cluster.slurm;
  const bool ps = uses_ps(c);
  const bool mpi = s.launcher == SlurmLauncher::kMpi;
  o << "set -euo pipefail\n\n"
    << "TANDEM=" << shell_quote(p.tandem_path) << "\n"
    << "CONFIG=" << shell_quote(p.config_path) << "  # the resolved experiment\n\n"
    << "# Every process of the job must carry the same token (the store and the servers refuse\n"
    << "# others); srun passes the environment on to every task.\n"
    << "TANDEM_JOB_TOKEN=\"$(cat " << shell_quote(p.token_path) << ")\"\n"
    << "export TANDEM_JOB_TOKEN\n";
  if (!p.tls_cert_path.empty() && !p.tls_key_path.empty())
    o << "# The job's TLS certificate and key (mode 0600): the store and the parameter servers "
         "speak\n"
      << "# TLS across hosts with them, and every process trusts only this certificate.\n"
      << "export TANDEM_TLS_CERT=" << shell_quote(p.tls_cert_path) << "\n"
      << "export TANDEM_TLS_KEY=" << shell_quote(p.tls_key_path) << "\n";
  if (mpi) {
    // One thread per CPU Slurm gave the task; the submitter's own OMP_NUM_THREADS (sbatch exports
    // the login environment) says nothing about the compute nodes.
    o << "# One OpenMP thread per CPU of the task (not the login shell's setting).\n"
      << "export OMP_NUM_THREADS=" << (s.cpus_per_task > 0 ? s.cpus_per_task : 1) << "\n";
  }
  if (!mpi || ps) {
    o << "\n# Rendezvous on the first host of the allocation. Ports: cluster.slurm.port + (job id "
         "% "
      << kPortBlocks << ") * " << port_stride(c) << ",\n"
      << "# so that jobs sharing a node do not collide";
    if (ps) o << "; the store first, then one port per parameter server";
    o << ".\n"
      << "FIRST_HOST=\"$(scontrol show hostnames \"$SLURM_JOB_NODELIST\" | head -n 1)\"\n"
      << "BASE_PORT=$((" << s.port << " + SLURM_JOB_ID % " << kPortBlocks << " * " << port_stride(c)
      << "))\n";
  }
}

// The parameter servers: a background step of their own on the first node.
void write_ps_step(std::ostream& o, const ExperimentConfig& c) {
  const int k = c.strategy.num_ps;
  o << "\n# Parameter servers: a step of their own, " << k
    << " task(s) on the first node; shard I\n"
    << "# listens on FIRST_HOST:BASE_PORT+1+I. Workers find them in TANDEM_PS_ENDPOINTS (shard "
       "order).\n"
    << "TANDEM_PS_ENDPOINTS=\"";
  for (int i = 0; i < k; ++i) o << (i ? "," : "") << "$FIRST_HOST:$((BASE_PORT + " << i + 1 << "))";
  o << "\"\n"
    << "export TANDEM_PS_ENDPOINTS\n"
    << "srun --overlap --nodes=1 --ntasks=" << k
    << " --nodelist=\"$FIRST_HOST\" --kill-on-bad-exit=1 \\\n"
    << "  bash -c 'exec \"$0\" ps \"$1\" --shard \"$SLURM_PROCID\" --host \"$2\" "
       "--port \"$(($3 + 1 + SLURM_PROCID))\"' \\\n"
    << "  \"$TANDEM\" \"$CONFIG\" \"$FIRST_HOST\" \"$BASE_PORT\" &\n"
    << "PS_STEP=$!\n";
}

// The WORKERS command: srun of `tandem train` (mpi) or one `tandem launch` per node.
void write_workers(std::ostream& o, const ExperimentConfig& c) {
  const SlurmConfig& s = c.cluster.slurm;
  const std::string overlap = uses_ps(c) ? " --overlap" : "";
  if (s.launcher == SlurmLauncher::kMpi) {
    const int world = s.nodes * s.ntasks_per_node;
    o << "# " << world << " ranks of `tandem train`; each takes its rank from PMIx and Slurm.\n"
      << "# --label prefixes every output line with the task's rank (\"1: ...\").\n"
      << "WORKERS=(srun --mpi=pmix" << overlap << " --ntasks=" << world
      << " --label --kill-on-bad-exit=1 \"$TANDEM\" train \"$CONFIG\")\n";
    return;
  }
  const int cpus_per_node = s.ntasks_per_node * (s.cpus_per_task > 0 ? s.cpus_per_task : 1);
  o << "# One `tandem launch` per node (node rank = SLURM_NODEID) with the node's " << cpus_per_node
    << " CPU(s)";
  if (s.gpus_per_node > 0) o << " and " << s.gpus_per_node << " GPU(s)";
  o << "; it starts\n"
    << "# " << s.ntasks_per_node
    << " worker(s), hosts the store on node 0 and restarts workers that fail.\n"
    << "WORKERS=(srun" << overlap << " --nodes=" << s.nodes << " --ntasks=" << s.nodes
    << " --ntasks-per-node=1 --cpus-per-task=" << cpus_per_node;
  if (s.gpus_per_node > 0) o << " --gpus-per-node=" << s.gpus_per_node;
  o << " --kill-on-bad-exit=1 \\\n"
    << "  bash -c 'exec \"$0\" launch --nnodes " << s.nodes
    << " --node-rank \"$SLURM_NODEID\" --nproc-per-node " << s.ntasks_per_node
    << " --rdzv-endpoint \"$1\" \"$2\"' \\\n"
    << "  \"$TANDEM\" \"$FIRST_HOST:$BASE_PORT\" \"$CONFIG\")\n";
}

}  // namespace

std::string render_slurm_script(const ExperimentConfig& c, const SlurmJobPaths& p) {
  check_script_values(c, p);
  const bool ps = uses_ps(c);
  std::ostringstream o;
  write_sbatch_header(o, c, p);
  write_environment(o, c, p);
  if (ps) write_ps_step(o, c);
  o << "\n";
  write_workers(o, c);
  if (ps) {
    o << "set +e\n"
      << "\"${WORKERS[@]}\"\n"
      << "STATUS=$?\n"
      << "# The workers are done: stop the servers (srun forwards SIGTERM to its tasks).\n"
      << "kill -TERM \"$PS_STEP\" 2>/dev/null\n"
      << "wait \"$PS_STEP\" 2>/dev/null\n"
      << "exit \"$STATUS\"\n";
  } else {
    o << "exec \"${WORKERS[@]}\"\n";
  }
  return o.str();
}

}  // namespace tandem::cluster
