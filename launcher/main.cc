// The `tandem` command line. This is the only place that turns errors into exit codes:
// 0 success, 1 runtime failure, 2 bad usage or bad config (docs/DESIGN.md section 5.1).
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "cluster/submit.h"  // tandem submit, status, cancel
#include "cluster/tools.h"   // tandem launch --exec: find_tool
#include "collectives/net/host_address.h"
#include "configs/schema/config.h"
#include "core/base/error.h"
#include "launcher/agent.h"                  // tandem launch
#include "launcher/eval_command.h"           // tandem eval, predict
#include "launcher/heartbeat.h"              // tandem launch
#include "launcher/ps_command.h"             // tandem ps
#include "launcher/scaling_command.h"        // tandem scaling
#include "launcher/stop_signal.h"            // tandem train, on SIGINT/SIGTERM
#include "strategies/process_environment.h"  // tandem launch
#include "strategies/strategy_factory.h"
#include "strategies/trainer/trainer.h"

namespace tandem {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

// For the signal handler: SIGINT/SIGTERM -> save and stop. The handler is installed before the
// strategy is built, so a signal during its setup (a shared-memory segment created, the others not
// yet there) lets the setup finish and clean up; the run then stops before its first step. A second
// signal ends the process at once -- but not a copy of the first SIGTERM (launcher/stop_signal.h).
std::atomic<Trainer*> g_trainer{nullptr};
std::atomic<bool> g_stop_requested{false};
StopSignals g_stop_signals;

void on_stop_signal(int sig) {
  switch (g_stop_signals.classify(sig)) {
    case StopSignals::Meaning::kFirst:
      g_stop_requested.store(true);
      if (Trainer* t = g_trainer.load()) t->request_stop();
      return;
    case StopSignals::Meaning::kSameRequest: {
      static const char kNote[] =
          "tandem train: SIGTERM again within 5 s of the first: the same stop request, still "
          "saving\n";
      ssize_t ignored = write(STDERR_FILENO, kNote, sizeof(kNote) - 1);  // async-signal-safe
      (void)ignored;
      return;
    }
    case StopSignals::Meaning::kNow:
      std::signal(sig, SIG_DFL);
      std::raise(sig);  // delivered when the handler returns: the process ends by this signal
      return;
  }
}

int cmd_train(const std::string& config_path, const std::vector<std::string>& overrides) {
  ExperimentConfig cfg = load_config(config_path, overrides);
  const ProcessEnvironment process = detect_environment(current_environment());
  // training.threads = 0: OMP_NUM_THREADS when set (the share of the cores `tandem launch`,
  // torchrun or a Slurm script gave this process), else all cores -- set_num_threads(0).
  // tandem launch: a worker started by the agent tells it it is alive (launcher/heartbeat.h).
  auto heartbeat = WorkerHeartbeat::start_under_launcher(process);
  if (cfg.strategy.name == StrategyName::kParameterServer)
    keep_large_buffers_in_heap();  // ps_command.h
  g_stop_requested.store(false);
  g_stop_signals.reset();
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGTERM, on_stop_signal);
  // Output is not worth a run: under `tandem launch` stdout and stderr are pipes to the agent, and
  // a worker whose agent died (told by PR_SET_PDEATHSIG) must still save its stop, not die of
  // SIGPIPE at its first line. A write to a closed pipe then just fails.
  std::signal(SIGPIPE, SIG_IGN);
  StrategyBuild strategy = make_strategy(cfg, process);
  // One line per rank in a job of several: who this is and how it found out (under srun --label
  // or tandem launch the line is prefixed with the task or rank, so a log shows every rank).
  if (process.world_size > 1)
    std::cerr << "tandem train: rank " << process.rank << " of " << process.world_size
              << " (local rank " << process.local_rank << " of " << process.local_world_size
              << ", node " << process.node_rank << ", from " << process.source << " variables) on "
              << this_hostname() << ", strategy " << strategy.strategy->name() << "\n";
  RunEnvironment env;
  env.out_is_terminal = isatty(STDOUT_FILENO) == 1;
  env.hostname = this_hostname();
  env.local_rank = process.local_rank;
  Trainer trainer(cfg, std::move(strategy.strategy), env);
  g_trainer.store(&trainer);
  if (g_stop_requested.load()) trainer.request_stop();  // a signal while the strategy was built
  TrainResult r = trainer.run();
  g_trainer.store(nullptr);
  if (r.stopped_early) {
    std::cout << "stopped at step " << r.step << "; checkpoint saved in " << cfg.checkpoint.dir
              << " (run the same command to resume)\n";
    return 130;
  }
  return kExitOk;
}

