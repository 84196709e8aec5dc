// The `tandem` command line. This is the only place that turns errors into exit codes:
// 0 success, 1 runtime failure, 2 bad usage or bad config (DESIGN.md section 5).
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "configs/schema/config.h"
#include "core/base/error.h"
#include "strategies/single/single_strategy.h"
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

std::unique_ptr<Strategy> make_strategy(const ExperimentConfig& cfg) {
  if (cfg.strategy.name == "single") return std::make_unique<SingleStrategy>();
  throw ConfigError(cfg.source_path + ": strategy.name: '" + cfg.strategy.name +
                    "' is not available in this build yet (available: single)");
}

int cmd_train(const std::string& config_path, const std::vector<std::string>& overrides) {
  ExperimentConfig cfg = load_config(config_path, overrides);
  RunEnvironment env;
  env.out_is_terminal = isatty(STDOUT_FILENO) == 1;
  env.hostname = hostname();
  Trainer trainer(cfg, make_strategy(cfg), env);
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
  CLI::App* validate = config->add_subcommand("validate", "Check an experiment; print nothing on success");
  validate->add_option("config", config_path, "the experiment (YAML)")->required();
  validate->add_option("overrides", overrides, "key.path=value pairs that override the file");
  CLI::App* show = config->add_subcommand("show", "Print the resolved experiment with every default");
  show->add_option("config", config_path, "the experiment (YAML)")->required();
  show->add_option("overrides", overrides, "key.path=value pairs that override the file");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? kExitOk : kExitUsage;
  }

  try {
    if (*train) return cmd_train(config_path, overrides);
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

int main(int argc, char** argv) { return tandem::run(argc, argv); }
