#include "launcher/scaling_command.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <optional>
#include <sstream>

#include "configs/schema/config.h"
#include "core/base/error.h"
#include "core/nn/models.h"
#include "launcher/scaling/model_tables.h"
#include "launcher/scaling/step_model.h"
#include "launcher/scaling/trace_profile.h"
#include "strategies/trainer/builders.h"

namespace tandem {
namespace {

using scaling::Algorithm;
using scaling::ClusterSpec;
using scaling::ComputeProfile;
using scaling::FusionPolicy;
using scaling::GradientTensor;

constexpr double kDefaultJitter = 0.03;  // docs/SCALING.md: the one value used for every check
constexpr int64_t kFlatTensorElements = int64_t{1} << 18;  // --params: 1 MiB f32 tensors

const char* kAssumptions =
    "Model (docs/SCALING.md):\n"
    "  - Buckets as tandem's DDP reducer plans them (strategy.first_bucket_mb, bucket_mb; "
    "reverse\n    parameter order, the order gradients arrive in). A bucket's all-reduce starts "
    "when its last\n    gradient is ready and the previous bucket's all-reduce is done; the step "
    "ends when backward\n    and the last all-reduce are done, plus the optimizer.\n"
    "  - All-reduce cost, alpha-beta: ring 2(N-1) alpha + 2(N-1)/N S/B; tree (NCCL's double "
    "binary\n    tree) 2 log2(N) alpha + 2 S/B; hierarchical: intra-node reduce-scatter and "
    "all-gather over\n    the intra link + inter-node ring of S/procs-per-node per GPU over the "
    "node's network. B is\n    the link rate times --bandwidth-efficiency; one node uses the intra "
    "link only.\n"
    "  - Every rank computes what the traced process did (weak scaling). Ranks vary: compute is "
    "that\n    of the slowest of G ranks, (1 + cv * z_G) times the profile's, cv the step-to-step "
    "variation\n    (measured from the trace, else 3%), z_G the expected maximum of G standard "
    "normals.\n"
    "  - Communication and compute do not slow each other down.\n"
    "  - Without a trace: forward + optimizer = (1 - f) and backward = f of the step time "
    "(f = 2/3\n    unless --backward-fraction), gradients ready uniformly over backward, layer by "
    "layer in\n    reverse parameter order (--params N: N parameters as equal 1 MiB tensors).\n";

std::vector<int> parse_nodes(const std::string& text) {
  std::vector<int> nodes;
  std::stringstream in(text);
  std::string item;
  const std::string expected =
      "--nodes: expected a comma-separated list of node counts >= 1, e.g. 1,2,4,8, got '";
  while (std::getline(in, item, ',')) {
    if (item.empty() || item.size() > 6 ||
        item.find_first_not_of("0123456789") != std::string::npos)
      throw ConfigError(expected + text + "'");
    const int n = std::stoi(item);
    if (n < 1) throw ConfigError(expected + text + "'");
    nodes.push_back(n);
  }
  if (nodes.empty()) throw ConfigError(expected + text + "'");
  return nodes;
}

// Bytes on the wire per gradient byte: bf16 and fp16 halve f32.
double wire_fraction(Compression compression) {
  return compression == Compression::kNone ? 1.0 : 0.5;
}

std::vector<GradientTensor> from_module(const Module& model) {
  std::vector<GradientTensor> grads;
  for (const auto& [name, p] : model.named_parameters())
    grads.push_back({name, p.numel() * static_cast<int64_t>(dtype_size(p.dtype())), p.dtype()});
  return grads;
}

// --model NAME: a torchvision table, or one of tandem's ImageNet models.
std::vector<GradientTensor> named_model(const std::string& name) {
  for (const scaling::ModelTable& table : scaling::model_tables()) {
    if (name != table.name || name == std::string("resnet50")) continue;
    std::vector<GradientTensor> grads;
    for (size_t i = 0; i < table.size; ++i) {
      int64_t numel = 1;
      for (int d = 0; d < table.params[i].rank; ++d) numel *= table.params[i].dims[d];
      grads.push_back({table.params[i].name, numel * 4, DType::kF32});
    }
    return grads;
  }
  if (name == "resnet18" || name == "resnet50") {
    ModelOptions mo;
    mo.in_channels = 3;
    mo.image_size = 224;
    mo.num_classes = 1000;
    Generator gen(0, 0);
    return from_module(*make_model(name, mo, gen));
  }
  throw ConfigError(
      str("--model: expected vgg16, inception_v3, resnet101 (torchvision's shapes) "
          "or resnet18, resnet50 (tandem's models), got '",
          name, "'"));
}

std::vector<GradientTensor> flat_model(double params) {
  std::vector<GradientTensor> grads;
  int64_t left = static_cast<int64_t>(std::llround(params));
  for (int i = 0; left > 0; ++i) {
    const int64_t n = std::min(left, kFlatTensorElements);
    grads.push_back({str("layer", i, ".weight"), n * 4, DType::kF32});
    left -= n;
  }
  return grads;
}

std::string fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", digits, v);
  return buf;
}

std::string mib(double bytes) {
  return fixed(bytes / 1048576.0, bytes < 10 * 1048576.0 ? 2 : 1) + " MiB";
}

}  // namespace