// ---- tandem launch (launcher/agent.h) ------------------------------------------------------
// Flags follow torchrun's (its underscore spellings are accepted too), and like torchrun each
// flag may come from a PET_<FLAG> variable (as a Kubeflow PyTorchJob sets them).
struct LaunchCommand {
  CLI::App* app = nullptr;
  AgentOptions agent;
  double monitor_interval_s = 1;
  double heartbeat_timeout_s = 60;
  double stop_grace_s = 30;
  double restart_backoff_s = 1;
  double rdzv_timeout_s = 300;
  std::string config_path;
  std::vector<std::string> overrides;
  int num_ps = -1;    // -1: strategy.num_ps for parameter_server experiments, else 0
  bool exec = false;  // config_path is a program, overrides its arguments (torchrun --no-python)
};

// Long: one add_option per flag, read as a table of the command's options.
void add_launch_command(CLI::App& app, LaunchCommand& c) {
  c.app = app.add_subcommand(
      "launch",
      "Run N workers of `tandem train` (or, with --exec, of any program) on this node "
      "(torchrun-style), restart them on failure");
  c.app
      ->add_option("--nproc-per-node,--nproc_per_node", c.agent.nproc_per_node,
                   "workers on this node (default 1)")
      ->envname("PET_NPROC_PER_NODE")
      ->check(CLI::PositiveNumber);
  c.app->add_option("--nnodes", c.agent.nnodes, "nodes in the job (default 1)")
      ->envname("PET_NNODES")
      ->check(CLI::PositiveNumber);
  c.app->add_option("--node-rank,--node_rank", c.agent.node_rank, "this node's index (default 0)")
      ->envname("PET_NODE_RANK")
      ->check(CLI::NonNegativeNumber);
  c.app
      ->add_option("--rdzv-endpoint,--rdzv_endpoint", c.agent.rdzv_endpoint,
                   "HOST:PORT of node 0's store; needed with --nnodes > 1 (default: 127.0.0.1, "
                   "a free port)")
      ->envname("PET_RDZV_ENDPOINT");
  c.app
      ->add_option("--max-restarts,--max_restarts", c.agent.max_restarts,
                   "restarts of all workers after a failure before giving up (default 0)")
      ->envname("PET_MAX_RESTARTS")
      ->check(CLI::NonNegativeNumber);
  c.app
      ->add_option("--monitor-interval,--monitor_interval", c.monitor_interval_s,
                   "seconds between checks of heartbeats and other nodes (default 1)")
      ->envname("PET_MONITOR_INTERVAL")
      ->check(CLI::PositiveNumber);
  c.app
      ->add_option("--heartbeat-timeout", c.heartbeat_timeout_s,
                   "restart when a worker sends no heartbeat for this many seconds; 0 turns the "
                   "check off (default 60)")
      ->check(CLI::NonNegativeNumber);
  c.app
      ->add_option("--stop-grace", c.stop_grace_s,
                   "seconds between SIGTERM and SIGKILL when stopping workers for a restart "
                   "(default 30)")
      ->check(CLI::NonNegativeNumber);
  c.app
      ->add_option("--restart-backoff", c.restart_backoff_s,
                   "seconds to wait before the first restart, doubled for each one after it, at "
                   "most 64; 0: restart at once (default 1). A worker that exits 2 (a usage or "
                   "config error) is never restarted")
      ->check(CLI::NonNegativeNumber);
  c.app
      ->add_option("--rdzv-timeout", c.rdzv_timeout_s,
                   "seconds to wait for the store and the other nodes (default 300)")
      ->check(CLI::PositiveNumber);
  c.app
      ->add_option("--num-ps", c.num_ps,
                   "parameter servers (`tandem ps`) to start on node 0 beside the workers, for "
                   "strategy.name=parameter_server; sets strategy.num_ps. Default: "
                   "strategy.num_ps of them, unless TANDEM_PS_ENDPOINTS names servers started "
                   "elsewhere; 0: start none (workers use TANDEM_PS_ENDPOINTS)")
      ->check(CLI::NonNegativeNumber);
  c.app->add_flag("--exec", c.exec,
                  "run CONFIG as a program, with the arguments after it as its own, instead of "
                  "`tandem train CONFIG` (torchrun's --no-python); put `--` before the program "
                  "when its arguments start with -, e.g. `tandem launch --nproc-per-node 2 --exec "
                  "-- ./my_worker --flag`");
  c.app->add_option("config", c.config_path, "the experiment (YAML); with --exec, the program")
      ->required();
  c.app->add_option("overrides", c.overrides,
                    "key.path=value pairs that override the file; with --exec, the program's "
                    "arguments");
}

