// Config enums (configs/schema/enums.h): every name table round-trips and spells the values as
// configs/README.md documents them; every enumerated key loads, renders and loads back each of
// its names, and refuses an unknown one naming the key and listing the allowed names.
#include <gtest/gtest.h>

#include <cctype>
#include <set>
#include <string>
#include <vector>

#include "configs/schema/config.h"
#include "configs/schema/enums.h"
#include "core/base/error.h"

namespace tandem {
namespace {

const std::string kMinimal =
    "model:\n"
    "  name: mlp\n"
    "data:\n"
    "  name: synthetic\n";

LoadOptions no_path_checks() {
  LoadOptions options;
  options.check_paths = false;
  return options;
}

// Each name maps to one value and back; `documented` is the README's list, in its order.
template <ConfigEnum E>
void expect_table_round_trips(const std::string& documented) {
  std::set<std::string> names;
  std::set<int> values;
  for (const EnumName<E>& n : names_of(E{})) {
    SCOPED_TRACE(n.name);
    EXPECT_TRUE(names.insert(n.name).second) << "name listed twice";
    EXPECT_TRUE(values.insert(static_cast<int>(n.value)).second) << "value listed twice";
    EXPECT_STREQ(to_string(n.value), n.name);
    EXPECT_EQ(enum_from_name<E>(n.name), n.value);
    EXPECT_EQ(parse_enum<E>("key", n.name), n.value);
  }
  EXPECT_EQ(enum_names<E>(), documented);
  EXPECT_EQ(enum_from_name<E>(""), std::nullopt);
  // Names are case-sensitive, as YAML is.
  std::string upper = names_of(E{})[0].name;
  for (char& ch : upper) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  EXPECT_EQ(enum_from_name<E>(upper), std::nullopt);
}

TEST(ConfigEnums, EveryTableRoundTripsWithTheDocumentedNames) {
  expect_table_round_trips<ModelName>("mlp, simple_cnn, lenet, resnet18, resnet50, onnx");
  expect_table_round_trips<DatasetName>("fashion_mnist, mnist, cifar10, synthetic, image_folder");
  expect_table_round_trips<OptimizerName>("sgd, adam, adamw");
  expect_table_round_trips<ScheduleName>("constant, step, cosine");
  expect_table_round_trips<Precision>("fp32, tf32, bf16, fp16, fp64");
  expect_table_round_trips<ValidationMetric>("none, val_loss, val_accuracy");
  expect_table_round_trips<StrategyName>("single, mirrored, ddp, parameter_server");
  expect_table_round_trips<CommBackend>("auto, mpi, gloo, shm, hierarchical, nccl, inprocess");
  expect_table_round_trips<Compression>("none, bf16, fp16");
  expect_table_round_trips<ShardOptimizer>("auto, true, false");
  expect_table_round_trips<PsMode>("sync, async");
  expect_table_round_trips<ResumeMode>("auto, never");
  expect_table_round_trips<ProgressMode>("auto, bar, plain, none");
  expect_table_round_trips<SlurmLauncher>("tandem, mpi");
  expect_table_round_trips<K8sFlavor>("indexed, mpijob");
}

TEST(ConfigEnums, ResumeByPathHasNoNameSoNoWordSelectsIt) {
  for (const EnumName<ResumeMode>& n : names_of(ResumeMode{}))
    EXPECT_NE(n.value, ResumeMode::kPath) << n.name;
  EXPECT_EQ(enum_from_name<ResumeMode>("path"), std::nullopt);
}

TEST(ConfigEnums, UnknownNameIsAConfigErrorNamingTheKeyAndTheAllowedNames) {
  try {
    parse_enum<Compression>("strategy.compression", "int8");
    FAIL() << "int8 is not a compression";
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(),
                 "strategy.compression: unknown value 'int8'; expected one of: none, bf16, fp16");
  }
  EXPECT_THROW(parse_enum<PsMode>("strategy.mode", "Sync"), ConfigError);
  EXPECT_EQ(enum_names<Compression>(" or "), "none, bf16 or fp16");
  EXPECT_EQ(enum_names<PsMode>(" or "), "sync or async");
  EXPECT_EQ(str("strategy.name: '", StrategyName::kParameterServer, "'"),
            "strategy.name: 'parameter_server'");
}

// The keys that need another key beside some of their names.
std::vector<std::string> companions(const std::string& key, const std::string& name) {
  if (key == "model.name" && name == "onnx") return {"model.onnx=model.onnx"};
  if (key == "data.name" && name == "image_folder") return {"data.path=images"};
  return {};
}

std::string error_of(const std::vector<std::string>& overrides) {
  try {
    parse_config(kMinimal, "exp.yaml", overrides, no_path_checks());
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "no error";
}

// Each name of the key's table loads into the field, renders as `leaf: name` (quoted where YAML
// would read a boolean) and loads back equal; an unknown name lists the documented ones.
template <ConfigEnum E, typename Get>
void expect_key_loads_every_name(const std::string& key, Get get, const std::string& documented) {
  const std::string leaf = key.substr(key.rfind('.') + 1);
  for (const EnumName<E>& n : names_of(E{})) {
    const std::string name = n.name;
    SCOPED_TRACE(key + "=" + name);
    std::vector<std::string> overrides = {"data.validation_fraction=0.1", key + "=" + name};
    for (const std::string& o : companions(key, name)) overrides.push_back(o);
    ExperimentConfig c = parse_config(kMinimal, "exp.yaml", overrides, no_path_checks());
    EXPECT_EQ(get(c), n.value);
    const std::string text = render_config(c);
    const std::string spelled = name == "true" || name == "false" ? "\"" + name + "\"" : name;
    EXPECT_NE(text.find(" " + leaf + ": " + spelled + "\n"), std::string::npos) << text;
    ExperimentConfig again = parse_config(text, "exp.yaml", {}, no_path_checks());
    EXPECT_EQ(get(again), n.value);
    EXPECT_EQ(again, c);
  }
  EXPECT_EQ(error_of({key + "=bogus"}),
            "override '" + key + "=bogus': " + key +
                ": unknown value 'bogus'; expected one of: " + documented);
  EXPECT_EQ(error_of({key + "=[1]"}),
            "override '" + key + "=[1]': " + key + ": expected a string, got a list");
}

TEST(ConfigEnums, EveryEnumeratedKeyLoadsRendersAndRefusesUnknownNames) {
  using C = const ExperimentConfig&;
  expect_key_loads_every_name<ModelName>(
      "model.name", [](C c) { return c.model.name; },
      "mlp, simple_cnn, lenet, resnet18, resnet50, onnx");
  expect_key_loads_every_name<DatasetName>(
      "data.name", [](C c) { return c.data.name; },
      "fashion_mnist, mnist, cifar10, synthetic, image_folder");
  expect_key_loads_every_name<OptimizerName>(
      "optimizer.name", [](C c) { return c.optimizer.name; }, "sgd, adam, adamw");
  expect_key_loads_every_name<ScheduleName>(
      "schedule.name", [](C c) { return c.schedule.name; }, "constant, step, cosine");
  expect_key_loads_every_name<Precision>(
      "training.precision", [](C c) { return c.training.precision; },
      "fp32, tf32, bf16, fp16, fp64");
  expect_key_loads_every_name<ValidationMetric>(
      "training.early_stopping.metric", [](C c) { return c.training.early_stopping.metric; },
      "none, val_loss, val_accuracy");
  expect_key_loads_every_name<StrategyName>(
      "strategy.name", [](C c) { return c.strategy.name; },
      "single, mirrored, ddp, parameter_server");
  expect_key_loads_every_name<CommBackend>(
      "strategy.backend", [](C c) { return c.strategy.backend; },
      "auto, mpi, gloo, shm, hierarchical, nccl, inprocess");
  expect_key_loads_every_name<Compression>(
      "strategy.compression", [](C c) { return c.strategy.compression; }, "none, bf16, fp16");
  expect_key_loads_every_name<ShardOptimizer>(
      "strategy.shard_optimizer", [](C c) { return c.strategy.shard_optimizer; },
      "auto, true, false");
  expect_key_loads_every_name<PsMode>(
      "strategy.mode", [](C c) { return c.strategy.mode; }, "sync, async");
  expect_key_loads_every_name<ValidationMetric>(
      "checkpoint.keep_best", [](C c) { return c.checkpoint.keep_best; },
      "none, val_loss, val_accuracy");
  expect_key_loads_every_name<ProgressMode>(
      "logging.progress", [](C c) { return c.logging.progress; }, "auto, bar, plain, none");
  expect_key_loads_every_name<SlurmLauncher>(
      "cluster.slurm.launcher", [](C c) { return c.cluster.slurm.launcher; }, "tandem, mpi");
  expect_key_loads_every_name<K8sFlavor>(
      "cluster.kubernetes.flavor", [](C c) { return c.cluster.kubernetes.flavor; },
      "indexed, mpijob");
}

TEST(ConfigEnums, ResumeIsAWordOrThePathOfACheckpoint) {
  ExperimentConfig c = parse_config(kMinimal, "exp.yaml", {}, no_path_checks());
  EXPECT_EQ(c.checkpoint.resume, (ResumeFrom{ResumeMode::kAuto, ""}));
  c = parse_config(kMinimal, "exp.yaml", {"checkpoint.resume=never"}, no_path_checks());
  EXPECT_EQ(c.checkpoint.resume, (ResumeFrom{ResumeMode::kNever, ""}));
  EXPECT_NE(render_config(c).find("\n  resume: never\n"), std::string::npos);
  c = parse_config(kMinimal, "exp.yaml", {"checkpoint.resume='runs/a b/step-7'"}, no_path_checks());
  EXPECT_EQ(c.checkpoint.resume, (ResumeFrom{ResumeMode::kPath, "runs/a b/step-7"}));
  const std::string text = render_config(c);
  EXPECT_NE(text.find("\n  resume: \"runs/a b/step-7\"\n"), std::string::npos) << text;
  EXPECT_EQ(parse_config(text, "exp.yaml", {}, no_path_checks()), c);
  // A path after a word, and a word after a path: the later override wins whole.
  c = parse_config(kMinimal, "exp.yaml", {"checkpoint.resume=ck", "checkpoint.resume=auto"},
                   no_path_checks());
  EXPECT_EQ(c.checkpoint.resume, (ResumeFrom{ResumeMode::kAuto, ""}));
  EXPECT_EQ(error_of({"checkpoint.resume=''"}),
            "override 'checkpoint.resume=''': checkpoint.resume: must not be empty");
}

}  // namespace
}  // namespace tandem