// Long: one add_option per flag, read as a table of the command's options.
void add_scaling_command(CLI::App& app, ScalingCommand& c) {
  c.app = app.add_subcommand(
      "scaling",
      "Predict step time, exposed communication, samples/s and scaling efficiency on 1 to many\n"
      "nodes from a measured single-process trace (--trace) or a per-GPU step time (--step-ms,\n"
      "--samples-per-s), with the model's real DDP bucket plan.\n\n"
      "  tandem scaling configs/resnet50_synthetic.yaml --trace runs/resnet50_synthetic/trace \\\n"
      "      --nodes 1,2,4,8,16,32 --procs-per-node 8 --intra-gbps 2400 --inter-gbps 200\n"
      "  tandem scaling --model vgg16 --samples-per-s 154 --batch-per-gpu 64 --nodes 1,32,128 \\\n"
      "      --procs-per-node 4 --inter-gbps 25 --bucket-mb 64 --cycle-ms 5");
  c.app->footer(kAssumptions);
  // A flag given twice takes its last value, as overrides do (scripts append to a base command).
  c.app->option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  c.app->add_option("config", c.config_path,
                    "the experiment (YAML): model, batch, strategy.bucket_mb/first_bucket_mb");
  c.app->add_option("overrides", c.overrides, "key.path=value pairs that override the file");
  c.app->add_option("--trace", c.trace,
                    "a trace of CONFIG on one process: a trace/ directory (rank-R.json, the "
                    "lowest R is read) or one file");
  c.app
      ->add_option("--step-ms", c.step_ms,
                   "without a trace: one GPU's step time in ms (forward + backward + optimizer)")
      ->check(CLI::PositiveNumber);
  c.app
      ->add_option("--samples-per-s", c.samples_per_s,
                   "without a trace: one GPU's throughput; the step time is batch / throughput")
      ->check(CLI::PositiveNumber);
  c.app
      ->add_option("--batch-per-gpu", c.batch_per_gpu,
                   "samples per GPU per step (default: CONFIG's data.batch_size, else 1)")
      ->check(CLI::PositiveNumber);
  c.app
      ->add_option("--backward-fraction", c.backward_fraction,
                   "without a trace: backward's share of the step (default 2/3)")
      ->check(CLI::Range(0.0, 1.0));
  c.app->add_option("--model", c.model,
                    "parameter list instead of CONFIG's model: vgg16, inception_v3, resnet101 "
                    "(torchvision), resnet18, resnet50 (tandem)");
  c.app
      ->add_option("--params", c.params,
                   "parameter count instead of a model (f32, as equal 1 MiB tensors)")
      ->check(CLI::PositiveNumber);
  c.app->add_option("--nodes", c.nodes, "cluster sizes to predict, nodes (default 1,2,4,8,16,32)");
  c.app->add_option("--procs-per-node", c.procs_per_node, "GPUs (ranks) per node (default 8)")
      ->check(CLI::PositiveNumber);
  c.app
      ->add_option(
          "--intra-gbps", c.intra_gbps,
          "per-GPU bandwidth within a node, each way, Gbit/s (default 2400: 300 GB/s, A100 NVLink)")
      ->check(CLI::PositiveNumber);
  c.app
      ->add_option("--inter-gbps", c.inter_gbps,
                   "network bandwidth per node, all NICs together, Gbit/s (default 200)")
      ->check(CLI::PositiveNumber);
  c.app->add_option("--latency-us", c.latency_us, "alpha: latency per message step, us (default 5)")
      ->check(CLI::NonNegativeNumber);
  c.app
      ->add_option("--bandwidth-efficiency", c.bandwidth_efficiency,
                   "fraction of the link rates a collective achieves (default 0.9)")
      ->check(CLI::Range(0.01, 1.0));
  c.app->add_option("--algorithm", c.algorithm, "ring (default), tree or hierarchical");
  c.app
      ->add_option("--bucket-mb", c.bucket_mb,
                   "bucket size, MiB (default: CONFIG's strategy.bucket_mb, else 25); with "
                   "--cycle-ms, Horovod's fusion threshold")
      ->check(CLI::PositiveNumber);
  c.app
      ->add_option("--first-bucket-mb", c.first_bucket_mb,
                   "first bucket, MiB (default: CONFIG's strategy.first_bucket_mb, else 1)")
      ->check(CLI::PositiveNumber);
  c.app
      ->add_option(
          "--cycle-ms", c.cycle_ms,
          "Horovod's tensor fusion instead of static buckets: every cycle, fuse the "
          "gradients ready into buffers of --bucket-mb (Horovod before 0.21: 5 ms, 64 MiB)")
      ->check(CLI::NonNegativeNumber);
  c.app->add_flag("--no-overlap", c.no_overlap,
                  "all-reduce only after backward (e.g. one pack at the end, as "
                  "tf.distribute's MirroredStrategy with one pack)");
  c.app->add_option("--compression", c.compression,
                    "gradients on the wire: none, bf16, fp16 (default: CONFIG's "
                    "strategy.compression, else none)");
  c.app
      ->add_option("--compute-jitter", c.compute_jitter,
                   "step-to-step variation of compute, std/mean (default: measured from the "
                   "trace, else 0.03)")
      ->check(CLI::Range(0.0, 1.0));
}

