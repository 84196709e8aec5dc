#include "cluster/submit.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <sstream>

#include "cluster/k8s_manifests.h"
#include "cluster/slurm_script.h"
#include "cluster/tools.h"
#include "collectives/store/job_tls.h"
#include "collectives/store/job_token.h"
#include "core/base/error.h"
#include "core/io/file_io.h"

namespace tandem::cluster {
namespace {

namespace fs = std::filesystem;

std::string absolute_in(const std::string& workdir, const std::string& path) {
  fs::path p(path);
  return (p.is_absolute() ? p : fs::path(workdir) / p).lexically_normal().string();
}

// <logging.dir>/submit/<digest>: one folder per distinct resolved experiment.
std::string submit_dir(const ExperimentConfig& c, const SubmitContext& ctx) {
  return absolute_in(ctx.workdir, c.logging.dir) + "/submit/" + config_digest(c);
}

std::string experiment_file(const ExperimentConfig& c) {
  return (c.experiment_name.empty() ? "experiment" : c.experiment_name) + ".yaml";
}

void make_dirs(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  TANDEM_CHECK_T(IoError, !ec, dir, ": cannot create the directory (", ec.message(), ")");
}

std::string first_line(const std::string& text) {
  std::string line = text.substr(0, text.find('\n'));
  return line.empty() ? "(no message)" : line;
}

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}

void check_job_id(const std::string& job_id) {
  // 123, or 123_4 for an array task.
  bool ok = !job_id.empty() && std::isdigit(static_cast<unsigned char>(job_id[0]));
  size_t underscores = 0;
  for (char ch : job_id) {
    if (ch == '_')
      ++underscores;
    else if (!std::isdigit(static_cast<unsigned char>(ch)))
      ok = false;
  }
  ok = ok && underscores <= 1 && job_id.back() != '_';
  TANDEM_CHECK_T(ConfigError, ok, "JOB: expected a Slurm job id (digits, e.g. 1234), got '", job_id,
                 "'");
}

// Where this machine can ask the cluster (sinfo on PATH and a controller that answers), every
// partition asked for must exist: a typo is a usage error now, not a job sbatch refuses later.
void check_partitions_exist(const SlurmConfig& s, const SubmitContext& ctx) {
  if (s.partition.empty()) return;
  const std::string sinfo = find_tool("sinfo", ctx.path_env);
  if (sinfo.empty()) return;
  ToolResult r = run_tool({sinfo, "--noheader", "--format=%R"});
  if (r.status != 0) return;  // no controller reachable from here: sbatch will say
  std::vector<std::string> known;
  std::istringstream lines(r.out);
  for (std::string line; std::getline(lines, line);)
    if (!trim(line).empty()) known.push_back(trim(line));
  std::istringstream wanted(s.partition);
  for (std::string p; std::getline(wanted, p, ',');) {
    if (std::find(known.begin(), known.end(), p) != known.end()) continue;
    std::string list;
    for (const std::string& k : known) list += (list.empty() ? "" : ", ") + k;
    throw ConfigError(str(
        "cluster.slurm.partition: '", p,
        "' is not a partition of this cluster (sinfo lists: ", list.empty() ? "none" : list, ")"));
  }
}

}  // namespace

int submit_slurm(const ExperimentConfig& c, const SubmitContext& ctx) {
  check_slurm_job(c);
  check_partitions_exist(c.cluster.slurm, ctx);
  const std::string dir = submit_dir(c, ctx);
  SlurmJobPaths paths;
  paths.workdir = ctx.workdir;
  paths.output_dir = absolute_in(ctx.workdir, c.logging.dir);
  paths.config_path = dir + "/" + experiment_file(c);
  paths.token_path = dir + "/job_token";
  paths.tls_cert_path = dir + "/job_tls.crt";
  paths.tls_key_path = dir + "/job_tls.key";
  paths.tandem_path = ctx.tandem_path;
  const std::string script = render_slurm_script(c, paths);
  if (ctx.dry_run) {
    *ctx.out << script;
    return 0;
  }
  const std::string sbatch = require_tool(
      "sbatch", ctx.path_env,
      "install slurm-client, submit from a login node of the cluster, or use --dry-run");
  make_dirs(dir);
  write_file_atomic(paths.config_path, render_config(c));
  write_file_atomic(paths.token_path, generate_job_token() + "\n", 0600);
  const JobTls tls = generate_job_tls();
  write_file_atomic(paths.tls_key_path, tls.key_pem, 0600);
  write_file_atomic(paths.tls_cert_path, tls.cert_pem, 0600);
  const std::string script_path = dir + "/job.sbatch";
  write_file_atomic(script_path, script);
  ToolResult r = run_tool({sbatch, "--parsable", script_path});
  TANDEM_CHECK_T(IoError, r.status == 0, "sbatch ", script_path, " failed (exit ", r.status,
                 "): ", first_line(r.err));
  // --parsable prints "jobid" or "jobid;cluster".
  const std::string job_id = trim(r.out).substr(0, trim(r.out).find(';'));
  TANDEM_CHECK_T(IoError, !job_id.empty(), "sbatch printed no job id for ", script_path);
  *ctx.out << "submitted Slurm job " << job_id << "\n"
           << "script: " << script_path << "\n"
           << "output: " << paths.output_dir << "/slurm-" << job_id << ".out\n";
  return 0;
}

