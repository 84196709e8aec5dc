// build_data_splits and transform_options: the validation part is the held-out samples of the
// training split, and data.normalize switches the data set's normalisation off.
#include "strategies/trainer/builders.h"

#include <gtest/gtest.h>

#include "core/data/validation_split.h"

namespace tandem {
namespace {

ExperimentConfig synthetic(const std::vector<std::string>& overrides) {
  return parse_config(R"(
seed: 11
model: {name: mlp}
data: {name: synthetic, synthetic_shape: [1, 4, 4], synthetic_samples: 40}
)",
                      "builders_test.yaml", overrides);
}

std::vector<uint8_t> pixels(const Dataset& d, int64_t i, int64_t* label) {
  std::vector<uint8_t> px(static_cast<size_t>(d.sample_shape().numel()));
  d.load(i, 0, px.data(), label);
  return px;
}

TEST(Builders, ValidationFractionHoldsOutTheSplitsSamplesFromTraining) {
  const DataSplits d = build_data_splits(synthetic({"data.validation_fraction=0.25"}));
  const DataSplits whole = build_data_splits(synthetic({}));
  EXPECT_EQ(whole.validation, nullptr) << "no validation split unless asked for";
  ASSERT_NE(d.validation, nullptr);
  EXPECT_EQ(d.validation->size(), 10);
  EXPECT_EQ(d.train->size(), 30);
  const ValidationSplit s = split_for_validation(40, 0.25, 11);
  for (int64_t i = 0; i < 10; ++i) {
    int64_t a = -1, b = -2;
    EXPECT_EQ(pixels(*d.validation, i, &a), pixels(*whole.train, s.validation[i], &b));
    EXPECT_EQ(a, b);
  }
  for (int64_t i = 0; i < 30; ++i) {
    int64_t a = -1, b = -2;
    EXPECT_EQ(pixels(*d.train, i, &a), pixels(*whole.train, s.train[i], &b));
    EXPECT_EQ(a, b);
  }
  EXPECT_EQ(d.test->size(), whole.test->size()) << "the test split is untouched";
}

TEST(Builders, NormalizeFalseLeavesPixelsDividedBy255) {
  ExperimentConfig on = synthetic({"data.name=fashion_mnist", "model.num_classes=10"});
  ExperimentConfig off = on;
  off.data.normalize = false;
  const SampleShape s{1, 28, 28};
  Transforms a(s, transform_options(on, s, false)), b(s, transform_options(off, s, false));
  EXPECT_FLOAT_EQ(a.value(0, 255), static_cast<float>((1.0 - 0.2860) / 0.3530));
  EXPECT_FLOAT_EQ(b.value(0, 255), 1.0f);
  EXPECT_FLOAT_EQ(b.value(0, 51), 0.2f);
}

}  // namespace
}  // namespace tandem
