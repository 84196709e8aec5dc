// Whole-file reads for data sets, gunzipped when the bytes start with the gzip magic 1f 8b (the
// file name is not consulted: MNIST mirrors ship both forms under either name). Reads straight
// into one buffer of the file's size and inflates into one buffer of the size the gzip trailer
// announces: Fashion-MNIST's 26 MB of training images take one zlib pass and no copies.
//
// The one decision: what gzip data may decompress to is capped by the format inside it, not by a
// fixed number. A reader passes a SizeLimit that looks at the first decompressed bytes (an IDX
// header declares its payload) and answers the most the rest may hold; inflating past it is an
// IoError before the excess is in memory, so a 256 KiB file cannot expand to gigabytes.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace tandem {

struct SizeCap {
  uint64_t bytes = UINT64_MAX;  // the most the decompressed data may hold
  std::string reason;           // for the error: "its IDX header declares 9 (dimensions 1)"
};

struct SizeLimit {
  // How many decompressed bytes `cap` wants to see (it gets fewer when the data is shorter, and is
  // not called at all when the data ends first).
  size_t header_bytes = 0;
  // May throw IoError when the header already shows the data is not of the format. Null: no cap.
  std::function<SizeCap(const uint8_t* head, size_t n)> cap;
};

// zlib's avail_in is 32 bits: input goes to inflate in pieces of at most this many bytes.
inline constexpr size_t kInflateInputChunk = size_t{1} << 30;

// The file's bytes, gunzipped if gzip (concatenated members are joined, as gzip -d does). Throws
// IoError naming the file when it is not a regular file or cannot be read, or the gzip stream is
// corrupt, truncated or decompresses past `limit`.
std::vector<uint8_t> read_maybe_gzip(const std::string& path, const SizeLimit& limit = {});

// The decompressed bytes of gzip data `in` (one or more members, then optional zero padding);
// `what` names it in errors. `input_chunk` is for tests.
std::vector<uint8_t> gunzip(const std::vector<uint8_t>& in, const std::string& what,
                            const SizeLimit& limit = {}, size_t input_chunk = kInflateInputChunk);

}  // namespace tandem
