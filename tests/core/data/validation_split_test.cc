// data.validation_fraction's split: the same for the same seed, disjoint, covering, the right
// size, and served through SubsetDataset with the original samples.
#include "core/data/validation_split.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>

#include "core/base/error.h"

namespace tandem {
namespace {

TEST(ValidationSplit, IsDeterministicFromTheSeedDisjointAndCoversEverySample) {
  const ValidationSplit a = split_for_validation(1000, 0.1, 7);
  const ValidationSplit b = split_for_validation(1000, 0.1, 7);
  EXPECT_EQ(a.validation, b.validation);
  EXPECT_EQ(a.train, b.train);
  EXPECT_EQ(a.validation.size(), 100u);  // round(1000 x 0.1)
  EXPECT_EQ(a.train.size(), 900u);
  std::vector<int64_t> all = a.train;
  all.insert(all.end(), a.validation.begin(), a.validation.end());
  std::sort(all.begin(), all.end());
  std::vector<int64_t> expected(1000);
  std::iota(expected.begin(), expected.end(), 0);
  EXPECT_EQ(all, expected) << "the parts overlap or miss a sample";
  EXPECT_TRUE(std::is_sorted(a.validation.begin(), a.validation.end()));
  // Another seed holds out other samples; not simply the first or last ones.
  EXPECT_NE(split_for_validation(1000, 0.1, 8).validation, a.validation);
  EXPECT_NE(a.validation.back() - a.validation.front(), 99);
}

TEST(ValidationSplit, KeepsAtLeastOneSampleOnEachSideAndRejectsBadFractions) {
  EXPECT_EQ(split_for_validation(3, 0.01, 1).validation.size(), 1u);
  EXPECT_EQ(split_for_validation(3, 0.99, 1).train.size(), 1u);
  EXPECT_THROW(split_for_validation(10, 0.0, 1), ConfigError);
  EXPECT_THROW(split_for_validation(10, 1.0, 1), ConfigError);
  EXPECT_THROW(split_for_validation(1, 0.5, 1), ConfigError);
}

// Sample i of a data set whose pixels and label are i.
class Numbered : public Dataset {
 public:
  std::string name() const override { return "numbered"; }
  int64_t size() const override { return 50; }
  SampleShape sample_shape() const override { return {1, 1, 1}; }
  int64_t num_classes() const override { return 50; }
  void get(int64_t i, uint8_t* px, int64_t* label) const override {
    *px = static_cast<uint8_t>(i);
    *label = i;
  }
};

TEST(ValidationSplit, SubsetDatasetServesTheHeldOutSamples) {
  auto base = std::make_shared<Numbered>();
  const ValidationSplit s = split_for_validation(base->size(), 0.2, 3);
  SubsetDataset val(base, s.validation);
  ASSERT_EQ(val.size(), 10);
  for (int64_t i = 0; i < val.size(); ++i) {
    uint8_t px = 0;
    int64_t label = -1;
    val.load(i, 5, &px, &label);
    EXPECT_EQ(label, s.validation[static_cast<size_t>(i)]);
    EXPECT_EQ(px, s.validation[static_cast<size_t>(i)]);
  }
}

}  // namespace
}  // namespace tandem
