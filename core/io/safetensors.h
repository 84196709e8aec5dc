// The safetensors format (u64 LE header length, JSON header, raw little-endian data), exactly as
// the reference implementation reads it: offsets tile the data with no gaps or overlaps, sizes
// match numel x dtype size, header at most 100 MB and nested at most 64 levels
// (core/io/bounded_json.h), element counts checked for overflow. Used for checkpoints,
// `model.init_from`, and to exchange tensors with PyTorch in tests.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor/tensor.h"

namespace tandem {

struct SafetensorsFile {
  std::vector<std::pair<std::string, Tensor>> tensors;  // in file order
  std::map<std::string, std::string> metadata;
  const Tensor* find(const std::string& name) const;
};

// Serialises tensors (CPU; any dtype) in the given order. The header is padded with spaces to a
// multiple of 8 bytes.
std::string safetensors_serialize(const std::vector<std::pair<std::string, Tensor>>& tensors,
                                  const std::map<std::string, std::string>& metadata = {});
// Parses bytes; `what` names the source in errors (usually the file path).
SafetensorsFile safetensors_parse(const std::string& bytes, const std::string& what);

// Whole-file helpers. save writes to a temporary file, fsyncs and renames it into place.
void safetensors_save(const std::string& path,
                      const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});
SafetensorsFile safetensors_load(const std::string& path);

// Reads a whole regular file, throwing IoError naming it; `kind` says what was expected ("a
// safetensors file"). A device, pipe or socket is refused (/dev/zero never ends), and so is a file
// larger than `max_bytes` (0: this machine's physical memory), before anything is read.
std::string read_file(const std::string& path, const char* kind = "a regular file",
                      uint64_t max_bytes = 0);
// Writes data to path atomically: temp file in the same directory, fsync, rename, fsync dir.
void write_file_atomic(const std::string& path, const std::string& data);

}  // namespace tandem
