#include "launcher/ps_command.h"

#include <malloc.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <csignal>
#include <iostream>

#include "configs/schema/config.h"
#include "core/base/error.h"
#include "launcher/stop_signal.h"
#include "strategies/parameter_server/ps_server.h"
#include "strategies/process_environment.h"
#include "strategies/trainer/builders.h"

namespace tandem {
namespace {

std::atomic<int> g_stop_signal{0};   // the first SIGINT/SIGTERM
std::atomic<int> g_signals_seen{0};  // how many stop requests arrived: copies of one do not count
StopSignals g_stop_signals;          // launcher/stop_signal.h

void on_signal(int sig) {
  switch (g_stop_signals.classify(sig)) {
    case StopSignals::Meaning::kFirst:
      g_stop_signal.store(sig);
      g_signals_seen.fetch_add(1);
      return;
    case StopSignals::Meaning::kSameRequest:
      return;
    case StopSignals::Meaning::kNow:
      g_signals_seen.fetch_add(1);
      return;
  }
}

}  // namespace

void keep_large_buffers_in_heap() {
  mallopt(M_MMAP_THRESHOLD, 128 << 20);
  mallopt(M_TRIM_THRESHOLD, 512 << 20);
}

void add_ps_command(CLI::App& app, PsCommand& c) {
  c.app = app.add_subcommand(
      "ps",
      "Serve one shard of a parameter_server job's variables and optimizer state.\n"
      "Binds 127.0.0.1 unless --host is given; needs the job token in TANDEM_JOB_TOKEN, and on\n"
      "an address other than loopback the job's TLS certificate and key in TANDEM_TLS_CERT and\n"
      "TANDEM_TLS_KEY (TANDEM_TLS=0: plaintext, insecure); prints\n"
      "`tandem ps: shard I listening on HOST:PORT`; exits 0 once every worker finished, or on\n"
      "SIGTERM/SIGINT. Workers find the shards through TANDEM_PS_ENDPOINTS=host:port,... (shard\n"
      "order); `tandem launch --num-ps K` starts the servers and sets it.");
  c.app->add_option("config", c.config_path, "the experiment (YAML), the same the workers run")
      ->required();
  c.app->add_option("--shard", c.shard, "which shard to serve, 0 .. strategy.num_ps-1")
      ->required()
      ->check(CLI::NonNegativeNumber);
  c.app->add_option("--host", c.host,
                    "address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)");
  c.app->add_option("--port", c.port, "port to listen on (default 0: a free port)")
      ->check(CLI::Range(0, 65535));
  c.app
      ->add_option("--stop-grace", c.stop_grace_s,
                   "after SIGTERM/SIGINT, seconds to keep serving until every worker is done (the "
                   "chief saves its last checkpoint from the servers); a second signal stops at "
                   "once, except a SIGTERM within 5 s of the first (default 20)")
      ->check(CLI::Range(0.0, 3600.0));
  c.app->add_option("overrides", c.overrides, "key.path=value pairs that override the file");
}

int cmd_ps(PsCommand& c) {
  ExperimentConfig cfg = load_config(c.config_path, c.overrides);
  TANDEM_CHECK_T(ConfigError, cfg.strategy.name == StrategyName::kParameterServer, c.config_path,
                 ": strategy.name is '", cfg.strategy.name,
                 "'; tandem ps serves parameter_server jobs (add strategy.name=parameter_server)");
  TANDEM_CHECK_T(ConfigError, c.shard < cfg.strategy.num_ps, "--shard ", c.shard,
                 " is out of range for strategy.num_ps = ", cfg.strategy.num_ps, " (expected 0 to ",
                 cfg.strategy.num_ps - 1, ")");
  std::map<std::string, std::string> env = current_environment();
  auto token = env.find("TANDEM_JOB_TOKEN");
  TANDEM_CHECK_T(ConfigError, token != env.end() && !token->second.empty(),
                 "tandem ps: TANDEM_JOB_TOKEN is not set: give the servers and the workers the "
                 "same secret, e.g. export TANDEM_JOB_TOKEN=$(od -An -tx1 -N16 /dev/urandom | tr "
                 "-d ' \\n')");
  keep_large_buffers_in_heap();
  PsServerOptions o;
  o.host = c.host;
  o.port = c.port;
  o.token = token->second;
  o.tls = job_tls_from_environment(env);
  o.shard = c.shard;
  o.num_shards = cfg.strategy.num_ps;
  o.mode = cfg.strategy.mode;
  o.max_staleness = cfg.strategy.max_staleness;
  o.max_message_bytes = static_cast<int64_t>(cfg.strategy.max_message_mb * 1048576.0);
  o.make_optimizer = [cfg](const NamedTensors& params) { return build_optimizer(cfg, params); };

  g_stop_signal.store(0);
  g_signals_seen.store(0);
  g_stop_signals.reset();
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::signal(SIGPIPE,
              SIG_IGN);  // a dead agent's pipe must not end the chief's last save (main.cc)
  PsServer server(o);
  std::cout << "tandem ps: shard " << c.shard << " listening on " << server.endpoint() << std::endl;
  const std::chrono::milliseconds poll(200);
  while (g_stop_signal.load() == 0 && !server.wait_finished(poll)) {
  }
  if (!server.finished()) {
    std::cout << "tandem ps: shard " << c.shard << " got signal " << g_stop_signal.load()
              << ": serving until every worker is done (the chief saves its last checkpoint), "
              << "at most " << c.stop_grace_s << " s (--stop-grace)" << std::endl;
    const auto deadline = std::chrono::steady_clock::now() +
                          std::chrono::milliseconds(static_cast<int64_t>(c.stop_grace_s * 1000));
    while (g_signals_seen.load() < 2 && std::chrono::steady_clock::now() < deadline &&
           !server.wait_finished(poll)) {
    }
  }
  const bool finished = server.finished();
  server.shutdown();
  std::cout << "tandem ps: shard " << c.shard
            << (finished ? " stopping: every worker finished"
                         : str(" stopping on signal ", g_stop_signal.load(),
                               g_signals_seen.load() > 1 ? " (a second one)"
                                                         : " (--stop-grace is over)"));
  if (o.mode == PsMode::kAsync)
    std::cout << " (async: a worker ran at most " << server.max_lead()
              << " step(s) ahead of the slowest; strategy.max_staleness "
              << (o.max_staleness > 0 ? std::to_string(o.max_staleness) : "unbounded") << ")";
  std::cout << std::endl;
  return 0;
}

}  // namespace tandem
