// Whole-file I/O shared by checkpoints, safetensors files, traces and the files `tandem submit`
// renders (the job token among them): reads with a size cap, and writes that a crash leaves either
// complete or absent.
//
// The decision: a write goes to a temporary file in the destination's own directory (so the rename
// stays on one file system), is fsynced, renamed over the destination, and then the directory is
// fsynced so that the rename itself survives a power cut. Every failure throws IoError naming the
// file.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tandem {

// Reads a whole regular file; `kind` says what was expected ("a safetensors file"). A device, pipe
// or socket is refused (/dev/zero never ends), and so is a file larger than `max_bytes` (0: this
// machine's physical memory), before anything is read.
std::string read_file(const std::string& path, const char* kind = "a regular file",
                      uint64_t max_bytes = 0);

// Creates path (which must not exist) with `mode`, writes the pieces in order, fsyncs and closes
// it. A mode without group or other bits is set explicitly as well, so that an inherited default
// ACL cannot widen it.
void write_file_synced(const std::string& path, const std::vector<std::string_view>& pieces,
                       mode_t mode = 0644);

// fsyncs a directory, making the entries created or renamed in it durable.
void fsync_dir(const std::string& dir);

// Writes the pieces, in order, to path atomically: temporary file in the same directory, fsync,
// rename, fsync of the directory. Pass mode 0600 for a secret (it has that mode from the moment it
// exists).
void write_file_atomic(const std::string& path, const std::vector<std::string_view>& pieces,
                       mode_t mode = 0644);
inline void write_file_atomic(const std::string& path, std::string_view data, mode_t mode = 0644) {
  write_file_atomic(path, std::vector<std::string_view>{data}, mode);
}

}  // namespace tandem
