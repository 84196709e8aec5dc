// Transforms: normalisation values against hand-computed numbers, crop and flip against a hand-made
// 4x4 image, and augmentation keyed by (seed, epoch, global index) only.
#include "core/data/transforms.h"

#include <gtest/gtest.h>

#include <numeric>

#include "core/base/error.h"
#include "core/data/random_streams.h"
#include "core/random/philox.h"

namespace tandem {
namespace {

TEST(Transforms, NormalisesFashionMnistPixelsWithItsMeanAndStd) {
  Transforms t({1, 1, 3}, default_transform_options("fashion_mnist", {1, 1, 3}, false, 0));
  const uint8_t in[3] = {0, 255, 73};
  float out[3];
  t.apply(in, out, 0, 0);
  EXPECT_FLOAT_EQ(out[0], -0.81019830f);    // (0 - 0.2860) / 0.3530
  EXPECT_FLOAT_EQ(out[1], 2.02266289f);     // (1 - 0.2860) / 0.3530
  EXPECT_FLOAT_EQ(out[2], 0.00077764817f);  // (73 / 255 - 0.2860) / 0.3530
  // Exactly the double formula rounded once to float.
  EXPECT_EQ(out[2], static_cast<float>((73 / 255.0 - 0.2860) / 0.3530));
}

TEST(Transforms, NormalisesEachCifarChannelWithItsOwnMeanAndStd) {
  Transforms t({3, 1, 1}, default_transform_options("cifar10", {3, 1, 1}, false, 0));
  const uint8_t in[3] = {255, 0, 255};
  float out[3];
  t.apply(in, out, 0, 0);
  EXPECT_FLOAT_EQ(out[0], 2.05910931f);   // (1 - 0.4914) / 0.2470
  EXPECT_FLOAT_EQ(out[1], -1.98028747f);  // (0 - 0.4822) / 0.2435
  EXPECT_FLOAT_EQ(out[2], 2.11582569f);   // (1 - 0.4465) / 0.2616
  TransformOptions mnist = default_transform_options("mnist", {1, 28, 28}, true, 0);
  EXPECT_EQ(mnist.mean, std::vector<double>{0.1307});
  EXPECT_EQ(mnist.std, std::vector<double>{0.3081});
  EXPECT_EQ(mnist.crop_padding, 2);
  EXPECT_FALSE(mnist.horizontal_flip);  // mirrored digits are other characters
}

TEST(Transforms, WithoutNormalisationPixelsAreDividedBy255) {
  Transforms t({1, 1, 2});
  const uint8_t in[2] = {51, 255};
  float out[2];
  t.apply(in, out, 3, 99);
  EXPECT_EQ(out[0], 0.2f);
  EXPECT_EQ(out[1], 1.0f);
}

TEST(Transforms, CropsThePaddedImageThenFlips) {
  TransformOptions o;
  o.crop_padding = 1;
  o.horizontal_flip = true;
  o.seed = 5;
  Transforms t({1, 4, 4}, o);
  // Find a sample whose draw is dy = 0, dx = 2, flip: window rows -1..2, columns 1..4, mirrored.
  int64_t index = -1;
  for (int64_t i = 0; i < 1000 && index < 0; ++i) {
    Augmentation a = t.draw(0, i);
    if (a.dy == 0 && a.dx == 2 && a.flip) index = i;
  }
  ASSERT_GE(index, 0);
  uint8_t in[16];
  std::iota(in, in + 16, 1);  // in[y][x] = 4 y + x + 1
  float out[16];
  t.apply(in, out, 0, index);
  const float expected[16] = {0, 0,  0,  0,  //
                              0, 4,  3,  2,  //
                              0, 8,  7,  6,  //
                              0, 12, 11, 10};
  for (int i = 0; i < 16; ++i) EXPECT_EQ(out[i] * 255.0f, expected[i]) << "pixel " << i;
}

TEST(Transforms, PaddingIsAZeroPixelBeforeNormalisation) {
  TransformOptions o = default_transform_options("fashion_mnist", {1, 2, 2}, false, 1);
  o.crop_padding = 2;
  Transforms t({1, 2, 2}, o);
  int64_t index = -1;  // a draw with the window entirely in the padding: dy = 0
  for (int64_t i = 0; i < 1000 && index < 0; ++i)
    if (t.draw(4, i).dy == 0) index = i;
  ASSERT_GE(index, 0);
  const uint8_t in[4] = {200, 200, 200, 200};
  float out[4];
  t.apply(in, out, 4, index);
  for (float v : out) EXPECT_FLOAT_EQ(v, -0.81019830f);
}

TEST(Transforms, SameSeedEpochAndIndexGiveTheSameAugmentation) {
  TransformOptions o = default_transform_options("cifar10", {3, 32, 32}, true, 42);
  Transforms a({3, 32, 32}, o), b({3, 32, 32}, o);
  std::vector<uint8_t> in(3 * 32 * 32);
  for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<uint8_t>(i * 13);
  std::vector<float> out_a(in.size()), out_b(in.size());
  a.apply(in.data(), out_a.data(), 7, 123456);
  b.apply(in.data(), out_b.data(), 7, 123456);
  EXPECT_EQ(out_a, out_b);
  // The draw is exactly the documented Philox call.
  const auto r = philox4x32(42, kStreamAugment << 32 | 7, 123456);
  const Augmentation d = a.draw(7, 123456);
  EXPECT_EQ(d.dy, r[0] % 9);
  EXPECT_EQ(d.dx, r[1] % 9);
  EXPECT_EQ(d.flip, (r[2] >> 31) == 1);
}

TEST(Transforms, DrawsAreUniformAndDifferAcrossIndicesEpochsAndSeeds) {
  TransformOptions o = default_transform_options("cifar10", {3, 32, 32}, true, 42);
  Transforms t({3, 32, 32}, o);
  o.seed = 43;
  Transforms other_seed({3, 32, 32}, o);
  const int n = 20000;
  int flips = 0, same_as_next_epoch = 0, same_as_other_seed = 0;
  std::vector<int> dy_counts(9, 0), dx_counts(9, 0);
  auto same = [](const Augmentation& a, const Augmentation& b) {
    return a.dy == b.dy && a.dx == b.dx && a.flip == b.flip;
  };
  for (int i = 0; i < n; ++i) {
    Augmentation a = t.draw(0, i);
    flips += a.flip;
    ++dy_counts[static_cast<size_t>(a.dy)];
    ++dx_counts[static_cast<size_t>(a.dx)];
    same_as_next_epoch += same(a, t.draw(1, i));
    same_as_other_seed += same(a, other_seed.draw(0, i));
  }
  // Binomial(20000, 0.5): std 71; 5 std either side.
  EXPECT_NEAR(flips, n / 2, 355);
  for (int k = 0; k < 9; ++k) {
    EXPECT_NEAR(dy_counts[k], n / 9, 230) << "dy " << k;  // std 44
    EXPECT_NEAR(dx_counts[k], n / 9, 230) << "dx " << k;
  }
  // Independent draws agree with probability 1/162.
  EXPECT_LT(same_as_next_epoch, 250);
  EXPECT_LT(same_as_other_seed, 250);
}

TEST(Transforms, RejectsMismatchedStatistics) {
  TransformOptions o;
  o.mean = {0.1, 0.2};
  o.std = {0.3, 0.3};
  try {
    Transforms t({3, 4, 4}, o);
    ADD_FAILURE() << "no exception";
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(), "normalisation mean has 2 values: expected 1 or 3 (one per channel)");
  }
}

}  // namespace
}  // namespace tandem
