// The experiment config's enumerated keys as C++ enums, each with one name table: the YAML
// spelling of every value, in the order errors list them. The schema parses and renders through
// the tables; strategies, launcher and cluster take the enums.
//
// The one decision to know: a table is the only place a value is spelled. Code compares enums,
// and to_string, enum_from_name, parse_enum and operator<< (for messages) all read the table.
// core and collectives sit below configs and never see these types: where they need a value they
// have their own type (DType, Schedule::Kind) or a registry of names (make_model, make_dataset),
// and strategies/trainer/builders.cc maps to them.
#pragma once

#include <optional>
#include <ostream>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>

#include "core/base/error.h"

namespace tandem {

template <typename E>
struct EnumName {
  E value;
  const char* name;
};

// model.name. onnx: the graph in model.onnx (the value when only model.onnx is given).
enum class ModelName { kMlp, kSimpleCnn, kLenet, kResnet18, kResnet50, kOnnx };
inline constexpr EnumName<ModelName> kModelNames[] = {
    {ModelName::kMlp, "mlp"},           {ModelName::kSimpleCnn, "simple_cnn"},
    {ModelName::kLenet, "lenet"},       {ModelName::kResnet18, "resnet18"},
    {ModelName::kResnet50, "resnet50"}, {ModelName::kOnnx, "onnx"}};
constexpr std::span<const EnumName<ModelName>> names_of(ModelName) {
  return kModelNames;
}

// data.name.
enum class DatasetName { kFashionMnist, kMnist, kCifar10, kSynthetic, kImageFolder };
inline constexpr EnumName<DatasetName> kDatasetNames[] = {
    {DatasetName::kFashionMnist, "fashion_mnist"},
    {DatasetName::kMnist, "mnist"},
    {DatasetName::kCifar10, "cifar10"},
    {DatasetName::kSynthetic, "synthetic"},
    {DatasetName::kImageFolder, "image_folder"}};
constexpr std::span<const EnumName<DatasetName>> names_of(DatasetName) {
  return kDatasetNames;
}

// optimizer.name.
enum class OptimizerName { kSgd, kAdam, kAdamW };
inline constexpr EnumName<OptimizerName> kOptimizerNames[] = {
    {OptimizerName::kSgd, "sgd"}, {OptimizerName::kAdam, "adam"}, {OptimizerName::kAdamW, "adamw"}};
constexpr std::span<const EnumName<OptimizerName>> names_of(OptimizerName) {
  return kOptimizerNames;
}

// schedule.name.
enum class ScheduleName { kConstant, kStep, kCosine };
inline constexpr EnumName<ScheduleName> kScheduleNames[] = {{ScheduleName::kConstant, "constant"},
                                                            {ScheduleName::kStep, "step"},
                                                            {ScheduleName::kCosine, "cosine"}};
constexpr std::span<const EnumName<ScheduleName>> names_of(ScheduleName) {
  return kScheduleNames;
}

// training.precision.
enum class Precision { kFp32, kTf32, kBf16, kFp16, kFp64 };
inline constexpr EnumName<Precision> kPrecisionNames[] = {{Precision::kFp32, "fp32"},
                                                          {Precision::kTf32, "tf32"},
                                                          {Precision::kBf16, "bf16"},
                                                          {Precision::kFp16, "fp16"},
                                                          {Precision::kFp64, "fp64"}};
constexpr std::span<const EnumName<Precision>> names_of(Precision) {
  return kPrecisionNames;
}

// training.early_stopping.metric and checkpoint.keep_best: the validation metric watched.
enum class ValidationMetric { kNone, kValLoss, kValAccuracy };
inline constexpr EnumName<ValidationMetric> kValidationMetricNames[] = {
    {ValidationMetric::kNone, "none"},
    {ValidationMetric::kValLoss, "val_loss"},
    {ValidationMetric::kValAccuracy, "val_accuracy"}};
constexpr std::span<const EnumName<ValidationMetric>> names_of(ValidationMetric) {
  return kValidationMetricNames;
}

// strategy.name.
enum class StrategyName { kSingle, kMirrored, kDdp, kParameterServer };
inline constexpr EnumName<StrategyName> kStrategyNames[] = {
    {StrategyName::kSingle, "single"},
    {StrategyName::kMirrored, "mirrored"},
    {StrategyName::kDdp, "ddp"},
    {StrategyName::kParameterServer, "parameter_server"}};
constexpr std::span<const EnumName<StrategyName>> names_of(StrategyName) {
  return kStrategyNames;
}

// strategy.backend: ddp's communicator. auto is resolved by strategies/strategy_factory.cc.
enum class CommBackend { kAuto, kMpi, kGloo, kShm, kHierarchical, kNccl, kInProcess };
inline constexpr EnumName<CommBackend> kCommBackendNames[] = {
    {CommBackend::kAuto, "auto"},
    {CommBackend::kMpi, "mpi"},
    {CommBackend::kGloo, "gloo"},
    {CommBackend::kShm, "shm"},
    {CommBackend::kHierarchical, "hierarchical"},
    {CommBackend::kNccl, "nccl"},
    {CommBackend::kInProcess, "inprocess"}};
constexpr std::span<const EnumName<CommBackend>> names_of(CommBackend) {
  return kCommBackendNames;
}

// strategy.compression: the dtype of ddp's buckets on the wire.
enum class Compression { kNone, kBf16, kFp16 };
inline constexpr EnumName<Compression> kCompressionNames[] = {
    {Compression::kNone, "none"}, {Compression::kBf16, "bf16"}, {Compression::kFp16, "fp16"}};
constexpr std::span<const EnumName<Compression>> names_of(Compression) {
  return kCompressionNames;
}

// strategy.shard_optimizer. Spelled true/false in YAML (a string key, so `yes` is refused).
enum class ShardOptimizer { kAuto, kAlways, kNever };
inline constexpr EnumName<ShardOptimizer> kShardOptimizerNames[] = {
    {ShardOptimizer::kAuto, "auto"},
    {ShardOptimizer::kAlways, "true"},
    {ShardOptimizer::kNever, "false"}};
constexpr std::span<const EnumName<ShardOptimizer>> names_of(ShardOptimizer) {
  return kShardOptimizerNames;
}

// strategy.mode: how parameter servers apply pushes. Also sent in ps.proto's RegisterRequest.
enum class PsMode { kSync, kAsync };
inline constexpr EnumName<PsMode> kPsModeNames[] = {{PsMode::kSync, "sync"},
                                                    {PsMode::kAsync, "async"}};
constexpr std::span<const EnumName<PsMode>> names_of(PsMode) {
  return kPsModeNames;
}

// checkpoint.resume: auto, never, or any other text: the path of a checkpoint (kPath has no name
// in the table; the path is kept beside it, see ResumeFrom in config.h).
enum class ResumeMode { kAuto, kNever, kPath };
inline constexpr EnumName<ResumeMode> kResumeModeNames[] = {{ResumeMode::kAuto, "auto"},
                                                            {ResumeMode::kNever, "never"}};
constexpr std::span<const EnumName<ResumeMode>> names_of(ResumeMode) {
  return kResumeModeNames;
}

// logging.progress.
enum class ProgressMode { kAuto, kBar, kPlain, kNone };
inline constexpr EnumName<ProgressMode> kProgressModeNames[] = {{ProgressMode::kAuto, "auto"},
                                                                {ProgressMode::kBar, "bar"},
                                                                {ProgressMode::kPlain, "plain"},
                                                                {ProgressMode::kNone, "none"}};
constexpr std::span<const EnumName<ProgressMode>> names_of(ProgressMode) {
  return kProgressModeNames;
}

// cluster.slurm.launcher: one `tandem launch` per node, or srun --mpi.
enum class SlurmLauncher { kTandem, kMpi };
inline constexpr EnumName<SlurmLauncher> kSlurmLauncherNames[] = {
    {SlurmLauncher::kTandem, "tandem"}, {SlurmLauncher::kMpi, "mpi"}};
constexpr std::span<const EnumName<SlurmLauncher>> names_of(SlurmLauncher) {
  return kSlurmLauncherNames;
}

// cluster.kubernetes.flavor: an Indexed Job, or a Kubeflow MPIJob.
enum class K8sFlavor { kIndexed, kMpiJob };
inline constexpr EnumName<K8sFlavor> kK8sFlavorNames[] = {{K8sFlavor::kIndexed, "indexed"},
                                                          {K8sFlavor::kMpiJob, "mpijob"}};
constexpr std::span<const EnumName<K8sFlavor>> names_of(K8sFlavor) {
  return kK8sFlavorNames;
}

// ---- functions over any table

template <typename E>
concept ConfigEnum = std::is_enum_v<E> && requires(E e) {
  names_of(e);
};

// The value's name. A value without one (ResumeMode::kPath) is our bug: callers handle it first.
template <ConfigEnum E>
const char* to_string(E value) {
  for (const EnumName<E>& n : names_of(E{}))
    if (n.value == value) return n.name;
  TANDEM_ASSERT(false, "config enum value ", static_cast<int>(value), " has no name");
  return "";
}

// nullopt when `name` is not in the table (names are case-sensitive, as in YAML).
template <ConfigEnum E>
std::optional<E> enum_from_name(std::string_view name) {
  for (const EnumName<E>& n : names_of(E{}))
    if (name == n.name) return n.value;
  return std::nullopt;
}

// The names in table order, joined: "sgd, adam, adamw"; with last_sep " or ": "sgd, adam or adamw".
template <ConfigEnum E>
std::string enum_names(std::string_view last_sep = ", ") {
  std::span<const EnumName<E>> names = names_of(E{});
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out += i + 1 == names.size() ? last_sep : ", ";
    out += names[i].name;
  }
  return out;
}

// The message for a name outside a table: "unknown value 'x'; expected one of: a, b" (`names` as
// enum_names gives them). The schema's errors and parse_enum's share it.
inline std::string unknown_value_message(std::string_view name, std::string_view names) {
  return "unknown value '" + std::string(name) + "'; expected one of: " + std::string(names);
}

// The value named `name`, else ConfigError "KEY: unknown value 'x'; expected one of: a, b".
template <ConfigEnum E>
E parse_enum(std::string_view key, std::string_view name) {
  std::optional<E> value = enum_from_name<E>(name);
  if (!value)
    throw ConfigError(std::string(key) + ": " + unknown_value_message(name, enum_names<E>()));
  return *value;
}

// Messages print a value by its name: str("strategy.name: '", cfg.strategy.name, "'").
template <ConfigEnum E>
std::ostream& operator<<(std::ostream& os, E value) {
  return os << to_string(value);
}

}  // namespace tandem
