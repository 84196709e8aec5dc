// The `tandem` command line. This is the only place that turns errors into exit codes:
// 0 success, 1 runtime failure, 2 bad usage or bad config (DESIGN.md section 5).
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "configs/schema/config.h"
#include "core/base/error.h"
#include "launcher/agent.h"  // tandem launch
#include "launcher/environment.h"  // tandem launch
#include "launcher/heartbeat.h"    // tandem launch
#include "launcher/strategy_factory.h"
#include "strategies/trainer/trainer.h"

namespace tandem {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

Trainer* g_trainer = nullptr;  // for the signal handler: SIGINT/SIGTERM -> save and stop

void on_stop_signal(int sig) {
  if (g_trainer != nullptr) g_trainer->request_stop();
  std::signal(sig, SIG_DFL);  // a second signal ends the process at once
}

std::string hostname() {
  char buf[256] = {0};
  if (gethostname(buf, sizeof(buf) - 1) != 0) return "localhost";
  return buf;
}

int cmd_train(const std::string& config_path, const std::vector<std::string>& overrides) {
  ExperimentConfig cfg = load_config(config_path, overrides);
  const ProcessEnvironment process = detect_environment(current_environment());
  // training.threads = 0 means "all cores" -- unless the process was given a share of them, as
  // `tandem launch` (and torchrun, mpirun users) do through OMP_NUM_THREADS: N processes of
  // all-cores OpenMP teams would oversubscribe the machine.
  if (cfg.training.threads == 0) {
    if (const char* omp = std::getenv("OMP_NUM_THREADS")) {
      char* end = nullptr;
      long n = std::strtol(omp, &end, 10);
      if (end != omp && *end == '\0' && n > 0 && n < 4096) cfg.training.threads = static_cast<int>(n);
    }
  }
  // tandem launch: a worker started by the agent tells it it is alive (launcher/heartbeat.h).
  auto heartbeat = WorkerHeartbeat::start_under_launcher(process);
  StrategyBuild strategy = make_strategy(cfg, process);
  RunEnvironment env;
  env.out_is_terminal = isatty(STDOUT_FILENO) == 1;
  env.hostname = hostname();
  env.local_rank = process.local_rank;
  Trainer trainer(cfg, std::move(strategy.strategy), env);
  g_trainer = &trainer;
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGTERM, on_stop_signal);
  TrainResult r = trainer.run();
  g_trainer = nullptr;
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
  double rdzv_timeout_s = 300;
  std::string config_path;
  std::vector<std::string> overrides;
};

void add_launch_command(CLI::App& app, LaunchCommand& c) {
  c.app = app.add_subcommand(
      "launch",
      "Run N workers of `tandem train` on this node (torchrun-style), restart them on failure");
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
      ->add_option("--rdzv-timeout", c.rdzv_timeout_s,
                   "seconds to wait for the store and the other nodes (default 300)")
      ->check(CLI::PositiveNumber);
  c.app->add_option("config", c.config_path, "the experiment (YAML)")->required();
  c.app->add_option("overrides", c.overrides, "key.path=value pairs that override the file");
}

int cmd_launch(LaunchCommand& c) {
  load_config(c.config_path, c.overrides);  // a bad experiment fails here, not in N workers
  auto ms = [](double s) { return std::chrono::milliseconds(static_cast<int64_t>(s * 1000)); };
  AgentOptions& o = c.agent;
  o.monitor_interval = ms(c.monitor_interval_s);
  o.heartbeat_timeout = ms(c.heartbeat_timeout_s);
  o.stop_grace = ms(c.stop_grace_s);
  o.rdzv_timeout = ms(c.rdzv_timeout_s);
  o.environment = current_environment();
  if (auto it = o.environment.find("TANDEM_JOB_TOKEN"); it != o.environment.end())
    o.job_token = it->second;
  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n <= 0) throw IoError("tandem launch: cannot read /proc/self/exe to start the workers");
  std::vector<std::string> argv = {std::string(exe, static_cast<size_t>(n)), "train",
                                   c.config_path};
  argv.insert(argv.end(), c.overrides.begin(), c.overrides.end());
  return run_agent(o, argv);
}
// ---- end of tandem launch -----------------------------------------------------------------

int run(int argc, char** argv) {
  CLI::App app{
      "tandem: data-parallel training of neural networks from a YAML experiment.\n\n"
      "  tandem train configs/fashion_mnist_cnn.yaml\n"
      "  tandem train configs/fashion_mnist_mlp.yaml optimizer.lr=0.002 training.epochs=5\n"
      "  tandem config show configs/fashion_mnist_cnn.yaml\n\n"
      "Every key of the experiment is documented in configs/README.md; `key.path=value`\n"
      "arguments after the config file override it.",
      "tandem"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("tandem ") + TANDEM_VERSION);

  std::string config_path;
  std::vector<std::string> overrides;
  CLI::App* train = app.add_subcommand("train", "Train one process from a YAML experiment");
  train->add_option("config", config_path, "the experiment (YAML)")->required();
  train->add_option("overrides", overrides, "key.path=value pairs that override the file");

  CLI::App* config = app.add_subcommand("config", "Check or print an experiment");
  config->require_subcommand(1);
  CLI::App* validate = config->add_subcommand("validate", "Check an experiment: prints 'FILE: ok' or the first error (exit code 2)");
  validate->add_option("config", config_path, "the experiment (YAML)")->required();
  validate->add_option("overrides", overrides, "key.path=value pairs that override the file");
  CLI::App* show = config->add_subcommand("show", "Print the resolved experiment with every default");
  show->add_option("config", config_path, "the experiment (YAML)")->required();
  show->add_option("overrides", overrides, "key.path=value pairs that override the file");

  LaunchCommand launch;  // tandem launch (see above)
  add_launch_command(app, launch);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? kExitOk : kExitUsage;
  }

  try {
    if (*train) return cmd_train(config_path, overrides);
    if (*launch.app) return cmd_launch(launch);  // tandem launch
    if (*validate) {
      ExperimentConfig cfg = load_config(config_path, overrides);
      std::cout << config_path << ": ok\n";
      return kExitOk;
    }
    if (*show) {
      std::cout << render_config(load_config(config_path, overrides));
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