// --exec's program: as given when it names a path, else looked up on PATH, as a shell would.
std::string find_program(const std::string& name) {
  const char* path = std::getenv("PATH");
  const std::string found = cluster::find_tool(name, path ? path : "");
  if (!found.empty()) return found;
  if (name.find('/') != std::string::npos)
    throw ConfigError(str("--exec: '", name, "' is not an executable file"));
  throw ConfigError(str("--exec: no program '", name, "' on PATH"));
}

int cmd_launch(LaunchCommand& c) {
  auto ms = [](double s) { return std::chrono::milliseconds(static_cast<int64_t>(s * 1000)); };
  AgentOptions& o = c.agent;
  o.monitor_interval = ms(c.monitor_interval_s);
  o.heartbeat_timeout = ms(c.heartbeat_timeout_s);
  o.stop_grace = ms(c.stop_grace_s);
  o.restart_backoff = ms(c.restart_backoff_s);
  o.rdzv_timeout = ms(c.rdzv_timeout_s);
  o.environment = current_environment();
  if (auto it = o.environment.find("TANDEM_JOB_TOKEN"); it != o.environment.end())
    o.job_token = it->second;
  o.tls = job_tls_from_environment(o.environment);
  if (c.exec) {  // any program, with the same variables, output prefixes, signals and restarts
    if (c.num_ps >= 0)
      throw ConfigError("--num-ps starts `tandem ps` servers; it has no meaning with --exec");
    std::vector<std::string> argv = {find_program(c.config_path)};
    argv.insert(argv.end(), c.overrides.begin(), c.overrides.end());
    return run_agent(o, argv);
  }
  if (c.num_ps > 0) c.overrides.push_back("strategy.num_ps=" + std::to_string(c.num_ps));
  // A bad experiment fails here, not in N workers.
  ExperimentConfig cfg = load_config(c.config_path, c.overrides);
  const bool ps = cfg.strategy.name == StrategyName::kParameterServer;
  if (c.num_ps > 0 && !ps)
    throw ConfigError(str("--num-ps ", c.num_ps,
                          " starts parameter servers, but strategy.name is '", cfg.strategy.name,
                          "' (add strategy.name=parameter_server)"));
  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n <= 0) throw IoError("tandem launch: cannot read /proc/self/exe to start the workers");
  std::vector<std::string> argv = {std::string(exe, static_cast<size_t>(n)), "train",
                                   c.config_path};
  argv.insert(argv.end(), c.overrides.begin(), c.overrides.end());
  // Servers: --num-ps K starts K; without the flag, strategy.num_ps of them unless
  // TANDEM_PS_ENDPOINTS already names servers started elsewhere; --num-ps 0 starts none.
  const bool start_servers =
      ps && (c.num_ps > 0 || (c.num_ps < 0 && !o.environment.count("TANDEM_PS_ENDPOINTS")));
  if (ps && !start_servers) {
    if (!o.environment.count("TANDEM_PS_ENDPOINTS"))
      throw ConfigError(
          "--num-ps 0: the workers need the servers' addresses in "
          "TANDEM_PS_ENDPOINTS=host:port,... (or let tandem launch start them: "
          "leave out --num-ps)");
    if (o.job_token.empty())
      throw ConfigError(
          "servers started elsewhere (TANDEM_PS_ENDPOINTS) need the job's token: set "
          "TANDEM_JOB_TOKEN to the secret they were started with");
  }
  if (start_servers) {  // node 0 starts them, the other nodes read their endpoints from the store
    o.num_ps = cfg.strategy.num_ps;
    o.restart_single_workers = cfg.strategy.mode == PsMode::kAsync;
    o.ps_argv = {argv[0], "ps", c.config_path};
    o.ps_argv.insert(o.ps_argv.end(), c.overrides.begin(), c.overrides.end());
  }
  return run_agent(o, argv);
}
// ---- end of tandem launch -----------------------------------------------------------------

