// Data sets by name: the real Fashion-MNIST files of the Debian package, MNIST-style IDX folders,
// the synthetic set, and the errors of make_dataset.
#include "core/data/dataset.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "core/base/error.h"
#include "core/data/idx.h"
#include "tests/core/data/data_test_util.h"
#include "tests/support/test_support.h"

namespace tandem {
namespace {

using testing::be32;
using testing::error_message;
using testing::gunzip_file;
using testing::temp_dir;
using testing::write_bytes;

#define SKIP_WITHOUT_FASHION_MNIST()                                                   \
  do {                                                                                 \
    if (!std::filesystem::exists(std::string(kFashionMnistDebianDir) +                 \
                                 "/train-labels-idx1-ubyte.gz"))                       \
      GTEST_SKIP() << kFashionMnistDebianDir                                           \
                   << " is missing: install the Debian package dataset-fashion-mnist"; \
  } while (0)

TEST(Dataset, FashionMnistTrainingSplitLoadsFromTheDebianPackage) {
  SKIP_WITHOUT_FASHION_MNIST();
  auto ds = make_dataset("fashion_mnist", "", "train");
  EXPECT_EQ(ds->name(), "fashion_mnist");
  ASSERT_EQ(ds->size(), 60000);
  EXPECT_EQ(ds->sample_shape(), (SampleShape{1, 28, 28}));
  EXPECT_EQ(ds->num_classes(), 10);
  // The files' own bytes, decompressed independently: labels after 8 header bytes, images after 16.
  const std::string dir = kFashionMnistDebianDir;
  const std::string labels = gunzip_file(dir + "/train-labels-idx1-ubyte.gz");
  const std::string images = gunzip_file(dir + "/train-images-idx3-ubyte.gz");
  ASSERT_EQ(labels.size(), 8u + 60000);
  ASSERT_EQ(images.size(), 16u + 60000 * 784);
  std::vector<uint8_t> px(784);
  int64_t label = -1;
  ds->get(0, px.data(), &label);
  EXPECT_EQ(label, static_cast<uint8_t>(labels[8]));
  EXPECT_EQ(label, 9);  // the first training image is an ankle boot
  EXPECT_EQ(std::string(px.begin(), px.end()), images.substr(16, 784));
  ds->get(59999, px.data(), &label);
  EXPECT_EQ(label, static_cast<uint8_t>(labels[8 + 59999]));
  EXPECT_EQ(std::string(px.begin(), px.end()), images.substr(16 + 59999 * 784, 784));
  // Every label in [0, 9]; Fashion-MNIST is balanced: 6000 training images per class.
  std::vector<int64_t> per_class(10, 0);
  for (int64_t i = 0; i < ds->size(); ++i) {
    ds->get(i, px.data(), &label);
    ASSERT_TRUE(label >= 0 && label <= 9) << "sample " << i << " has label " << label;
    ++per_class[static_cast<size_t>(label)];
  }
  EXPECT_EQ(per_class, std::vector<int64_t>(10, 6000));
}

TEST(Dataset, FashionMnistTestSplitHasTenThousandBalancedImages) {
  SKIP_WITHOUT_FASHION_MNIST();
  auto ds = make_dataset("fashion_mnist", kFashionMnistDebianDir, "test");
  ASSERT_EQ(ds->size(), 10000);
  const std::string labels =
      gunzip_file(std::string(kFashionMnistDebianDir) + "/t10k-labels-idx1-ubyte.gz");
  std::vector<uint8_t> px(784);
  std::vector<int64_t> per_class(10, 0);
  for (int64_t i = 0; i < ds->size(); ++i) {
    int64_t label = -1;
    ds->get(i, px.data(), &label);
    ASSERT_EQ(label, static_cast<uint8_t>(labels[8 + i])) << "sample " << i;
    ++per_class[static_cast<size_t>(label)];
  }
  EXPECT_EQ(per_class, std::vector<int64_t>(10, 1000));
}

// An MNIST-style folder with `count` 28x28 images (pixel j of image i = i + j mod 256), raw IDX.
void write_mnist_folder(const std::string& dir, const std::string& prefix, uint32_t count,
                        uint32_t rows = 28) {
  std::string images = be32(kIdxImagesMagic) + be32(count) + be32(rows) + be32(28);
  for (uint32_t i = 0; i < count; ++i)
    for (uint32_t j = 0; j < rows * 28; ++j) images += static_cast<char>((i + j) % 256);
  std::string labels = be32(kIdxLabelsMagic) + be32(count);
  for (uint32_t i = 0; i < count; ++i) labels += static_cast<char>((3 * i) % 10);
  write_bytes(dir + "/" + prefix + "-images-idx3-ubyte", images);
  write_bytes(dir + "/" + prefix + "-labels-idx1-ubyte", testing::gzip_bytes(labels));
}

TEST(Dataset, MnistReadsRawOrGzipIdxFilesFromAFolder) {
  const std::string dir = temp_dir();
  write_mnist_folder(dir, "t10k", 4);
  std::filesystem::rename(dir + "/t10k-labels-idx1-ubyte", dir + "/t10k-labels-idx1-ubyte.gz");
  auto ds = make_dataset("mnist", dir, "test");
  ASSERT_EQ(ds->size(), 4);
  std::vector<uint8_t> px(784);
  int64_t label = -1;
  ds->get(3, px.data(), &label);
  EXPECT_EQ(label, 9);
  EXPECT_EQ(px[0], 3);
  EXPECT_EQ(px[783], (3 + 783) % 256);
}

TEST(Dataset, MnistNeedsTwentyEightByTwentyEightImages) {
  const std::string dir = temp_dir();
  write_mnist_folder(dir, "train", 2, 27);
  EXPECT_EQ(error_message<IoError>([&] { make_dataset("mnist", dir, "train"); }),
            dir + "/train-images-idx3-ubyte: expected 28x28 images for mnist, found 27x28");
}

TEST(Dataset, MissingIdxFilesSayWhereFashionMnistComesFrom) {
  const std::string dir = temp_dir();
  EXPECT_EQ(error_message<IoError>([&] { make_dataset("fashion_mnist", dir, "train"); }),
            dir +
                "/train-images-idx3-ubyte.gz: no such file (nor train-images-idx3-ubyte); "
                "expected the Fashion-MNIST IDX files (the Debian package dataset-fashion-mnist "
                "installs them in /usr/share/datasets/fashion-mnist)");
}

TEST(Dataset, UnknownNameOrSplitIsAConfigError) {
  EXPECT_EQ(
      error_message<ConfigError>([] { make_dataset("imagenet", "/x", "train"); }),
      "unknown data set 'imagenet': expected one of fashion_mnist, mnist, cifar10, synthetic, "
      "image_folder");
  EXPECT_EQ(error_message<ConfigError>([] { make_dataset("synthetic", "", "val"); }),
            "data split 'val': expected train or test");
}

TEST(Dataset, SyntheticSamplesArePureFunctionsOfSeedAndIndex) {
  SyntheticOptions o;
  o.size = 2000;
  o.shape = {3, 224, 224};
  o.num_classes = 10;
  o.seed = 4;
  auto a = make_dataset("synthetic", "", "train", o), b = make_dataset("synthetic", "", "train", o);
  auto test = make_dataset("synthetic", "", "test", o);
  o.seed = 5;
  auto other_seed = make_dataset("synthetic", "", "train", o);
  EXPECT_EQ(a->sample_shape(), (SampleShape{3, 224, 224}));
  EXPECT_EQ(a->size(), 2000);
  const size_t n = 3 * 224 * 224;
  std::vector<uint8_t> p1(n), p2(n), p3(n), p4(n);
  int64_t l1, l2, l3, l4;
  a->get(1234, p1.data(), &l1);
  b->get(1234, p2.data(), &l2);
  EXPECT_EQ(p1, p2);
  EXPECT_EQ(l1, l2);
  a->get(1235, p3.data(), &l3);
  EXPECT_NE(p1, p3);
  test->get(1234, p3.data(), &l3);
  EXPECT_NE(p1, p3);
  other_seed->get(1234, p4.data(), &l4);
  EXPECT_NE(p1, p4);
  // Uniform bytes: mean 127.5 (std of the mean 0.19 over 150528 bytes).
  double sum = 0;
  for (uint8_t v : p1) sum += v;
  EXPECT_NEAR(sum / n, 127.5, 1.5);
  // Labels uniform over [0, 10): 200 per class expected, std 13.4.
  std::vector<int> per_class(10, 0);
  SyntheticOptions small = o;
  small.shape = {1, 2, 2};
  auto labels_only = make_dataset("synthetic", "", "train", small);
  uint8_t px[4];
  for (int64_t i = 0; i < 2000; ++i) {
    int64_t label;
    labels_only->get(i, px, &label);
    ASSERT_TRUE(label >= 0 && label < 10);
    ++per_class[static_cast<size_t>(label)];
  }
  for (int c = 0; c < 10; ++c) EXPECT_NEAR(per_class[c], 200, 70) << "class " << c;
}

}  // namespace
}  // namespace tandem
