// The published models' parameter tables: totals as torchvision documents them, and tandem's own
// resnet50 has exactly torchvision's parameter names and shapes, in the same order.
#include "launcher/scaling/model_tables.h"

#include <gtest/gtest.h>

#include <map>
#include <string>

#include "core/nn/models.h"

namespace tandem::scaling {
namespace {

std::map<std::string, const ModelTable*> by_name() {
  std::map<std::string, const ModelTable*> out;
  for (const ModelTable& t : model_tables()) out[t.name] = &t;
  return out;
}

int64_t numel(const TableParam& p) {
  int64_t n = 1;
  for (int d = 0; d < p.rank; ++d) n *= p.dims[d];
  return n;
}

TEST(ModelTables, TotalsAreTorchvisionsParameterCounts) {
  // torchvision's model documentation: num_params of each model.
  const std::map<std::string, std::pair<size_t, int64_t>> expected = {
      {"vgg16", {32, 138'357'544}},
      {"inception_v3", {292, 27'161'264}},
      {"resnet50", {161, 25'557'032}},
      {"resnet101", {314, 44'549'160}}};
  const auto tables = by_name();
  ASSERT_EQ(tables.size(), expected.size());
  for (const auto& [name, counts] : expected) {
    const ModelTable& t = *tables.at(name);
    int64_t total = 0;
    for (size_t i = 0; i < t.size; ++i) total += numel(t.params[i]);
    EXPECT_EQ(t.size, counts.first) << name;
    EXPECT_EQ(total, counts.second) << name;
  }
  const ModelTable& vgg = *tables.at("vgg16");
  EXPECT_STREQ(vgg.params[0].name, "features.0.weight");
  EXPECT_STREQ(vgg.params[vgg.size - 2].name, "classifier.6.weight");
  EXPECT_EQ(numel(vgg.params[26]), 25088 * 4096);  // classifier.0.weight, the 411 MB one
}

TEST(ModelTables, TandemResNet50HasTorchvisionsParameters) {
  ModelOptions mo;
  mo.in_channels = 3;
  mo.num_classes = 1000;
  Generator gen(0, 0);
  const NamedTensors params = make_model("resnet50", mo, gen)->named_parameters();
  const ModelTable& table = *by_name().at("resnet50");
  ASSERT_EQ(params.size(), table.size);
  for (size_t i = 0; i < table.size; ++i) {
    EXPECT_EQ(params[i].first, table.params[i].name) << i;
    std::vector<int64_t> shape(table.params[i].dims, table.params[i].dims + table.params[i].rank);
    EXPECT_EQ(params[i].second.shape(), shape) << params[i].first;
  }
}

}  // namespace
}  // namespace tandem::scaling
