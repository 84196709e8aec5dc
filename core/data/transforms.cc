// Crop, flip and normalise in one pass over the output: each output pixel reads its source pixel
// (or the padding) through the channel's lookup table.
#include "core/data/transforms.h"

#include "core/base/error.h"
#include "core/data/random_streams.h"
#include "core/random/philox.h"

namespace tandem {

Transforms::Transforms(SampleShape shape, TransformOptions options)
    : shape_(shape), options_(std::move(options)) {
  const int64_t c = shape_.channels;
  auto per_channel = [&](std::vector<double>& v, const char* what) {
    TANDEM_CHECK_T(
        ConfigError,
        v.empty() || static_cast<int64_t>(v.size()) == 1 || static_cast<int64_t>(v.size()) == c,
        "normalisation ", what, " has ", v.size(), " values: expected 1 or ", c,
        " (one per channel)");
    if (v.size() == 1) v.assign(static_cast<size_t>(c), v[0]);
  };
  per_channel(options_.mean, "mean");
  per_channel(options_.std, "std");
  TANDEM_CHECK_T(ConfigError, options_.mean.size() == options_.std.size(),
                 "normalisation needs both mean and std, or neither");
  for (double s : options_.std)
    TANDEM_CHECK_T(ConfigError, s > 0, "normalisation std must be positive, got ", s);
  TANDEM_CHECK_T(ConfigError, options_.crop_padding >= 0, "crop padding must be >= 0, got ",
                 options_.crop_padding);
  lut_.resize(static_cast<size_t>(c));
  for (int64_t ch = 0; ch < c; ++ch) {
    const bool norm = !options_.mean.empty();
    const double m = norm ? options_.mean[static_cast<size_t>(ch)] : 0.0;
    const double s = norm ? options_.std[static_cast<size_t>(ch)] : 1.0;
    for (int p = 0; p < 256; ++p)
      lut_[static_cast<size_t>(ch)][static_cast<size_t>(p)] =
          static_cast<float>((p / 255.0 - m) / s);
  }
}

Augmentation Transforms::draw(int64_t epoch, int64_t global_index) const {
  const int64_t pad = options_.crop_padding;
  Augmentation a{pad, pad, false};
  if (!random()) return a;
  const auto r = philox4x32(options_.seed, stream_counter_hi(kStreamAugment, epoch),
                            static_cast<uint64_t>(global_index));
  if (pad > 0) {
    a.dy = static_cast<int64_t>(r[0] % static_cast<uint32_t>(2 * pad + 1));
    a.dx = static_cast<int64_t>(r[1] % static_cast<uint32_t>(2 * pad + 1));
  }
  if (options_.horizontal_flip) a.flip = (r[2] >> 31) != 0;  // the top bit: probability 1/2
  return a;
}

void Transforms::apply(const uint8_t* in, float* out, int64_t epoch, int64_t global_index) const {
  const int64_t C = shape_.channels, H = shape_.height, W = shape_.width;
  const Augmentation a = draw(epoch, global_index);
  const int64_t pad = options_.crop_padding;
  const int64_t oy = a.dy - pad, ox = a.dx - pad;  // source offset of output pixel (0, 0)
  for (int64_t c = 0; c < C; ++c) {
    const std::array<float, 256>& lut = lut_[static_cast<size_t>(c)];
    const float zero = lut[0];
    const uint8_t* src = in + c * H * W;
    float* dst = out + c * H * W;
    for (int64_t y = 0; y < H; ++y) {
      float* row = dst + y * W;
      const int64_t sy = y + oy;
      if (sy < 0 || sy >= H) {
        for (int64_t x = 0; x < W; ++x) row[x] = zero;
        continue;
      }
      const uint8_t* srow = src + sy * W;
      if (ox == 0) {  // no horizontal shift: no bounds to check (image_folder, eval, flips)
        if (a.flip) {
          for (int64_t x = 0; x < W; ++x) row[x] = lut[srow[W - 1 - x]];
        } else {
          for (int64_t x = 0; x < W; ++x) row[x] = lut[srow[x]];
        }
        continue;
      }
      for (int64_t x = 0; x < W; ++x) {
        const int64_t sx = (a.flip ? W - 1 - x : x) + ox;  // flip after the crop
        row[x] = (sx >= 0 && sx < W) ? lut[srow[sx]] : zero;
      }
    }
  }
}

void normalization_for(const std::string& dataset, std::vector<double>* mean,
                       std::vector<double>* std) {
  if (dataset == "fashion_mnist") {
    *mean = {0.2860};
    *std = {0.3530};
  } else if (dataset == "mnist") {
    *mean = {0.1307};
    *std = {0.3081};
  } else if (dataset == "cifar10") {
    *mean = {0.4914, 0.4822, 0.4465};
    *std = {0.2470, 0.2435, 0.2616};
  } else if (dataset == "image_folder") {  // ImageNet's, as in torchvision's reference scripts
    *mean = {0.485, 0.456, 0.406};
    *std = {0.229, 0.224, 0.225};
  } else {
    mean->clear();
    std->clear();
  }
}

TransformOptions default_transform_options(const std::string& dataset, const SampleShape& shape,
                                           bool augment, uint64_t seed) {
  TransformOptions o;
  normalization_for(dataset, &o.mean, &o.std);
  o.seed = seed;
  if (augment && dataset == "image_folder") {
    o.horizontal_flip = true;  // the crop is the data set's (RandomResizedCrop, image_folder.h)
  } else if (augment) {
    if (shape.height == 32 && shape.width == 32)
      o.crop_padding = 4;
    else if (shape.height == 28 && shape.width == 28)
      o.crop_padding = 2;
    o.horizontal_flip = dataset != "mnist";
  }
  return o;
}

}  // namespace tandem
