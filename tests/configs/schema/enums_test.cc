// Config enums (configs/schema/enums.h): every name table round-trips and spells the values as
// configs/README.md documents them, and refuses an unknown name naming the key and listing the
// allowed names.
#include <gtest/gtest.h>

#include <cctype>
#include <set>
#include <string>
#include <vector>

#include "configs/schema/enums.h"
#include "core/base/error.h"

namespace tandem {
namespace {

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

}  // namespace
}  // namespace tandem