namespace {

// Which sources of step time and parameters were given, and that they do not contradict.
void check_sources(const ScalingCommand& c) {
  const bool timed = c.step_ms > 0 || c.samples_per_s > 0;
  TANDEM_CHECK_T(ConfigError, !(c.step_ms > 0 && c.samples_per_s > 0),
                 "--step-ms and --samples-per-s: give one of them");
  TANDEM_CHECK_T(ConfigError, c.trace.empty() || !timed,
                 "--trace and --step-ms/--samples-per-s: give one source of step time");
  TANDEM_CHECK_T(ConfigError, !c.trace.empty() || timed,
                 "no step time: give --trace DIR (a measured trace of CONFIG) or --step-ms MS / "
                 "--samples-per-s N (a published per-GPU figure)");
  TANDEM_CHECK_T(ConfigError, c.trace.empty() || !c.config_path.empty(),
                 "--trace needs CONFIG, the experiment it traced (its model names the modules)");
  TANDEM_CHECK_T(ConfigError, c.model.empty() || c.params <= 0, "--model and --params: give one");
  TANDEM_CHECK_T(ConfigError, c.trace.empty() || (c.model.empty() && c.params <= 0),
                 "--trace reads CONFIG's model; --model/--params are for estimates without one");
  TANDEM_CHECK_T(ConfigError, !c.config_path.empty() || !c.model.empty() || c.params > 0,
                 "no parameter list: give CONFIG, --model NAME or --params N");
}

// The gradients to all-reduce: a named model, a flat parameter count, or CONFIG's model.
std::vector<GradientTensor> parameter_list(const ScalingCommand& c,
                                           const std::optional<ExperimentConfig>& cfg,
                                           std::string* model_name) {
  std::vector<GradientTensor> grads;
  if (!c.model.empty()) {
    grads = named_model(c.model);
    *model_name = c.model;
  } else if (c.params > 0) {
    grads = flat_model(c.params);
    *model_name = str(fixed(c.params / 1e6, 2), " M parameters");
  } else {
    std::shared_ptr<const Dataset> data = build_dataset(*cfg, "train");
    grads = from_module(*build_model(*cfg, *data));
    *model_name = str(cfg->model.name, " (", c.config_path, ")");
  }
  TANDEM_CHECK_T(ConfigError, !grads.empty(), "the model has no parameters: nothing to all-reduce");
  return grads;
}

// The framework's fusion: buckets (flags, else CONFIG, else PyTorch's defaults) or Horovod's
// cycles, overlap, and the compression on the wire.
FusionPolicy fusion_policy(const ScalingCommand& c, const std::optional<ExperimentConfig>& cfg,
                           Compression* compression) {
  FusionPolicy policy;
  const double bucket_mb = c.bucket_mb > 0 ? c.bucket_mb : cfg ? cfg->strategy.bucket_mb : 25.0;
  const double first_mb = c.first_bucket_mb > 0 ? c.first_bucket_mb
                          : cfg                 ? cfg->strategy.first_bucket_mb
                                                : 1.0;
  policy.bucket_bytes = static_cast<int64_t>(bucket_mb * 1048576.0);
  policy.first_bucket_bytes = static_cast<int64_t>(first_mb * 1048576.0);
  policy.cycle_ms = c.cycle_ms;
  policy.overlap = !c.no_overlap;
  *compression = Compression::kNone;
  if (!c.compression.empty()) {
    std::optional<Compression> flag = enum_from_name<Compression>(c.compression);
    TANDEM_CHECK_T(ConfigError, flag.has_value(), "--compression: expected ",
                   enum_names<Compression>(" or "), ", got '", c.compression, "'");
    *compression = *flag;
  } else if (cfg) {
    *compression = cfg->strategy.compression;
  }
  policy.wire_bytes_per_byte = wire_fraction(*compression);
  return policy;
}

// The compute profile and where each part of it came from.
struct ProfileWithSources {
  ComputeProfile profile;
  std::string source, readiness, jitter_source;
};

ProfileWithSources compute_profile(const ScalingCommand& c,
                                   const std::optional<ExperimentConfig>& cfg,
                                   const std::vector<GradientTensor>& grads,
                                   const FusionPolicy& policy) {
  ProfileWithSources p;
  ComputeProfile& profile = p.profile;
  if (!c.trace.empty()) {
    FusionPolicy traced = policy;  // the trace was recorded with the config's buckets
    traced.first_bucket_bytes = static_cast<int64_t>(cfg->strategy.first_bucket_mb * 1048576.0);
    traced.bucket_bytes = static_cast<int64_t>(cfg->strategy.bucket_mb * 1048576.0);
    traced.wire_bytes_per_byte = wire_fraction(cfg->strategy.compression);
    scaling::TraceProfile t = scaling::read_trace_profile(c.trace, grads, traced);
    profile = t.profile;
    p.source = str("medians of ", t.steps, " traced steps in ", t.path,
                   "; the traced step itself: ", fixed(t.step_ms, 2), " ms");
    p.readiness = t.readiness;
    p.jitter_source = t.steps >= 2 ? str("measured over ", t.steps, " steps")
                                   : "one traced step: no variation measured";
  } else {
    const int64_t batch = c.batch_per_gpu > 0 ? c.batch_per_gpu : cfg ? cfg->data.batch_size : 1;
    const double step = c.step_ms > 0 ? c.step_ms : batch * 1e3 / c.samples_per_s;
    profile.backward_ms = step * c.backward_fraction;
    profile.forward_ms = step - profile.backward_ms;  // forward and optimizer together
    profile.ready_ms = scaling::uniform_layer_ready_ms(grads, profile.backward_ms);
    profile.compute_cv = kDefaultJitter;
    p.source = c.step_ms > 0 ? str("--step-ms ", c.step_ms)
                             : str("--samples-per-s ", c.samples_per_s, " at ", batch, " per GPU");
    p.source += str(", backward ", fixed(c.backward_fraction, 3), " of it");
    p.readiness = "uniform over backward, layer by layer in reverse parameter order (assumed)";
    p.jitter_source = "assumed";
  }
  profile.batch_per_gpu = c.batch_per_gpu > 0 ? c.batch_per_gpu : cfg ? cfg->data.batch_size : 1;
  if (c.compute_jitter >= 0) {
    profile.compute_cv = c.compute_jitter;
    p.jitter_source = "--compute-jitter";
  }
  return p;
}

// What the predictions rest on: the model, the compute profile, the fusion and the cluster.
void print_inputs(const ScalingCommand& c, const std::string& model_name,
                  const std::vector<GradientTensor>& grads, Compression compression,
                  const FusionPolicy& policy, const ProfileWithSources& p, Algorithm algorithm,
                  std::ostream& out) {
  const ComputeProfile& profile = p.profile;
  double total_bytes = 0, total_params = 0;
  for (const GradientTensor& g : grads) {
    total_bytes += static_cast<double>(g.bytes);
    total_params += static_cast<double>(g.bytes) / dtype_size(g.dtype);
  }
  out << "tandem scaling: " << model_name << ", " << grads.size() << " gradient tensors, "
      << fixed(total_params / 1e6, 2) << " M parameters, " << mib(total_bytes) << " of gradients";
  if (policy.wire_bytes_per_byte != 1) out << " (" << compression << " on the wire)";
  out << "\n  compute per step: data " << fixed(profile.data_ms, 2) << " ms, forward "
      << fixed(profile.forward_ms, 2) << " ms, backward " << fixed(profile.backward_ms, 2)
      << " ms, optimizer " << fixed(profile.optimizer_ms, 2) << " ms (" << p.source << "); batch "
      << profile.batch_per_gpu << " per GPU\n"
      << "  gradients ready: " << p.readiness << "\n"
      << "  compute variation between steps: " << fixed(100 * profile.compute_cv, 2) << "% ("
      << p.jitter_source << ")\n";
  if (policy.cycle_ms > 0)
    out << "  fusion: Horovod's, every " << policy.cycle_ms << " ms into buffers of up to "
        << mib(static_cast<double>(policy.bucket_bytes)) << "\n";
  else
    out << "  buckets: first " << mib(static_cast<double>(policy.first_bucket_bytes)) << ", then "
        << mib(static_cast<double>(policy.bucket_bytes)) << " -> "
        << scaling::plan_reducer_buckets(grads, profile.ready_ms, policy).size()
        << " all-reduces per step" << (policy.overlap ? "" : ", after backward (no overlap)")
        << "\n";
  out << "  cluster: " << c.procs_per_node << " GPUs per node, intra " << c.intra_gbps
      << " Gbit/s per GPU, inter " << c.inter_gbps << " Gbit/s per node, alpha " << c.latency_us
      << " us, " << fixed(100 * c.bandwidth_efficiency, 0) << "% of link rates, "
      << scaling::algorithm_name(algorithm) << " all-reduce\n\n";
}

// The predictions: a table, then one key=value line per cluster size for scripts.
void print_predictions(const std::vector<scaling::StepPrediction>& rows, std::ostream& out) {
  char line[256];
  std::snprintf(line, sizeof(line), "%6s %6s %10s %11s %10s %11s %9s %6s %12s %10s %9s\n", "nodes",
                "gpus", "step_ms", "compute_ms", "straggler", "exposed_ms", "comm_ms", "colls",
                "samples/s", "efficiency", "vs_first");
  out << line;
  for (const scaling::StepPrediction& r : rows) {
    const scaling::StepPrediction& first = rows.front();
    const double vs_first =
        (r.samples_per_s / r.gpus) / (first.samples_per_s / first.gpus);  // per-GPU throughput
    std::snprintf(line, sizeof(line),
                  "%6d %6d %10.2f %11.2f %10.2f %11.2f %9.2f %6d %12.1f %9.1f%% %8.1f%%\n", r.nodes,
                  r.gpus, r.step_ms, r.compute_ms, r.straggler_ms, r.exposed_comm_ms, r.comm_ms,
                  r.collectives, r.samples_per_s, 100 * r.efficiency, 100 * vs_first);
    out << line;
  }
  out << "\n";
  for (const scaling::StepPrediction& r : rows)
    out << "nodes=" << r.nodes << " gpus=" << r.gpus << " step_ms=" << fixed(r.step_ms, 3)
        << " compute_ms=" << fixed(r.compute_ms, 3)
        << " exposed_comm_ms=" << fixed(r.exposed_comm_ms, 3)
        << " samples_per_s=" << fixed(r.samples_per_s, 1)
        << " efficiency=" << fixed(r.efficiency, 4) << "\n";
}

}  // namespace

