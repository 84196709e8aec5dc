// IDX reading: header, dimension and exact-length checks over the (gunzipped) bytes.
#include "core/data/idx.h"

#include <cstdio>

#include "core/base/error.h"
#include "core/data/compressed_file.h"

namespace tandem {
namespace {

// Beyond the declared size, gzip data may hold this much more: a few stray bytes are then named
// exactly ("2 trailing bytes"), a bomb is stopped at once.
constexpr uint64_t kTrailingSlack = 4096;

uint32_t be32(const uint8_t* b) {
  return static_cast<uint32_t>(b[0]) << 24 | static_cast<uint32_t>(b[1]) << 16 |
         static_cast<uint32_t>(b[2]) << 8 | static_cast<uint32_t>(b[3]);
}

std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

std::string dims_str(const std::vector<int64_t>& dims) {
  std::string s;
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? " x " : "") + std::to_string(dims[i]);
  return s;
}

// Checks the header at the start of `b` (n bytes) and returns the payload size it declares; fills
// *dims. Throws IoError naming the file.
int64_t check_header(const uint8_t* b, size_t n, const std::string& path, uint32_t expected_magic,
                     std::vector<int64_t>* dims) {
  const int64_t ndims = expected_magic & 0xff;
  TANDEM_CHECK_T(IoError, n >= 4, path, ": truncated: expected an IDX header of ", 4 + 4 * ndims,
                 " bytes, found ", n);
  const uint32_t magic = be32(b);
  TANDEM_CHECK_T(IoError, magic == expected_magic, path, ": wrong magic number: expected ",
                 hex32(expected_magic), " (u8, ", ndims, " dimension", ndims == 1 ? "" : "s",
                 "), found ", hex32(magic));
  const size_t header = 4 + 4 * static_cast<size_t>(ndims);
  TANDEM_CHECK_T(IoError, n >= header, path, ": truncated: expected an IDX header of ", header,
                 " bytes, found ", n);
  dims->clear();
  int64_t expected = 1;
  for (int64_t d = 0; d < ndims; ++d) dims->push_back(be32(b + 4 + 4 * d));
  for (int64_t d = 0; d < ndims; ++d) {
    // The count may be zero; every other size must be positive.
    TANDEM_CHECK_T(IoError, d == 0 || (*dims)[d] > 0, path, ": bad dimensions ", dims_str(*dims),
                   ": expected every size after the count to be positive");
    TANDEM_CHECK_T(IoError, !__builtin_mul_overflow(expected, (*dims)[d], &expected), path,
                   ": bad dimensions ", dims_str(*dims), ": expected a payload below 2^63 bytes");
  }
  return expected;
}

}  // namespace

IdxArray read_idx(const std::string& path, uint32_t expected_magic, const std::string& what) {
  const size_t header = 4 + 4 * static_cast<size_t>(expected_magic & 0xff);
  // gzip data may decompress to the header, what it declares, and a little more (reported below
  // as trailing bytes), never to what a crafted stream would expand to.
  SizeLimit limit;
  limit.header_bytes = header;
  limit.cap = [&](const uint8_t* head, size_t n) {
    std::vector<int64_t> dims;
    const int64_t payload = check_header(head, n, path, expected_magic, &dims);
    return SizeCap{header + static_cast<uint64_t>(payload) + kTrailingSlack,
                   str("its IDX header declares ", header + static_cast<uint64_t>(payload),
                       " (dimensions ", dims_str(dims), ")")};
  };
  std::vector<uint8_t> bytes = read_maybe_gzip(path, limit);
  IdxArray a;
  const int64_t expected = check_header(bytes.data(), bytes.size(), path, expected_magic, &a.dims);
  const int64_t found = static_cast<int64_t>(bytes.size() - header);
  TANDEM_CHECK_T(IoError, found >= expected, path, ": truncated: expected ", expected, " bytes of ",
                 what, " after the header (", dims_str(a.dims), "), found ", found);
  TANDEM_CHECK_T(IoError, found == expected, path, ": ", found - expected,
                 " trailing bytes: expected ", expected, " bytes of ", what, " after the header (",
                 dims_str(a.dims), "), found ", found);
  bytes.erase(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(header));  // a memmove
  a.data = std::move(bytes);
  return a;
}

IdxImageSet read_idx_image_set(const std::string& images_path, const std::string& labels_path) {
  IdxArray images = read_idx(images_path, kIdxImagesMagic, "pixels");
  IdxArray labels = read_idx(labels_path, kIdxLabelsMagic, "labels");
  TANDEM_CHECK_T(IoError, images.dims[0] == labels.dims[0], images_path, " holds ", images.dims[0],
                 " images but ", labels_path, " holds ", labels.dims[0],
                 " labels: expected one label per image");
  IdxImageSet s;
  s.count = images.dims[0];
  s.rows = images.dims[1];
  s.cols = images.dims[2];
  s.pixels = std::move(images.data);
  s.labels = std::move(labels.data);
  return s;
}

}  // namespace tandem
