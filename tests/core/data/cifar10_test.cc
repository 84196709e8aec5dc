// CIFAR-10 binary batches: a two-record file written here read back byte for byte, and the ways a
// batch file can be wrong.
#include "core/data/cifar10.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "core/base/error.h"
#include "core/data/dataset.h"
#include "tests/core/data/data_test_util.h"
#include "tests/support/test_support.h"

namespace tandem {
namespace {

using testing::error_message;
using testing::temp_dir;
using testing::write_bytes;

uint8_t pixel(int record, int i) {
  return static_cast<uint8_t>((i * 7 + record * 31) % 256);
}

// Records with the given labels; pixel i of record r is (7 i + 31 r) mod 256.
std::string records(const std::vector<int>& labels) {
  std::string b;
  for (size_t r = 0; r < labels.size(); ++r) {
    b += static_cast<char>(labels[r]);
    for (int i = 0; i < 3072; ++i) b += static_cast<char>(pixel(static_cast<int>(r), i));
  }
  return b;
}

TEST(Cifar10, ReadsATwoRecordBatchExactly) {
  const std::string dir = temp_dir();
  write_bytes(dir + "/test_batch.bin", records({3, 7}));
  Cifar10Set s = read_cifar10(dir, /*train=*/false);
  ASSERT_EQ(s.count, 2);
  EXPECT_EQ(s.labels, (std::vector<uint8_t>{3, 7}));
  ASSERT_EQ(s.pixels.size(), 2u * 3072);
  for (int r = 0; r < 2; ++r)
    for (int i = 0; i < 3072; ++i) ASSERT_EQ(s.pixels[r * 3072 + i], pixel(r, i)) << r << " " << i;

  // Through the data set: sample 1 is record 1, red plane first, and its label.
  auto ds = make_dataset("cifar10", dir, "test");
  EXPECT_EQ(ds->size(), 2);
  EXPECT_EQ(ds->sample_shape(), (SampleShape{3, 32, 32}));
  EXPECT_EQ(ds->num_classes(), 10);
  std::vector<uint8_t> px(3072);
  int64_t label = -1;
  ds->get(1, px.data(), &label);
  EXPECT_EQ(label, 7);
  EXPECT_EQ(px[0], pixel(1, 0));
  EXPECT_EQ(px[1024 + 32 * 5 + 3], pixel(1, 1024 + 32 * 5 + 3));  // green, row 5, column 3
}

TEST(Cifar10, TrainSplitConcatenatesTheFiveBatchesInOrder) {
  const std::string dir = temp_dir() + "/cifar-10-batches-bin";  // the tarball's folder
  std::filesystem::create_directories(dir);
  for (int i = 1; i <= 5; ++i)
    write_bytes(dir + "/data_batch_" + std::to_string(i) + ".bin", records({i, 9 - i}));
  write_bytes(dir + "/test_batch.bin", records({0}));
  Cifar10Set s = read_cifar10(std::filesystem::path(dir).parent_path().string(), true);
  EXPECT_EQ(s.count, 10);
  EXPECT_EQ(s.labels, (std::vector<uint8_t>{1, 8, 2, 7, 3, 6, 4, 5, 5, 4}));
}

TEST(Cifar10, SizeNotAMultipleOfTheRecordNamesTheTruncatedRecord) {
  const std::string dir = temp_dir(), path = dir + "/test_batch.bin";
  write_bytes(path, records({3, 7}).substr(0, 2 * 3073 - 5));
  EXPECT_EQ(error_message<IoError>([&] { read_cifar10(dir, false); }),
            path +
                ": size 6141 bytes is not a multiple of the 3073-byte record (1 label + 3072 "
                "pixels): record 1 is truncated to 3068 bytes");
}

TEST(Cifar10, LabelAboveNineNamesTheRecord) {
  const std::string dir = temp_dir(), path = dir + "/test_batch.bin";
  write_bytes(path, records({3, 12}));
  EXPECT_EQ(error_message<IoError>([&] { read_cifar10(dir, false); }),
            path + ": record 1 has label 12: expected 0..9");
}

TEST(Cifar10, MissingFileSaysWhereToGetTheBinaryVersion) {
  const std::string dir = temp_dir();
  write_bytes(dir + "/test_batch.bin", records({1}));
  EXPECT_EQ(error_message<IoError>([&] { make_dataset("cifar10", dir, "train"); }),
            dir +
                "/data_batch_1.bin: no such file; expected the CIFAR-10 binary version "
                "(cifar-10-binary.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html, "
                "extracted)");
}

// A gzipped batch may not decompress past the records of the whole data set (60000): a 256
// KiB file of zeros was inflated to 256 MiB of label-0 records first.
TEST(Cifar10, GzipBombIsStoppedAtTheLargestDataSet) {
  const std::string dir = temp_dir(), path = dir + "/test_batch.bin";
  const std::string member = testing::gzip_bytes(std::string(1 << 20, '\0'));
  std::string bomb;
  for (int i = 0; i < 256; ++i) bomb += member;
  write_bytes(path, bomb);
  Cifar10Set s;
  EXPECT_EQ(error_message<IoError>([&] { read_cifar10_file(path, s); }),
            path +
                ": gzip data decompresses to more than 184380000 bytes; a CIFAR-10 file holds "
                "at most 60000 records of 3073 bytes: the file is corrupt");
}

TEST(Cifar10, EmptyFileIsAnError) {
  const std::string dir = temp_dir(), path = dir + "/test_batch.bin";
  write_bytes(path, "");
  EXPECT_EQ(error_message<IoError>([&] { read_cifar10(dir, false); }),
            path + ": empty file: expected records of 3073 bytes (1 label + 3072 pixels)");
}

}  // namespace
}  // namespace tandem
