// A validation split taken out of a training split (data.validation_fraction), and the
// SubsetDataset view that serves either part.
//
// The decision: which samples are held out is a pure function of (seed, size, fraction) -- a
// Philox permutation on its own stream, "VALS" -- so every rank and every restart holds out the
// same samples without a collective, and the two parts never share a sample. Both parts keep the
// original index order, so the training sampler shuffles them as it shuffles any data set.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "core/data/dataset.h"

namespace tandem {

constexpr uint64_t kStreamValidation = 0x56414C53;  // "VALS" (random_streams.h lists the others)

struct ValidationSplit {
  std::vector<int64_t> train;       // sorted indices into the original data set
  std::vector<int64_t> validation;  // sorted; disjoint from train, together all of [0, size)
};

// round(size x fraction) samples (at least 1, leaving at least 1 for training) held out. Throws
// ConfigError naming data.validation_fraction when fraction is outside (0, 1) or size < 2.
ValidationSplit split_for_validation(int64_t size, double fraction, uint64_t seed);

// The samples `indices` of `base`, renumbered 0..indices.size()-1.
class SubsetDataset : public Dataset {
 public:
  SubsetDataset(std::shared_ptr<const Dataset> base, std::vector<int64_t> indices);
  std::string name() const override { return base_->name(); }
  int64_t size() const override { return static_cast<int64_t>(indices_.size()); }
  SampleShape sample_shape() const override { return base_->sample_shape(); }
  int64_t num_classes() const override { return base_->num_classes(); }
  void get(int64_t index, uint8_t* pixels_out, int64_t* label_out) const override;
  void load(int64_t index, int64_t epoch, uint8_t* pixels_out, int64_t* label_out) const override;
  int64_t replaced_samples() const override { return base_->replaced_samples(); }

 private:
  std::shared_ptr<const Dataset> base_;
  std::vector<int64_t> indices_;
};

}  // namespace tandem
