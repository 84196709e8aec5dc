// Per-sample transforms, applied while a batch is assembled: u8 (C, H, W) pixels in, f32 out.
// Order as in the usual torchvision pipeline: random crop of the zero-padded image, horizontal
// flip, then ToTensor (pixel / 255) and Normalize (per-channel mean and std).
//
// Every random choice is a pure function of (seed, epoch, *global* sample index): one
// philox4x32(seed, kStreamAugment << 32 | epoch, global index) call per sample gives the crop
// offsets and the flip (random_streams.h). The same sample is augmented identically whichever
// rank or worker thread loads it and however many replicas there are.
//
// Normalisation goes through a 256-entry table per channel holding float((p / 255 - mean) / std)
// computed in double: one lookup per pixel, and every value correctly rounded. Padding is a zero
// pixel before normalisation (torchvision pads the image, then normalises), i.e. -mean / std.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "core/data/dataset.h"

namespace tandem {

struct TransformOptions {
  // Per channel, of pixel / 255. One value applies to every channel; both empty: no normalisation
  // (pixel / 255 only).
  std::vector<double> mean;
  std::vector<double> std;
  int64_t crop_padding = 0;      // pad each side by this many zero pixels, crop back to H x W
  bool horizontal_flip = false;  // mirror left-right with probability 0.5
  uint64_t seed = 0;             // key of the augmentation draws (the data seed)
};

// The augmentation drawn for one (epoch, global sample index).
struct Augmentation {
  int64_t dy = 0;  // crop window's top-left corner in the padded image, in [0, 2 * padding]
  int64_t dx = 0;
  bool flip = false;
};

class Transforms {
 public:
  explicit Transforms(SampleShape shape, TransformOptions options = {});

  const SampleShape& shape() const { return shape_; }
  const TransformOptions& options() const { return options_; }
  bool random() const { return options_.crop_padding > 0 || options_.horizontal_flip; }

  // Pure function of (seed, epoch, global_index); dy = dx = padding and flip = false when the
  // respective transform is off.
  Augmentation draw(int64_t epoch, int64_t global_index) const;
  // One sample: `in` holds shape().numel() u8 pixels (C, H, W); `out` as many floats.
  void apply(const uint8_t* in, float* out, int64_t epoch, int64_t global_index) const;
  // The normalised value of pixel value p in channel c.
  float value(int64_t c, uint8_t p) const { return lut_[static_cast<size_t>(c)][p]; }

 private:
  SampleShape shape_;
  TransformOptions options_;
  std::vector<std::array<float, 256>> lut_;  // per channel
};

// Mean and std of pixel / 255 over a data set's training split, as published with it:
// fashion_mnist 0.2860 / 0.3530, mnist 0.1307 / 0.3081, cifar10 (0.4914, 0.4822, 0.4465) /
// (0.2470, 0.2435, 0.2616), image_folder ImageNet's (0.485, 0.456, 0.406) / (0.229, 0.224, 0.225).
// Empty for synthetic (and any other name): no normalisation.
void normalization_for(const std::string& dataset, std::vector<double>* mean,
                       std::vector<double>* std);

// The standard pipeline: the data set's normalisation, and with `augment` (training only) a random
// crop (padding 4 for 32x32 images, 2 for 28x28, none otherwise) and a flip (not for mnist:
// mirrored digits are different characters). image_folder: the flip only (its data set crops).
TransformOptions default_transform_options(const std::string& dataset, const SampleShape& shape,
                                           bool augment, uint64_t seed);

}  // namespace tandem
