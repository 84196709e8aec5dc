// `tandem scaling`: predicts how a data-parallel job scales to many GPUs -- step time, exposed
// communication, samples/s and scaling efficiency per cluster size -- from one measured
// single-process trace of the experiment (core/metrics/trace.h), or from a published per-GPU step
// time or throughput, and the model's real DDP bucket plan (launcher/scaling/step_model.h has the
// model and its assumptions; docs/SCALING.md the checks against published results).
//
// Contract: prints the inputs it used, a table, then one line per cluster size that scripts can
// read: `nodes=N gpus=G step_ms=... compute_ms=... exposed_comm_ms=... samples_per_s=...
// efficiency=...`. Bad flags or trace files: ConfigError (exit 2) naming the flag or file.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace tandem {

struct ScalingCommand {
  CLI::App* app = nullptr;
  std::string config_path;  // optional: the experiment (model, batch, bucket sizes)
  std::vector<std::string> overrides;
  // Where the compute profile comes from: a trace, or a step time / throughput.
  std::string trace;
  double step_ms = 0;
  double samples_per_s = 0;
  int64_t batch_per_gpu = 0;  // 0: the config's data.batch_size, else 1
  double backward_fraction = 2.0 / 3.0;
  // Where the parameter list comes from when not from the config.
  std::string model;
  double params = 0;
  // The cluster.
  std::string nodes = "1,2,4,8,16,32";
  int procs_per_node = 8;
  double intra_gbps = 2400;
  double inter_gbps = 200;
  double latency_us = 5;
  double bandwidth_efficiency = 0.9;
  std::string algorithm = "ring";
  // The framework's gradient fusion.
  double bucket_mb = -1;        // -1: the config's strategy.bucket_mb, else 25
  double first_bucket_mb = -1;  // -1: the config's strategy.first_bucket_mb, else 1
  double cycle_ms = 0;          // > 0: Horovod's fusion cycle
  bool no_overlap = false;
  std::string compression;     // "": the config's strategy.compression, else none
  double compute_jitter = -1;  // -1: measured from the trace, else 0.03
};

void add_scaling_command(CLI::App& app, ScalingCommand& c);
// Writes the report to `out`; returns the exit code. Throws ConfigError on bad input.
int cmd_scaling(const ScalingCommand& c, std::ostream& out);

}  // namespace tandem
