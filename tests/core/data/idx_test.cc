// IDX reading (MNIST, Fashion-MNIST): small files written here, raw and gzip, and every way a
// file can be damaged, each with its exact one-line message.
#include "core/data/idx.h"

#include <gtest/gtest.h>
#include <sys/resource.h>

#include "core/base/error.h"
#include "core/data/compressed_file.h"
#include "tests/core/data/data_test_util.h"
#include "tests/support/test_support.h"

namespace tandem {
namespace {

using testing::be32;
using testing::error_message;
using testing::gzip_bytes;
using testing::temp_dir;
using testing::write_bytes;

// 3 images of 2x2 with pixel values 10 * image + position; labels 7, 0, 9.
std::string images_bytes(uint32_t count = 3, uint32_t rows = 2, uint32_t cols = 2) {
  std::string b = be32(kIdxImagesMagic) + be32(count) + be32(rows) + be32(cols);
  for (uint32_t i = 0; i < count * rows * cols; ++i) b += static_cast<char>(10 * (i / 4) + i % 4);
  return b;
}
std::string labels_bytes(const std::string& labels = std::string("\x07\x00\x09", 3)) {
  return be32(kIdxLabelsMagic) + be32(static_cast<uint32_t>(labels.size())) + labels;
}

const std::vector<uint8_t> kPixels = {0, 1, 2, 3, 10, 11, 12, 13, 20, 21, 22, 23};

TEST(Idx, ReadsRawAndGzipFilesToTheSameBytes) {
  const std::string dir = temp_dir();
  write_bytes(dir + "/raw-images", images_bytes());
  write_bytes(dir + "/raw-labels", labels_bytes());
  write_bytes(dir + "/images.gz", gzip_bytes(images_bytes()));
  write_bytes(dir + "/labels.gz", gzip_bytes(labels_bytes()));
  for (const char* suffix : {"raw", "gz"}) {
    SCOPED_TRACE(suffix);
    const bool gz = std::string(suffix) == "gz";
    IdxImageSet s = read_idx_image_set(dir + (gz ? "/images.gz" : "/raw-images"),
                                       dir + (gz ? "/labels.gz" : "/raw-labels"));
    EXPECT_EQ(s.count, 3);
    EXPECT_EQ(s.rows, 2);
    EXPECT_EQ(s.cols, 2);
    EXPECT_EQ(s.pixels, kPixels);
    EXPECT_EQ(s.labels, (std::vector<uint8_t>{7, 0, 9}));
  }
}

TEST(Idx, DetectsGzipByMagicNotByName) {
  const std::string dir = temp_dir();
  write_bytes(dir + "/images.gz", images_bytes());           // raw despite the name
  write_bytes(dir + "/labels", gzip_bytes(labels_bytes()));  // gzip without the name
  IdxImageSet s = read_idx_image_set(dir + "/images.gz", dir + "/labels");
  EXPECT_EQ(s.pixels, kPixels);
  EXPECT_EQ(s.labels, (std::vector<uint8_t>{7, 0, 9}));
}

TEST(Idx, ReadsConcatenatedGzipMembers) {
  const std::string dir = temp_dir(), bytes = images_bytes();
  write_bytes(dir + "/images", gzip_bytes(bytes.substr(0, 9)) + gzip_bytes(bytes.substr(9)));
  EXPECT_EQ(read_idx(dir + "/images", kIdxImagesMagic, "pixels").data, kPixels);
}

TEST(Idx, TruncatedImagesNameTheFileAndBothLengths) {
  const std::string dir = temp_dir(), path = dir + "/train-images-idx3-ubyte.gz";
  write_bytes(path, gzip_bytes(images_bytes().substr(0, 16 + 10)));
  EXPECT_EQ(
      error_message<IoError>([&] { read_idx(path, kIdxImagesMagic, "pixels"); }),
      path + ": truncated: expected 12 bytes of pixels after the header (3 x 2 x 2), found 10");
}

TEST(Idx, TruncatedLabelsNameTheFileAndBothLengths) {
  const std::string dir = temp_dir(), path = dir + "/labels";
  write_bytes(path, labels_bytes().substr(0, 8 + 2));
  EXPECT_EQ(error_message<IoError>([&] { read_idx(path, kIdxLabelsMagic, "labels"); }),
            path + ": truncated: expected 3 bytes of labels after the header (3), found 2");
}

TEST(Idx, TruncatedHeaderIsAnError) {
  const std::string dir = temp_dir(), path = dir + "/images";
  write_bytes(path, images_bytes().substr(0, 8));
  EXPECT_EQ(error_message<IoError>([&] { read_idx(path, kIdxImagesMagic, "pixels"); }),
            path + ": truncated: expected an IDX header of 16 bytes, found 8");
  write_bytes(path, std::string("\x00\x00", 2));
  EXPECT_EQ(error_message<IoError>([&] { read_idx(path, kIdxImagesMagic, "pixels"); }),
            path + ": truncated: expected an IDX header of 16 bytes, found 2");
}

TEST(Idx, WrongMagicSaysWhichWasExpected) {
  const std::string dir = temp_dir(), path = dir + "/images";
  write_bytes(path, labels_bytes());  // a labels file where images were expected
  EXPECT_EQ(
      error_message<IoError>([&] { read_idx(path, kIdxImagesMagic, "pixels"); }),
      path + ": wrong magic number: expected 0x00000803 (u8, 3 dimensions), found 0x00000801");
  std::string f32 = images_bytes();
  f32[2] = 0x0D;  // IDX type 0x0D: float
  write_bytes(path, f32);
  EXPECT_EQ(
      error_message<IoError>([&] { read_idx(path, kIdxImagesMagic, "pixels"); }),
      path + ": wrong magic number: expected 0x00000803 (u8, 3 dimensions), found 0x00000d03");
  write_bytes(path, images_bytes());
  EXPECT_EQ(error_message<IoError>([&] { read_idx(path, kIdxLabelsMagic, "labels"); }),
            path + ": wrong magic number: expected 0x00000801 (u8, 1 dimension), found 0x00000803");
}

TEST(Idx, ZeroSizedImageDimensionIsAnError) {
  const std::string dir = temp_dir(), path = dir + "/images";
  write_bytes(path, images_bytes(3, 0, 2));
  EXPECT_EQ(
      error_message<IoError>([&] { read_idx(path, kIdxImagesMagic, "pixels"); }),
      path + ": bad dimensions 3 x 0 x 2: expected every size after the count to be positive");
}

TEST(Idx, DimensionsThatDoNotMatchThePayloadAreAnError) {
  // The header claims 3 images of 4x4 but the payload holds 3 of 2x2.
  const std::string dir = temp_dir(), path = dir + "/images";
  std::string b = images_bytes();
  b.replace(8, 8, be32(4) + be32(4));
  write_bytes(path, b);
  EXPECT_EQ(
      error_message<IoError>([&] { read_idx(path, kIdxImagesMagic, "pixels"); }),
      path + ": truncated: expected 48 bytes of pixels after the header (3 x 4 x 4), found 12");
}

TEST(Idx, TrailingBytesAreAnError) {
  const std::string dir = temp_dir(), path = dir + "/images.gz";
  write_bytes(path, gzip_bytes(images_bytes() + "xy"));
  EXPECT_EQ(error_message<IoError>([&] { read_idx(path, kIdxImagesMagic, "pixels"); }),
            path +
                ": 2 trailing bytes: expected 12 bytes of pixels after the header (3 x 2 x 2), "
                "found 14");
}

TEST(Idx, ImageAndLabelCountsMustAgree) {
  const std::string dir = temp_dir();
  write_bytes(dir + "/images", images_bytes());
  write_bytes(dir + "/labels", labels_bytes(std::string("\x01\x02\x03\x04", 4)));
  EXPECT_EQ(error_message<IoError>([&] { read_idx_image_set(dir + "/images", dir + "/labels"); }),
            dir + "/images holds 3 images but " + dir +
                "/labels holds 4 labels: expected one label per image");
}

TEST(Idx, CorruptGzipIsAnError) {
  const std::string dir = temp_dir(), path = dir + "/images.gz";
  // A gzip header (10 bytes) then a deflate block of the reserved type 3 (bits 1, 11).
  write_bytes(path, std::string("\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\x07\x00\x00\x00", 14));
  EXPECT_EQ(error_message<IoError>([&] { read_idx(path, kIdxImagesMagic, "pixels"); }),
            path + ": corrupt gzip data at byte 11: invalid block type (re-download the file)");
  // A flipped byte in the payload of a real stream fails its CRC-32.
  std::string gz = gzip_bytes(images_bytes());
  gz[gz.size() - 8] ^= 0x55;  // first byte of the stored CRC
  write_bytes(path, gz);
  EXPECT_EQ(error_message<IoError>([&] { read_idx(path, kIdxImagesMagic, "pixels"); }),
            path + ": corrupt gzip data at byte " + std::to_string(gz.size() - 4) +
                ": incorrect data check (re-download the file)");
}

TEST(Idx, TruncatedGzipIsAnError) {
  const std::string dir = temp_dir(), path = dir + "/images.gz";
  const std::string gz = gzip_bytes(images_bytes());
  write_bytes(path, gz.substr(0, gz.size() - 6));
  EXPECT_EQ(error_message<IoError>([&] { read_idx(path, kIdxImagesMagic, "pixels"); }),
            path + ": truncated gzip stream: expected more compressed data after " +
                std::to_string(gz.size() - 6) + " bytes (re-download the file)");
}

// Peak resident memory of this process so far, in bytes.
int64_t peak_rss_bytes() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<int64_t>(u.ru_maxrss) * 1024;
}

// A 256 KiB file that gunzips to 256 MiB: a labels header declaring 1 label, then zeros, as 256
// concatenated gzip members of 1 MiB each (the reader joins members, as gzip -d does). It used to
// be inflated whole before the header's size was compared with it.
TEST(Idx, GzipBombIsStoppedAtTheSizeItsHeaderDeclares) {
  const std::string dir = temp_dir(), path = dir + "/bomb-labels.gz";
  const std::string zeros(1 << 20, '\0');
  std::string bomb = gzip_bytes(be32(kIdxLabelsMagic) + be32(1) + zeros);
  const std::string member = gzip_bytes(zeros);
  for (int i = 1; i < 256; ++i) bomb += member;
  ASSERT_LT(bomb.size(), 1u << 20);
  write_bytes(path, bomb);
  const int64_t before = peak_rss_bytes();
  EXPECT_EQ(error_message<IoError>([&] { read_idx(path, kIdxLabelsMagic, "labels"); }),
            path +
                ": gzip data decompresses to more than 4105 bytes; its IDX header declares 9 "
                "(dimensions 1): the file is corrupt");
  EXPECT_LT(peak_rss_bytes() - before, int64_t{64} << 20) << "the bomb was inflated";
}

TEST(Gunzip, FeedsTheInputInChunksOfAnySize) {
  // zlib's avail_in is 32 bits: input over 4 GiB must go in pieces. Pieces of 7 bytes exercise the
  // same loop on a small stream, across member boundaries.
  const std::string a = images_bytes(), b = labels_bytes();
  const std::string gz = gzip_bytes(a) + gzip_bytes(b);
  const std::vector<uint8_t> in(gz.begin(), gz.end());
  for (size_t chunk : {size_t{1}, size_t{7}, size_t{1} << 30}) {
    std::vector<uint8_t> out = gunzip(in, "mem.gz", {}, chunk);
    EXPECT_EQ(std::string(out.begin(), out.end()), a + b) << chunk;
  }
}

TEST(Idx, MissingFileNamesThePath) {
  const std::string path = temp_dir() + "/absent-images";
  EXPECT_EQ(error_message<IoError>([&] { read_idx(path, kIdxImagesMagic, "pixels"); }),
            path + ": cannot open (No such file or directory)");
}

}  // namespace
}  // namespace tandem
