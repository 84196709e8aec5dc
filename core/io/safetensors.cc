#include "core/io/safetensors.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "core/base/error.h"
#include "core/io/bounded_json.h"
#include "core/io/file_io.h"

namespace tandem {
namespace {

constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // the reference reader's limit

const char* st_dtype(DType t) {
  switch (t) {
    case DType::kF32:
      return "F32";
    case DType::kF64:
      return "F64";
    case DType::kF16:
      return "F16";
    case DType::kBF16:
      return "BF16";
    case DType::kI32:
      return "I32";
    case DType::kI64:
      return "I64";
    case DType::kU8:
      return "U8";
  }
  return "?";
}

bool parse_st_dtype(const std::string& s, DType* out) {
  static const std::map<std::string, DType> m = {
      {"F32", DType::kF32}, {"F64", DType::kF64}, {"F16", DType::kF16}, {"BF16", DType::kBF16},
      {"I32", DType::kI32}, {"I64", DType::kI64}, {"U8", DType::kU8},   {"BOOL", DType::kU8}};
  auto it = m.find(s);
  if (it == m.end()) return false;
  *out = it->second;
  return true;
}

std::vector<std::pair<std::string, std::string>> in_order(
    const std::map<std::string, std::string>& metadata) {
  return {metadata.begin(), metadata.end()};
}

}  // namespace

const Tensor* SafetensorsFile::find(const std::string& name) const {
  for (const auto& [n, t] : tensors)
    if (n == name) return &t;
  return nullptr;
}

SafetensorsWriter::SafetensorsWriter(
    const NamedTensors& tensors, const std::vector<std::pair<std::string, std::string>>& metadata,
    const std::string& what) {
  // nlohmann::ordered_json keeps our order, so the same tensors give the same bytes.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json md = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) md[k] = v;
    header["__metadata__"] = std::move(md);
  }
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    TANDEM_CHECK(t.defined(), what, ": tensor '", name, "' is undefined");
    TANDEM_CHECK(name != "__metadata__" && header.find(name) == header.end(), what,
                 ": tensor name '", name, "' is reserved or used twice");
    data_.push_back(t.contiguous().to(Device::cpu()));  // device tensors: saved from a host copy
    const uint64_t nbytes = static_cast<uint64_t>(t.numel()) * dtype_size(t.dtype());
    header[name] = {{"dtype", st_dtype(t.dtype())},
                    {"shape", t.shape()},
                    {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
  }
  std::string json = header.dump();
  json.append((8 - json.size() % 8) % 8, ' ');
  header_.assign(8, '\0');
  for (int i = 0; i < 8; ++i)
    header_[i] = static_cast<char>((uint64_t{json.size()} >> (8 * i)) & 0xff);
  header_ += json;
}

std::vector<std::string_view> SafetensorsWriter::pieces() const {
  std::vector<std::string_view> out{header_};
  for (const Tensor& t : data_)
    out.emplace_back(static_cast<const char*>(t.raw_data()),
                     static_cast<size_t>(t.numel()) * dtype_size(t.dtype()));
  return out;
}

std::string safetensors_serialize(const NamedTensors& tensors,
                                  const std::map<std::string, std::string>& metadata) {
  const SafetensorsWriter writer(tensors, in_order(metadata));  // the pieces point into it
  std::string out;
  for (std::string_view piece : writer.pieces()) out.append(piece);
  return out;
}

namespace {

// One tensor's header entry, checked: its dtype, a shape whose element and byte counts fit in 64
// bits, and data_offsets inside the data that hold exactly its bytes.
struct Entry {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin, end;
};

Entry parse_entry(const std::string& name, const nlohmann::json& e, uint64_t data_len,
                  const std::string& what) {
  const std::string shown = name_excerpt(name);  // names in messages are cut short
  TANDEM_CHECK_T(
      IoError,
      e.is_object() && e.contains("dtype") && e.contains("shape") && e.contains("data_offsets"),
      what, ": tensor '", shown, "' needs dtype, shape and data_offsets");
  Entry en{name, DType::kF32, {}, 0, 0};
  TANDEM_CHECK_T(
      IoError, e["dtype"].is_string() && parse_st_dtype(e["dtype"].get<std::string>(), &en.dtype),
      what, ": tensor '", shown, "' has an unsupported dtype ", json_excerpt(e["dtype"]));
  TANDEM_CHECK_T(IoError, e["shape"].is_array(), what, ": tensor '", shown,
                 "': shape is not a list");
  // Checked products: a crafted shape must not wrap around to a small element count, and with a
  // 0 size among them the others' product (the strides) must still fit.
  std::string dims;
  int64_t numel = 1, extent = 1;
  bool overflow = false;
  for (const auto& d : e["shape"]) {
    TANDEM_CHECK_T(IoError, d.is_number_unsigned(), what, ": tensor '", shown, "': bad shape (",
                   json_excerpt(d), " where a size belongs)");
    const uint64_t size = d.get<uint64_t>();
    dims += (dims.empty() ? "" : ", ") + std::to_string(size);
    overflow =
        overflow || size > static_cast<uint64_t>(INT64_MAX) ||
        __builtin_mul_overflow(numel, static_cast<int64_t>(size), &numel) ||
        __builtin_mul_overflow(extent, std::max<int64_t>(static_cast<int64_t>(size), 1), &extent);
    if (!overflow) en.shape.push_back(static_cast<int64_t>(size));
  }
  TANDEM_CHECK_T(IoError, !overflow, what, ": tensor '", shown, "': shape [", name_excerpt(dims),
                 "] has more elements than fit in 64 bits");
  int64_t expect = 0;
  TANDEM_CHECK_T(
      IoError, !__builtin_mul_overflow(numel, static_cast<int64_t>(dtype_size(en.dtype)), &expect),
      what, ": tensor '", shown, "': shape [", name_excerpt(dims), "] of ",
      e["dtype"].get<std::string>(), " is more than 2^63 bytes");
  const auto& off = e["data_offsets"];
  TANDEM_CHECK_T(IoError,
                 off.is_array() && off.size() == 2 && off[0].is_number_unsigned() &&
                     off[1].is_number_unsigned(),
                 what, ": tensor '", shown, "': data_offsets must be [begin, end]");
  en.begin = off[0].get<uint64_t>();
  en.end = off[1].get<uint64_t>();
  TANDEM_CHECK_T(IoError, en.begin <= en.end && en.end <= data_len, what, ": tensor '", shown,
                 "': data_offsets [", en.begin, ", ", en.end, "] outside the ", data_len,
                 " data bytes");
  TANDEM_CHECK_T(IoError, en.end - en.begin == static_cast<uint64_t>(expect), what, ": tensor '",
                 shown, "' has ", en.end - en.begin, " bytes, expected ", expect, " for shape ",
                 shape_str(en.shape));
  return en;
}

// Offsets must tile [0, data_len) exactly; sorts the entries into file order (by data offset).
void check_tiling(std::vector<Entry>& entries, uint64_t data_len, const std::string& what) {
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t pos = 0;
  for (const Entry& e : entries) {
    TANDEM_CHECK_T(IoError, e.begin == pos, what, ": tensor '", name_excerpt(e.name),
                   "' starts at byte ", e.begin, ", expected ", pos,
                   " (gap or overlap in data_offsets)");
    pos = e.end;
  }
  TANDEM_CHECK_T(IoError, pos == data_len, what, ": ", data_len - pos,
                 " trailing bytes after the last tensor");
}

}  // namespace

SafetensorsFile safetensors_parse(const std::string& bytes, const std::string& what) {
  TANDEM_CHECK_T(IoError, bytes.size() >= 8, what, ": not a safetensors file (", bytes.size(),
                 " bytes, expected at least an 8-byte header length)");
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i)
    n |= static_cast<uint64_t>(static_cast<unsigned char>(bytes[i])) << (8 * i);
  TANDEM_CHECK_T(IoError, n <= kMaxHeaderBytes, what, ": safetensors header length ", n,
                 " exceeds the 100 MB limit");
  TANDEM_CHECK_T(IoError, 8 + n <= bytes.size(), what, ": truncated: header of ", n,
                 " bytes but the file has ", bytes.size());
  nlohmann::json header;
  std::string problem;
  TANDEM_CHECK_T(IoError,
                 parse_json_bounded(std::string_view(bytes).substr(8, n), &header, &problem), what,
                 ": safetensors header is not valid JSON: ", problem);
  TANDEM_CHECK_T(IoError, header.is_object(), what, ": safetensors header is not a JSON object");
  const uint64_t data_start = 8 + n;
  const uint64_t data_len = bytes.size() - data_start;
  SafetensorsFile out;
  std::vector<Entry> entries;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() != "__metadata__") {
      entries.push_back(parse_entry(it.key(), *it, data_len, what));
      continue;
    }
    TANDEM_CHECK_T(IoError, it->is_object(), what, ": __metadata__ must be an object");
    for (auto m = it->begin(); m != it->end(); ++m) {
      TANDEM_CHECK_T(IoError, m->is_string(), what, ": __metadata__ value '", name_excerpt(m.key()),
                     "' is not a string");
      out.metadata[m.key()] = m->get<std::string>();
    }
  }
  check_tiling(entries, data_len, what);
  for (const auto& e : entries) {
    Tensor t = empty(e.shape, e.dtype);
    if (e.end > e.begin)
      std::memcpy(t.raw_data(), bytes.data() + data_start + e.begin, e.end - e.begin);
    out.tensors.emplace_back(e.name, t);
  }
  return out;
}

void safetensors_save(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata) {
  write_file_atomic(path, SafetensorsWriter(tensors, in_order(metadata), path).pieces());
}

SafetensorsFile safetensors_load(const std::string& path) {
  return safetensors_parse(read_file(path, "a safetensors file"), path);
}

}  // namespace tandem
