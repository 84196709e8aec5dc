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

#include "core/io/file_io.h"  // read_file and write_file_atomic, which most users also call
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

// Whole-file helpers. save writes atomically (write_file_atomic, core/io/file_io.h).
void safetensors_save(const std::string& path,
                      const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});
SafetensorsFile safetensors_load(const std::string& path);

}  // namespace tandem
