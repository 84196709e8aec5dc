// A synthetic data set: noise images and labels that are a pure function of (seed, index), any
// shape, any size, nothing read from disk. For benchmarks (ImageNet-shaped 3x224x224 by default)
// and tests. One Philox call per sample (random_streams.h, kStreamSynthetic) seeds a SplitMix64
// stream for the pixels, which is about 20x cheaper per byte than Philox for 150 KB images.
#pragma once

#include "core/data/dataset.h"

namespace tandem {

class SyntheticDataset : public Dataset {
 public:
  // `test` selects a disjoint set of samples (indices keyed with bit 63 set).
  SyntheticDataset(const SyntheticOptions& options, bool test);
  std::string name() const override { return "synthetic"; }
  int64_t size() const override { return options_.size; }
  SampleShape sample_shape() const override { return options_.shape; }
  int64_t num_classes() const override { return options_.num_classes; }
  void get(int64_t index, uint8_t* pixels_out, int64_t* label_out) const override;

 private:
  SyntheticOptions options_;
  bool test_;
};

}  // namespace tandem