// ---- tandem submit slurm|k8s, status, cancel (cluster/submit.h) ----------------------------
// Every flag is a spelling of a cluster.* key: it becomes an override applied after the user's,
// so the config schema checks it and a bad value is reported like any other key (naming the flag).
struct SubmitFlag {
  const char* flag;
  const char* key;
  const char* help;
};

const SubmitFlag kSlurmFlags[] = {
    {"--nodes", "cluster.slurm.nodes", "nodes (cluster.slurm.nodes)"},
    {"--ntasks-per-node", "cluster.slurm.ntasks_per_node",
     "training processes per node (cluster.slurm.ntasks_per_node)"},
    {"--gpus-per-node", "cluster.slurm.gpus_per_node",
     "GPUs per node; needs training.device cuda (cluster.slurm.gpus_per_node)"},
    {"--cpus-per-task", "cluster.slurm.cpus_per_task",
     "CPUs per task (cluster.slurm.cpus_per_task)"},
    {"--partition", "cluster.slurm.partition", "partition (cluster.slurm.partition)"},
    {"--time", "cluster.slurm.time", "time limit HH:MM:SS or D-HH:MM:SS (cluster.slurm.time)"},
    {"--account", "cluster.slurm.account", "account (cluster.slurm.account)"},
    {"--launcher", "cluster.slurm.launcher",
     "tandem: one `tandem launch` per node; mpi: srun --mpi=pmix per task "
     "(cluster.slurm.launcher)"},
    {"--port", "cluster.slurm.port", "rendezvous base port (cluster.slurm.port)"},
};

const SubmitFlag kK8sFlags[] = {
    {"--nodes", "cluster.kubernetes.nodes", "pods, one per node rank (cluster.kubernetes.nodes)"},
    {"--gpus-per-node", "cluster.kubernetes.gpus_per_node",
     "nvidia.com/gpu per pod; needs training.device cuda (cluster.kubernetes.gpus_per_node)"},
    {"--nproc-per-node", "cluster.kubernetes.nproc_per_node",
     "workers per pod (cluster.kubernetes.nproc_per_node)"},
    {"--image", "cluster.kubernetes.image", "container image (cluster.kubernetes.image)"},
    {"--namespace", "cluster.kubernetes.namespace", "namespace (cluster.kubernetes.namespace)"},
    {"--flavor", "cluster.kubernetes.flavor",
     "indexed: Indexed Job + headless Service; mpijob: Kubeflow MPIJob "
     "(cluster.kubernetes.flavor)"},
    {"--port", "cluster.kubernetes.port", "the store's port on pod 0 (cluster.kubernetes.port)"},
    {"--backoff-limit", "cluster.kubernetes.backoff_limit",
     "the Job's backoffLimit (cluster.kubernetes.backoff_limit)"},
};

struct SubmitTarget {
  CLI::App* app = nullptr;
  std::string config_path;
  std::vector<std::string> overrides;
  std::vector<std::string> raw;  // one per table entry
  bool dry_run = false;
  std::string tandem_path;  // slurm: the tandem on the compute nodes
};

struct SubmitCommand {
  CLI::App* app = nullptr;
  SubmitTarget slurm, k8s;
  CLI::App* status = nullptr;
  CLI::App* cancel = nullptr;
  std::string job_id;
};