int cmd_scaling(const ScalingCommand& c, std::ostream& out) {
  check_sources(c);
  const std::vector<int> node_counts = parse_nodes(c.nodes);
  const Algorithm algorithm = scaling::parse_algorithm(c.algorithm, "--algorithm");
  std::optional<ExperimentConfig> cfg;
  if (!c.config_path.empty()) {
    LoadOptions options;
    options.check_paths = false;
    cfg = load_config(c.config_path, c.overrides, options);
  } else {
    TANDEM_CHECK_T(ConfigError, c.overrides.empty(), "overrides '", c.overrides.front(),
                   "' need a CONFIG to override");
  }
  std::string model_name;
  Compression compression = Compression::kNone;
  const std::vector<GradientTensor> grads = parameter_list(c, cfg, &model_name);
  const FusionPolicy policy = fusion_policy(c, cfg, &compression);
  const ProfileWithSources profile = compute_profile(c, cfg, grads, policy);
  print_inputs(c, model_name, grads, compression, policy, profile, algorithm, out);

  std::vector<scaling::StepPrediction> rows;
  for (int n : node_counts) {
    ClusterSpec cluster;
    cluster.nodes = n;
    cluster.procs_per_node = c.procs_per_node;
    cluster.intra_gbps = c.intra_gbps;
    cluster.inter_gbps = c.inter_gbps;
    cluster.latency_us = c.latency_us;
    cluster.bandwidth_efficiency = c.bandwidth_efficiency;
    rows.push_back(scaling::predict_step(profile.profile, grads, cluster, algorithm, policy));
  }
  print_predictions(rows, out);
  return 0;
}

}  // namespace tandem
