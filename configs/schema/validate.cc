// Checks that need the whole config (after the file and every override): required keys, defaults
// that depend on other keys, rules across keys, files that must exist; and validate_world, which
// needs the number of processes only the launcher knows.
#include <filesystem>

#include "configs/schema/builder.h"
#include "core/base/error.h"

namespace tandem {
namespace {

std::string default_data_path(DatasetName data_name) {
  switch (data_name) {
    case DatasetName::kFashionMnist:
      return "/usr/share/datasets/fashion-mnist";  // dataset-fashion-mnist
    case DatasetName::kMnist:
      return "/usr/share/datasets/mnist";
    case DatasetName::kCifar10:
      return "data/cifar-10-batches-bin";  // the "binary version" tarball
    case DatasetName::kSynthetic:
    case DatasetName::kImageFolder:  // required (resolve checks it first)
      break;
  }
  return "";  // synthetic: no files
}

std::string split_message(int64_t batch, int64_t replicas) {
  return "global batch " + std::to_string(batch) + " does not split evenly over " +
         std::to_string(replicas) + " replicas";
}

}  // namespace

namespace config_internal {

void Builder::resolve(const LoadOptions& options) {
  const bool default_data = resolve_names_and_defaults();
  check_rules();
  if (options.check_paths) check_paths(default_data);
}

bool Builder::resolve_names_and_defaults() {
  ExperimentConfig& c = config_;
  // model.onnx names the model by itself: model.name may be left out, or be onnx.
  const bool onnx = !c.model.onnx.empty();
  if (onnx && !was_set("model.name")) c.model.name = ModelName::kOnnx;
  if (onnx && c.model.name != ModelName::kOnnx)
    fail(origin("model.name"), "model.name",
         "'" + std::string(to_string(c.model.name)) +
             "' conflicts with model.onnx (the ONNX file is the model); "
             "leave model.name out or set it to onnx");
  if (c.model.name == ModelName::kOnnx && !onnx)
    fail(origin("model.name"), "model.onnx",
         "model.name 'onnx' needs model.onnx: the path of the .onnx file");
  auto require = [&](const char* path) {
    if (was_set(path)) return;
    fail(origin(path), path,
         "required key is missing; expected one of: " +
             std::get<EnumTarget>(schema_.field(path)->target).names);
  };
  if (!onnx) require("model.name");
  require("data.name");

  if (c.data.name == DatasetName::kImageFolder && c.data.path.empty())
    fail(origin("data.name"), "data.path",
         "data.name 'image_folder' needs data.path: a folder holding train/<class>/*.jpg and "
         "val/<class>/*.jpg");
  const bool default_data = c.data.path.empty();
  if (default_data) c.data.path = default_data_path(c.data.name);
  const std::string name = c.experiment_name.empty() ? "experiment" : c.experiment_name;
  if (c.logging.dir.empty()) c.logging.dir = "runs/" + name;
  if (c.checkpoint.dir.empty()) c.checkpoint.dir = "runs/" + name + "/checkpoints";

  return default_data;
}

void Builder::check_rules() {
  const ExperimentConfig& c = config_;
  if (c.data.name != DatasetName::kSynthetic && c.data.name != DatasetName::kImageFolder &&
      c.model.num_classes != 10)
    fail(origin("model.num_classes"), "model.num_classes",
         "data.name '" + std::string(to_string(c.data.name)) + "' has 10 classes, got " +
             std::to_string(c.model.num_classes));
  // Early stopping and the best checkpoint watch a validation metric: there must be a split.
  const bool validates = c.data.validation_fraction > 0 || c.data.name == DatasetName::kImageFolder;
  for (const auto& [key, value] :
       {std::pair<const char*, ValidationMetric>{"training.early_stopping.metric",
                                                 c.training.early_stopping.metric},
        {"checkpoint.keep_best", c.checkpoint.keep_best}})
    if (value != ValidationMetric::kNone && !validates)
      fail(origin(key), key,
           "'" + std::string(to_string(value)) +
               "' needs a validation split: set data.validation_fraction (e.g. 0.1)" +
               " or use data.name image_folder with a val/ folder");
  if (c.logging.trace_steps[1] <= c.logging.trace_steps[0])
    fail(origin("logging.trace_steps"), "logging.trace_steps",
         "expected [first, end] with end > first (the steps first .. end-1 are traced), got [" +
             std::to_string(c.logging.trace_steps[0]) + ", " +
             std::to_string(c.logging.trace_steps[1]) + "]");
  if (c.optimizer.name == OptimizerName::kSgd && c.optimizer.nesterov && c.optimizer.momentum == 0)
    fail(origin("optimizer.nesterov"), "optimizer.nesterov",
         "Nesterov momentum needs optimizer.momentum > 0");
  if (c.schedule.name == ScheduleName::kCosine && c.schedule.min_lr > c.optimizer.lr)
    fail(origin("schedule.min_lr"), "schedule.min_lr",
         "must be <= optimizer.lr (" + format_number(c.optimizer.lr) + "), got " +
             format_number(c.schedule.min_lr));
  // The sharded update (strategies/ddp) is a CPU loop over the flat parameters: on a GPU it would
  // dereference device pointers on the host. auto shards only over shm.
  const bool on_gpu = c.training.device.rfind("cuda", 0) == 0;
  const bool shards = c.strategy.shard_optimizer == ShardOptimizer::kAlways ||
                      (c.strategy.shard_optimizer == ShardOptimizer::kAuto &&
                       c.strategy.backend == CommBackend::kShm);
  if (on_gpu && shards)
    fail(origin(was_set("strategy.shard_optimizer") ? "strategy.shard_optimizer"
                                                    : "strategy.backend"),
         "strategy.shard_optimizer",
         "the sharded update runs on the CPU, but training.device is '" + c.training.device +
             "'; set strategy.shard_optimizer to auto or false");
  if (c.strategy.name == StrategyName::kMirrored && c.data.batch_size % c.strategy.replicas != 0)
    fail(origin(was_set("data.batch_size") ? "data.batch_size" : "strategy.replicas"),
         "data.batch_size",
         split_message(c.data.batch_size, c.strategy.replicas) + " (strategy.replicas)");
}

void Builder::check_paths(bool default_data) {
  namespace fs = std::filesystem;
  const ExperimentConfig& c = config_;
  std::error_code ec;  // unreadable counts as missing; never a filesystem_error
  if (c.data.name != DatasetName::kSynthetic) {
    // A default path is blamed on data.name, the key the user did write.
    std::string where = default_data ? origin("data.name") : origin("data.path");
    std::string hint = default_data
                           ? " (the default for data.name '" + std::string(to_string(c.data.name)) +
                                 "'; set data.path to the data set's directory)"
                           : "";
    fs::file_status st = fs::status(c.data.path, ec);
    if (!fs::exists(st))
      fail(where, "data.path", "directory '" + c.data.path + "' does not exist" + hint);
    if (!fs::is_directory(st))
      fail(where, "data.path", "'" + c.data.path + "' is not a directory" + hint);
  }
  if (!c.model.init_from.empty()) {
    fs::file_status st = fs::status(c.model.init_from, ec);
    if (!fs::exists(st))
      fail(origin("model.init_from"), "model.init_from",
           "file '" + c.model.init_from + "' does not exist");
    if (fs::is_directory(st))
      fail(origin("model.init_from"), "model.init_from",
           "'" + c.model.init_from + "' is a directory, expected a safetensors file");
    // /dev/zero exists and is no directory: read whole, it would fill memory.
    if (!fs::is_regular_file(st))
      fail(origin("model.init_from"), "model.init_from",
           "'" + c.model.init_from +
               "' is not a regular file (a device, pipe or socket), expected a safetensors file");
  }
  if (!c.model.onnx.empty()) {
    fs::file_status st = fs::status(c.model.onnx, ec);
    if (!fs::exists(st))
      fail(origin("model.onnx"), "model.onnx", "file '" + c.model.onnx + "' does not exist");
    if (fs::is_directory(st))
      fail(origin("model.onnx"), "model.onnx",
           "'" + c.model.onnx + "' is a directory, expected an .onnx file");
  }
  const std::string& resume = c.checkpoint.resume.path;
  if (c.checkpoint.resume.mode == ResumeMode::kPath && !fs::exists(fs::status(resume, ec)))
    fail(origin("checkpoint.resume"), "checkpoint.resume",
         "checkpoint '" + resume +
             "' does not exist; expected auto, never or the path of a checkpoint");
}

}  // namespace config_internal

void validate_world(const ExperimentConfig& config, int world_size) {
  TANDEM_CHECK_T(ConfigError, world_size >= 1, "world size must be >= 1, got ", world_size);
  const StrategyName strategy = config.strategy.name;
  const bool one_process = strategy == StrategyName::kSingle || strategy == StrategyName::kMirrored;
  TANDEM_CHECK_T(ConfigError, world_size == 1 || !one_process, "strategy.name: '", strategy,
                 "' runs in one process, but ", world_size,
                 " processes were started; use ddp or parameter_server");
  int64_t replicas =
      int64_t{world_size} * (strategy == StrategyName::kMirrored ? config.strategy.replicas : 1);
  TANDEM_CHECK_T(ConfigError, config.data.batch_size % replicas == 0,
                 "data.batch_size: ", split_message(config.data.batch_size, replicas));
}

}  // namespace tandem
