// The IDX format of MNIST and Fashion-MNIST (big-endian magic 0x0000TTNN: type TT, NN dimensions,
// then NN big-endian u32 sizes, then the payload), read whole into memory, gzip or raw (detected by
// the gzip magic 1f 8b, not by the file name). Only unsigned-byte arrays are accepted: that is
// what both data sets ship. Every check names the file and says what was expected and what was
// found, because a half-downloaded file is the common failure.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tandem {

constexpr uint32_t kIdxImagesMagic = 0x00000803;  // u8, 3 dimensions (count, rows, cols)
constexpr uint32_t kIdxLabelsMagic = 0x00000801;  // u8, 1 dimension (count)

struct IdxArray {
  std::vector<int64_t> dims;
  std::vector<uint8_t> data;  // row-major, exactly the product of dims
};

// Reads an IDX file whose magic must equal `expected_magic` (kIdxImagesMagic or kIdxLabelsMagic).
// `what` names the payload in errors ("pixels", "labels").
IdxArray read_idx(const std::string& path, uint32_t expected_magic, const std::string& what);

// An images file and its labels file, checked against each other (same count).
struct IdxImageSet {
  int64_t count = 0;
  int64_t rows = 0;
  int64_t cols = 0;
  std::vector<uint8_t> pixels;  // count x rows x cols
  std::vector<uint8_t> labels;  // count
};
IdxImageSet read_idx_image_set(const std::string& images_path, const std::string& labels_path);

}  // namespace tandem