template <size_t N>
void add_submit_target(CLI::App* parent, SubmitTarget& t, const char* name, const char* help,
                       const SubmitFlag (&flags)[N]) {
  t.app = parent->add_subcommand(name, help);
  t.app->add_option("config", t.config_path, "the experiment (YAML)")->required();
  t.raw.resize(N);
  for (size_t i = 0; i < N; ++i) t.app->add_option(flags[i].flag, t.raw[i], flags[i].help);
  t.app->add_flag("--dry-run", t.dry_run,
                  "print what would be submitted; write and submit nothing");
  t.app->add_option("overrides", t.overrides, "key.path=value pairs that override the file");
}

void add_submit_commands(CLI::App& app, SubmitCommand& c) {
  c.app = app.add_subcommand(
      "submit",
      "Submit an experiment to Slurm (sbatch) or Kubernetes (kubectl apply); flags default to the "
      "config's cluster section");
  c.app->require_subcommand(1);
  add_submit_target(c.app, c.slurm, "slurm",
                    "Write an sbatch script into <logging.dir>/submit/<digest>/ and submit it with "
                    "`sbatch --parsable`; prints the job id and the output file",
                    kSlurmFlags);
  c.slurm.app->add_option("--tandem", c.slurm.tandem_path,
                          "the tandem executable on the compute nodes (default: this one)");
  add_submit_target(c.app, c.k8s, "k8s",
                    "Write an Indexed Job, headless Service, ConfigMap and Secret (or a Kubeflow "
                    "MPIJob) and apply them with `kubectl apply -f`",
                    kK8sFlags);
  c.status = app.add_subcommand("status", "Show a Slurm job's state (scontrol show job)");
  c.status->add_option("job", c.job_id, "the Slurm job id `tandem submit slurm` printed")
      ->required();
  c.cancel = app.add_subcommand("cancel", "Cancel a Slurm job (scancel)");
  c.cancel->add_option("job", c.job_id, "the Slurm job id")->required();
}

std::string this_executable() {
  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n <= 0) throw IoError("cannot read /proc/self/exe");
  return std::string(exe, static_cast<size_t>(n));
}

cluster::SubmitContext submit_context(bool dry_run) {
  cluster::SubmitContext ctx;
  const char* path = std::getenv("PATH");
  ctx.path_env = path ? path : "";
  char cwd[4096];
  if (getcwd(cwd, sizeof(cwd)) == nullptr) throw IoError("cannot read the working directory");
  ctx.workdir = cwd;
  ctx.dry_run = dry_run;
  ctx.out = &std::cout;
  return ctx;
}

template <size_t N>
int cmd_submit(SubmitTarget& t, const SubmitFlag (&flags)[N], bool slurm) {
  std::vector<std::string> overrides = t.overrides;
  std::vector<std::pair<std::string, std::string>> flag_of;  // override -> "--flag value"
  for (size_t i = 0; i < N; ++i) {
    if (t.app->count(flags[i].flag) == 0) continue;
    std::string o = std::string(flags[i].key) + "=" + t.raw[i];
    overrides.push_back(o);
    flag_of.emplace_back("override '" + o + "'", std::string(flags[i].flag) + " " + t.raw[i]);
  }
  ExperimentConfig cfg;
  LoadOptions options;
  options.check_paths = false;  // the data lives on the cluster
  try {
    cfg = load_config(t.config_path, overrides, options);
  } catch (const ConfigError& e) {
    std::string msg = e.what();
    for (const auto& [prefix, flag] : flag_of)
      if (msg.rfind(prefix, 0) == 0) throw ConfigError(flag + msg.substr(prefix.size()));
    throw;
  }
  cluster::SubmitContext ctx = submit_context(t.dry_run);
  if (slurm) {
    ctx.tandem_path = t.tandem_path.empty() ? this_executable() : t.tandem_path;
    return cluster::submit_slurm(cfg, ctx);
  }
  return cluster::submit_k8s(cfg, ctx);
}
// ---- end of tandem submit -----------------------------------------------------------------

