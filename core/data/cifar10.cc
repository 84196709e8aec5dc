// CIFAR-10 binary batches: whole files read into memory, checked record by record.
#include "core/data/cifar10.h"

#include <filesystem>

#include "core/base/error.h"
#include "core/data/compressed_file.h"

namespace tandem {
namespace {

// The whole data set (50000 training and 10000 test images); a batch file holds 10000.
constexpr int64_t kMaxRecords = 60000;

constexpr const char* kWhereToGet =
    "expected the CIFAR-10 binary version (cifar-10-binary.tar.gz from "
    "https://www.cs.toronto.edu/~kriz/cifar.html, extracted)";

}  // namespace

void read_cifar10_file(const std::string& path, Cifar10Set& out) {
  TANDEM_CHECK_T(IoError, std::filesystem::is_regular_file(path), path, ": no such file; ",
                 kWhereToGet);
  // Plain, or gzipped by a mirror: then it may not decompress past the whole data set.
  SizeLimit limit;
  limit.cap = [](const uint8_t*, size_t) {
    return SizeCap{static_cast<uint64_t>(kMaxRecords * kCifar10RecordBytes),
                   str("a CIFAR-10 file holds at most ", kMaxRecords, " records of ",
                       kCifar10RecordBytes, " bytes")};
  };
  const std::vector<uint8_t> bytes = read_maybe_gzip(path, limit);
  const int64_t size = static_cast<int64_t>(bytes.size());
  TANDEM_CHECK_T(IoError, size > 0, path, ": empty file: expected records of ", kCifar10RecordBytes,
                 " bytes (1 label + 3072 pixels)");
  TANDEM_CHECK_T(IoError, size % kCifar10RecordBytes == 0, path, ": size ", size,
                 " bytes is not a multiple of the ", kCifar10RecordBytes,
                 "-byte record (1 label + 3072 pixels): record ", size / kCifar10RecordBytes,
                 " is truncated to ", size % kCifar10RecordBytes, " bytes");
  const int64_t n = size / kCifar10RecordBytes;
  const int64_t pixels = kCifar10RecordBytes - 1;
  out.pixels.reserve(out.pixels.size() + static_cast<size_t>(n * pixels));
  for (int64_t r = 0; r < n; ++r) {
    const uint8_t* rec = bytes.data() + r * kCifar10RecordBytes;
    const uint8_t label = rec[0];
    TANDEM_CHECK_T(IoError, label < kCifar10Classes, path, ": record ", r, " has label ",
                   static_cast<int>(label), ": expected 0..9");
    out.labels.push_back(label);
    out.pixels.insert(out.pixels.end(), rec + 1, rec + kCifar10RecordBytes);
  }
  out.count += n;
}

Cifar10Set read_cifar10(const std::string& dir, bool train) {
  namespace fs = std::filesystem;
  fs::path root(dir);
  if (!fs::exists(root / "test_batch.bin") && fs::is_directory(root / "cifar-10-batches-bin"))
    root /= "cifar-10-batches-bin";
  std::vector<std::string> files;
  if (train) {
    for (int i = 1; i <= 5; ++i)
      files.push_back((root / ("data_batch_" + std::to_string(i) + ".bin")).string());
  } else {
    files.push_back((root / "test_batch.bin").string());
  }
  Cifar10Set s;
  for (const std::string& f : files) read_cifar10_file(f, s);
  return s;
}

}  // namespace tandem
