// Typed experiment config (docs/DESIGN.md section 6): the structs every layer above core reads,
// and the functions that turn a YAML experiment file plus `key.path=value` overrides into them.
//
// The one decision to know: a config is validated completely at load time. Every error is a
// tandem::ConfigError with one line "FILE:LINE:COLUMN: KEY.PATH: message" (or
// "override 'k=v': KEY.PATH: message"), so `tandem config validate` can catch a typo before a job
// waits an hour in a queue. Defaults live in the member initialisers below and are documented,
// key by key, in configs/README.md; keep the two in step.
//
// Enumerated keys are C++ enums (configs/schema/enums.h, one name table each), so
// `config.optimizer.name == OptimizerName::kAdamW` is how code asks; nothing above configs compares
// their spellings. Relative paths are relative to the working directory of the process, as with
// every command-line tool.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "configs/schema/enums.h"

namespace tandem {

struct ModelConfig {
  // Required in a file unless onnx is set (then onnx by itself); the default here only serves
  // configs built in code.
  ModelName name = ModelName::kMlp;
  std::string onnx;       // ONNX file whose graph and initializers are the model; "" = none
  std::string init_from;  // safetensors file to start from; "" = fresh init
  std::vector<int64_t> hidden = {512, 512};  // mlp hidden widths (ignored by other models)
  int num_classes = 10;                      // >= 2
  bool operator==(const ModelConfig&) const = default;
};

struct DataConfig {
  // Required in a file; the default here only serves configs built in code.
  DatasetName name = DatasetName::kSynthetic;
  // Directory of the data set. Resolved at load time: when not given it is the default for
  // `name` (fashion_mnist: /usr/share/datasets/fashion-mnist, mnist: /usr/share/datasets/mnist,
  // cifar10: data/cifar-10-batches-bin, synthetic: "").
  std::string path;
  int batch_size = 64;    // GLOBAL batch: samples per step summed over all replicas
  int workers = 2;        // loader threads per process; 0 = load on the training thread
  bool augment = false;   // random crop + horizontal flip of training images
  bool normalize = true;  // subtract the data set's mean, divide by its std
  std::vector<int64_t> synthetic_shape = {3, 224, 224};  // [C, H, W]
  int64_t synthetic_samples = 1024;                      // samples per epoch
  int64_t image_size = 224;  // image_folder: side of the square crops fed to the model
  // Fraction of the training split held out for validation, drawn from `seed` (the same on every
  // rank); 0 = none (image_folder then validates on data.path/val).
  double validation_fraction = 0.0;
  bool operator==(const DataConfig&) const = default;
};

struct OptimizerConfig {
  OptimizerName name = OptimizerName::kSgd;
  double lr = 0.01;                          // > 0; the peak rate when a schedule warms up
  double weight_decay = 0.0;                 // >= 0; L2 for sgd/adam, decoupled for adamw
  double momentum = 0.9;                     // sgd, in [0, 1)
  bool nesterov = false;                     // sgd; needs momentum > 0
  std::vector<double> betas = {0.9, 0.999};  // adam/adamw, two values in [0, 1)
  double eps = 1e-8;                         // adam/adamw, > 0
  bool operator==(const OptimizerConfig&) const = default;
};

struct ScheduleConfig {
  ScheduleName name = ScheduleName::kConstant;
  int64_t warmup_steps = 0;  // linear warm-up from 0 to optimizer.lr over this many steps
  int64_t step_size = 1000;  // step: multiply the rate by gamma every step_size steps
  double gamma = 0.1;        // step: > 0
  double min_lr = 0.0;       // cosine: the rate at the last step, in [0, optimizer.lr]
  bool operator==(const ScheduleConfig&) const = default;
};

struct TrainingConfig {
  int epochs = 1;         // >= 1
  int64_t max_steps = 0;  // stop after this many optimizer steps; 0 = no limit
  int threads = 0;        // intra-op CPU threads per process; 0 = all cores
  Precision precision = Precision::kFp32;
  double grad_clip = 0.0;        // clip the global gradient norm to this; 0 = off
  int accumulate_steps = 1;      // micro-batches whose gradients are summed per optimizer step
  std::string device = "cpu";    // cpu | cuda | cuda:N
  int max_nonfinite_steps = 5;   // stop with an error after this many NaN/Inf losses in a row
  bool eval_every_epoch = true;  // evaluate on the test split after each epoch
  bool log_memory = false;       // add allocator statistics to the metrics
  // Keras' EarlyStopping: stop when `metric` has not improved by more than min_delta for
  // `patience` epochs in a row. metric none = off.
  struct EarlyStopping {
    ValidationMetric metric = ValidationMetric::kNone;
    int patience = 0;        // >= 0
    double min_delta = 0.0;  // >= 0
    bool operator==(const EarlyStopping&) const = default;
  } early_stopping;
  bool operator==(const TrainingConfig&) const = default;
};

struct StrategyConfig {
  StrategyName name = StrategyName::kSingle;
  int replicas = 1;  // mirrored on CPU: replicas (threads) in the one process
  CommBackend backend = CommBackend::kAuto;
  double bucket_mb = 25.0;                       // ddp bucket cap, MiB (25: PyTorch DDP's default)
  double first_bucket_mb = 1.0;                  // ddp first bucket, MiB (1: PyTorch DDP's default)
  Compression compression = Compression::kNone;  // ddp buckets on the wire
  // ddp: each rank updates 1/world of the elements, then gathers. auto: where the backend is shm
  // (CPU, one host: the gather is in place through shared memory); true / false: always / never.
  ShardOptimizer shard_optimizer = ShardOptimizer::kAuto;
  double timeout_s = 600.0;        // any collective or store wait longer than this fails
  bool debug_collectives = false;  // check op/dtype/shape across ranks before each collective
  PsMode mode = PsMode::kSync;     // parameter_server
  int64_t max_staleness = 0;       // parameter_server async: steps a push may lag; 0 = unbounded
  int num_ps = 1;                  // parameter_server: number of `tandem ps` processes
  double max_message_mb = 256.0;   // parameter_server: larger messages and tensors are refused
  bool operator==(const StrategyConfig&) const = default;
};

// checkpoint.resume: auto (the newest checkpoint in checkpoint.dir, if any), never, or a path.
struct ResumeFrom {
  ResumeMode mode = ResumeMode::kAuto;
  std::string path;  // mode kPath: the checkpoint to resume from; else ""
  bool operator==(const ResumeFrom&) const = default;
};

struct CheckpointConfig {
  std::string dir;            // resolved; default "runs/<experiment_name>/checkpoints"
  int64_t every_steps = 500;  // also save every N steps; 0 = only at the end of each epoch
  int keep = 3;               // newest checkpoints kept, >= 1
  ResumeFrom resume;
  // Resume a checkpoint trained with other values of the keys that change the math
  // (math_config_values) -- with a warning naming them -- instead of refusing.
  bool allow_config_change = false;
  // Keep the checkpoint with the best value of this validation metric in <dir>/best (Keras'
  // ModelCheckpoint save_best_only); never removed by `keep`. none = off.
  ValidationMetric keep_best = ValidationMetric::kNone;
  bool operator==(const CheckpointConfig&) const = default;
};

struct LoggingConfig {
  std::string dir;           // resolved; default "runs/<experiment_name>"
  int64_t every_steps = 50;  // >= 1
  bool tensorboard = true;   // also write TensorBoard event files
  ProgressMode progress = ProgressMode::kAuto;
  bool trace = false;  // write <dir>/trace/rank-R.json and all.json (Chrome trace)
  std::vector<int64_t> trace_steps = {20, 30};  // [first, end): the global steps traced
  bool operator==(const LoggingConfig&) const = default;
};

struct SlurmConfig {
  std::string partition;          // "" = the cluster's default partition
  std::string time = "01:00:00";  // HH:MM:SS or D-HH:MM:SS
  std::string account;            // "" = the user's default account
  int nodes = 1;                  // >= 1
  int ntasks_per_node = 1;        // >= 1
  int gpus_per_node = 0;          // >= 0
  int cpus_per_task = 0;          // 0 = not passed to sbatch
  SlurmLauncher launcher = SlurmLauncher::kTandem;
  int port = 29400;  // rendezvous base port; the job adds SLURM_JOB_ID % 1000 steps
  bool operator==(const SlurmConfig&) const = default;
};

struct KubernetesConfig {
  std::string image = "tandem:latest";
  std::string namespace_name = "default";  // YAML key `namespace`; a DNS label
  int nodes = 1;                           // >= 1
  int gpus_per_node = 0;                   // >= 0
  int nproc_per_node = 0;                  // workers per pod; 0 = gpus_per_node, or 1 without GPUs
  int backoff_limit = 0;                   // Job backoffLimit, >= 0
  int port = 29400;                        // the Store's port on pod 0, 1..65535
  K8sFlavor flavor = K8sFlavor::kIndexed;
  bool operator==(const KubernetesConfig&) const = default;
};

struct ClusterConfig {
  SlurmConfig slurm;
  KubernetesConfig kubernetes;
  bool operator==(const ClusterConfig&) const = default;
};

struct ExperimentConfig {
  std::string source_path;      // the file it was loaded from (or parse_config's source_name)
  std::string experiment_name;  // stem of source_path: configs/resnet50.yaml -> "resnet50"
  int64_t seed = 0;             // >= 0; keys every random draw (docs/DESIGN.md section 8)
  ModelConfig model;
  DataConfig data;
  OptimizerConfig optimizer;
  ScheduleConfig schedule;
  TrainingConfig training;
  StrategyConfig strategy;
  CheckpointConfig checkpoint;
  LoggingConfig logging;
  ClusterConfig cluster;
  bool operator==(const ExperimentConfig&) const = default;
};

struct LoadOptions {
  // Check that data.path, model.init_from and a checkpoint.resume path exist. `tandem submit`
  // turns this off: the files live on the cluster, not where the job is submitted from.
  bool check_paths = true;
};

// Files larger than this are refused before they reach the YAML parser.
inline constexpr int64_t kMaxConfigBytes = int64_t{1} << 20;
// Nesting deeper than this is refused before the YAML parser (which recurses) sees it.
inline constexpr int kMaxConfigDepth = 64;

// Reads the YAML file at `path`, applies `overrides` ("key.path=value", in order, later wins),
// fills in defaults and validates. Throws ConfigError.
ExperimentConfig load_config(const std::string& path,
                             const std::vector<std::string>& overrides = {},
                             const LoadOptions& options = {});

// As load_config for text already in memory; `source_name` names it in errors and gives the
// experiment name.
ExperimentConfig parse_config(const std::string& text, const std::string& source_name,
                              const std::vector<std::string>& overrides = {},
                              const LoadOptions& options = {});

// Checks what only the launcher knows: that `world_size` training processes (times
// strategy.replicas for mirrored) split data.batch_size evenly, and that the strategy can run on
// that many processes. Throws ConfigError.
void validate_world(const ExperimentConfig& config, int world_size);

// The resolved config as YAML: every key, defaults filled in, fixed key order. parse_config of
// the result (with the same source name) gives back an equal config.
std::string render_config(const ExperimentConfig& config);

// s as a YAML double-quoted scalar: '"' and '\\' escaped, control characters as \xNN.
std::string yaml_double_quoted(const std::string& s);

// 16 hex digits (FNV-1a, 64 bit) of render_config: stored in checkpoints to notice that a run is
// resumed under a different config.
std::string config_digest(const ExperimentConfig& config);

// The keys whose values change what training computes -- seed, model, data (but its path and
// loader threads), optimizer, schedule, precision, clipping, accumulation, gradient compression --
// with their values as the rendered config spells them, in schema order. Not among them: how long
// (epochs, max_steps), where and how it runs (strategy, device, threads, backends), checkpoints
// and logging. A resume compares them (checkpoint.allow_config_change).
std::vector<std::pair<std::string, std::string>> math_config_values(const ExperimentConfig& config);

}  // namespace tandem