int submit_k8s(const ExperimentConfig& c, const SubmitContext& ctx) {
  check_k8s_job(c);
  const std::string manifests = render_k8s_manifests(c);
  if (ctx.dry_run) {
    // The Secret is shown with a placeholder: its real value exists only in the file kubectl reads.
    const std::string hidden = "<generated when submitted; never printed>";
    *ctx.out << manifests << render_k8s_secret(c, hidden, hidden, hidden);
    return 0;
  }
  const std::string kubectl = require_tool(
      "kubectl", ctx.path_env, "install kubectl and point it at the cluster, or use --dry-run");
  const std::string dir = submit_dir(c, ctx);
  make_dirs(dir);
  write_file_atomic(dir + "/" + experiment_file(c), render_config(c));
  const std::string secret_path = dir + "/k8s-secret.yaml";
  const std::string manifests_path = dir + "/k8s.yaml";
  const JobTls tls = generate_job_tls();
  write_file_atomic(secret_path,
                    render_k8s_secret(c, generate_job_token(), tls.cert_pem, tls.key_pem), 0600);
  write_file_atomic(manifests_path, manifests);
  ToolResult r = run_tool({kubectl, "apply", "-f", secret_path, "-f", manifests_path});
  TANDEM_CHECK_T(IoError, r.status == 0, "kubectl apply -f ", manifests_path, " failed (exit ",
                 r.status, "): ", first_line(r.err));
  const KubernetesConfig& k = c.cluster.kubernetes;
  *ctx.out << r.out << "applied " << k8s_job_name(c) << " in namespace " << k.namespace_name << " ("
           << k.flavor << ", " << k.nodes << " node(s))\n"
           << "manifests: " << manifests_path << "\n"
           << "pods: kubectl get pods -n " << k.namespace_name
           << " -l tandem/job=" << k8s_job_name(c) << "\n";
  return 0;
}

int slurm_status(const std::string& job_id, const SubmitContext& ctx) {
  check_job_id(job_id);
  const std::string scontrol =
      require_tool("scontrol", ctx.path_env, "install slurm-client or run on a login node");
  ToolResult r = run_tool({scontrol, "show", "job", "-o", job_id});
  TANDEM_CHECK_T(IoError, r.status == 0 && !trim(r.out).empty(), "scontrol show job ", job_id,
                 " failed (exit ", r.status, "): ", first_line(r.err));
  // One line of Key=Value words (values without spaces for the keys read here).
  std::map<std::string, std::string> fields;
  std::istringstream words(first_line(r.out));
  for (std::string w; words >> w;) {
    size_t eq = w.find('=');
    if (eq != std::string::npos && !fields.count(w.substr(0, eq)))
      fields[w.substr(0, eq)] = w.substr(eq + 1);
  }
  auto field = [&](const char* key) {
    auto it = fields.find(key);
    return it == fields.end() ? std::string("?") : it->second;
  };
  *ctx.out << job_id << " " << field("JobState") << " name=" << field("JobName")
           << " elapsed=" << field("RunTime") << " nodes=" << field("NodeList")
           << " reason=" << field("Reason") << " exit=" << field("ExitCode")
           << " output=" << field("StdOut") << "\n";
  return 0;
}

int slurm_cancel(const std::string& job_id, const SubmitContext& ctx) {
  check_job_id(job_id);
  const std::string scancel =
      require_tool("scancel", ctx.path_env, "install slurm-client or run on a login node");
  ToolResult r = run_tool({scancel, job_id});
  TANDEM_CHECK_T(IoError, r.status == 0, "scancel ", job_id, " failed (exit ", r.status,
                 "): ", first_line(r.err));
  *ctx.out << "cancelled " << job_id << "\n";
  return 0;
}

}  // namespace tandem::cluster
