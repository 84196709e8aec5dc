// CIFAR-10, binary version (cifar-10-binary.tar.gz): data_batch_1.bin .. data_batch_5.bin for
// training and test_batch.bin for testing, each a run of 3073-byte records (1 label byte, then
// 1024 red, 1024 green and 1024 blue bytes of a 32x32 image in row-major order), which is already
// the (C, H, W) layout tandem keeps in memory.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tandem {

constexpr int64_t kCifar10RecordBytes = 1 + 3 * 32 * 32;
constexpr int64_t kCifar10Classes = 10;

struct Cifar10Set {
  int64_t count = 0;
  std::vector<uint8_t> pixels;  // count x 3 x 32 x 32
  std::vector<uint8_t> labels;  // count, each in [0, 10)
};

// Appends the records of one batch file to `out`. Throws IoError naming the file when it is
// missing, its size is not a whole number of records, or a label is not in [0, 10).
void read_cifar10_file(const std::string& path, Cifar10Set& out);

// The train (50000 images) or test (10000 images) split from `dir`: the folder holding the .bin
// files, or the folder that holds the tarball's cifar-10-batches-bin/.
Cifar10Set read_cifar10(const std::string& dir, bool train);

}  // namespace tandem