// `tandem --help`'s opening.
constexpr char kDescription[] =
    "tandem: data-parallel training of neural networks from a YAML experiment.\n\n"
    "  tandem train configs/fashion_mnist_cnn.yaml\n"
    "  tandem train configs/fashion_mnist_mlp.yaml optimizer.lr=0.002 training.epochs=5\n"
    "  tandem config show configs/fashion_mnist_cnn.yaml\n"
    "  tandem eval configs/image_folder_resnet18.yaml --json\n"
    "  tandem predict configs/image_folder_resnet18.yaml photos/\n"
    "  tandem submit slurm configs/fashion_mnist_mlp.yaml --nodes 2 strategy.name=ddp\n"
    "  tandem submit k8s configs/fashion_mnist_mlp.yaml --nodes 4 --dry-run\n\n"
    "Every key of the experiment is documented in configs/README.md; `key.path=value`\n"
    "arguments after the config file override it.";

// tandem train, config validate and config show: an experiment and its overrides each.
struct ExperimentCommands {
  std::string config_path;
  std::vector<std::string> overrides;
  CLI::App* train = nullptr;
  CLI::App* validate = nullptr;
  CLI::App* show = nullptr;
};

void add_experiment_commands(CLI::App& app, ExperimentCommands& c) {
  auto experiment_args = [&c](CLI::App* sub) {
    sub->add_option("config", c.config_path, "the experiment (YAML)")->required();
    sub->add_option("overrides", c.overrides, "key.path=value pairs that override the file");
  };
  c.train = app.add_subcommand("train", "Train one process from a YAML experiment");
  experiment_args(c.train);
  CLI::App* config = app.add_subcommand("config", "Check or print an experiment");
  config->require_subcommand(1);
  c.validate = config->add_subcommand(
      "validate", "Check an experiment: prints 'FILE: ok' or the first error (exit code 2)");
  experiment_args(c.validate);
  c.show = config->add_subcommand("show", "Print the resolved experiment with every default");
  experiment_args(c.show);
}

int run(int argc, char** argv) {
  CLI::App app{kDescription, "tandem"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("tandem ") + TANDEM_VERSION);

  ExperimentCommands experiment;  // tandem train, config validate, config show
  add_experiment_commands(app, experiment);

  LaunchCommand launch;  // tandem launch (see above)
  add_launch_command(app, launch);
  SubmitCommand submit;  // tandem submit, status, cancel (see above)
  add_submit_commands(app, submit);
  PsCommand ps;  // tandem ps (launcher/ps_command.h)
  add_ps_command(app, ps);
  ScalingCommand scaling;  // tandem scaling (launcher/scaling_command.h)
  add_scaling_command(app, scaling);
  EvalCommand eval;  // tandem eval, predict (launcher/eval_command.h)
  PredictCommand predict;
  add_eval_commands(app, eval, predict);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? kExitOk : kExitUsage;
  }

  try {
    if (*experiment.train) return cmd_train(experiment.config_path, experiment.overrides);
    if (*launch.app) return cmd_launch(launch);  // tandem launch
    if (*submit.slurm.app) return cmd_submit(submit.slurm, kSlurmFlags, true);
    if (*submit.k8s.app) return cmd_submit(submit.k8s, kK8sFlags, false);
    if (*submit.status) return cluster::slurm_status(submit.job_id, submit_context(false));
    if (*submit.cancel) return cluster::slurm_cancel(submit.job_id, submit_context(false));
    if (*ps.app) return cmd_ps(ps);                            // tandem ps
    if (*scaling.app) return cmd_scaling(scaling, std::cout);  // tandem scaling
    if (*eval.app) return cmd_eval(eval, std::cout);
    if (*predict.app) return cmd_predict(predict, std::cout);
    if (*experiment.validate) {
      load_config(experiment.config_path, experiment.overrides);
      std::cout << experiment.config_path << ": ok\n";
      return kExitOk;
    }
    if (*experiment.show) {
      std::cout << render_config(load_config(experiment.config_path, experiment.overrides));
      return kExitOk;
    }
  } catch (const ConfigError& e) {
    std::cerr << "tandem: error: " << e.what() << "\n";
    return kExitUsage;
  } catch (const Error& e) {
    std::cerr << "tandem: error: " << e.what() << "\n";
    return kExitFailure;
  } catch (const std::exception& e) {
    std::cerr << "tandem: error: " << e.what() << "\n";
    return kExitFailure;
  }
  return kExitUsage;
}

}  // namespace
}  // namespace tandem

int main(int argc, char** argv) {
  return tandem::run(argc, argv);
}
