// The safetensors format (u64 LE header length, JSON header, raw little-endian data), exactly as
// the reference implementation reads it: offsets tile the data with no gaps or overlaps, sizes
// match numel x dtype size, header at most 100 MB and nested at most 64 levels
// (core/io/bounded_json.h), element counts checked for overflow. Used for checkpoints,
// `model.init_from`, and to exchange tensors with PyTorch in tests.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/io/file_io.h"  // read_file and write_file_atomic, which most users also call
#include "core/tensor/named_tensors.h"
#include "core/tensor/tensor.h"

namespace tandem {

struct SafetensorsFile {
  NamedTensors tensors;  // in file order
  std::map<std::string, std::string> metadata;
  const Tensor* find(const std::string& name) const;
};

// A safetensors file laid out for a streaming write: its header, then each tensor's bytes read
// from a contiguous CPU tensor -- the tensor itself where it is one, else a host copy -- so that a
// save never holds a serialized copy of the whole file (which would double a large save's memory
// and, on a VM with slow page faults, its time). `metadata` goes under __metadata__ in the given
// order, and is left out when empty. The one writer of safetensors headers in tandem.
class SafetensorsWriter {
 public:
  // Throws Error naming `what` on a duplicate tensor name or one called __metadata__.
  SafetensorsWriter(const NamedTensors& tensors,
                    const std::vector<std::pair<std::string, std::string>>& metadata = {},
                    const std::string& what = "safetensors");
  // The file's bytes: the header, then each tensor's. Valid while this writer lives.
  std::vector<std::string_view> pieces() const;

 private:
  std::string header_;  // u64 LE length, then the JSON padded with spaces to a multiple of 8
  std::vector<Tensor> data_;
};

// Serialises tensors (CPU; any dtype) in the given order. The header is padded with spaces to a
// multiple of 8 bytes.
std::string safetensors_serialize(const NamedTensors& tensors,
                                  const std::map<std::string, std::string>& metadata = {});
// Parses bytes; `what` names the source in errors (usually the file path).
SafetensorsFile safetensors_parse(const std::string& bytes, const std::string& what);

// Whole-file helpers. save writes atomically (write_file_atomic, core/io/file_io.h).
void safetensors_save(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata = {});
SafetensorsFile safetensors_load(const std::string& path);

}  // namespace tandem
