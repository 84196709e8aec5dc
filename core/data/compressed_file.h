// Whole-file reads for data sets, gunzipped when the bytes start with the gzip magic 1f 8b (the
// file name is not consulted: MNIST mirrors ship both forms under either name). Reads straight
// into one buffer of the file's size and inflates into one buffer of the size the gzip trailer
// announces: Fashion-MNIST's 26 MB of training images take one zlib pass and no copies.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tandem {

// The file's bytes, gunzipped if gzip (concatenated members are joined, as gzip -d does). Throws
// IoError naming the file when it cannot be read, or the gzip stream is corrupt or truncated.
std::vector<uint8_t> read_maybe_gzip(const std::string& path);

}  // namespace tandem
