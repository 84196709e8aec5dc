#include "strategies/parameter_server/wire.h"

#include <cstring>

#include "core/base/error.h"

namespace tandem {
namespace {

constexpr int kMaxDims = 8;

// A name as it appears in a reason: quoted, cut short, with no control characters.
std::string quoted(std::string_view name) {
  std::string s;
  for (char c : name.substr(0, 80)) s.push_back(static_cast<unsigned char>(c) < 32 ? '?' : c);
  if (name.size() > 80) s += "...";
  return "'" + s + "'";
}

}  // namespace

std::optional<DType> wire_dtype(std::string_view name) {
  if (name == "f32") return DType::kF32;
  if (name == "f64") return DType::kF64;
  if (name == "i64") return DType::kI64;
  return std::nullopt;
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

std::optional<std::string> check_wire_tensor(const WireTensor& t, int64_t max_bytes,
                                             std::string_view what) {
  const std::string who = str(what, " ", quoted(t.name));
  if (t.name.empty()) return str(what, " without a name");
  std::optional<DType> dtype = wire_dtype(t.dtype);
  if (!dtype) return str(who, ": dtype ", quoted(t.dtype), " is not one of f32, f64, i64");
  if (t.shape.size() > kMaxDims)
    return str(who, ": ", t.shape.size(), " dimensions, more than the limit of ", kMaxDims);
  int64_t numel = 1;
  for (int64_t d : t.shape) {
    if (d < 0) return str(who, ": shape ", shape_string(t.shape), " has a negative dimension");
    if (__builtin_mul_overflow(numel, d, &numel))
      return str(who, ": shape ", shape_string(t.shape), " has too many elements");
  }
  int64_t bytes = 0;
  if (__builtin_mul_overflow(numel, static_cast<int64_t>(dtype_size(*dtype)), &bytes) ||
      bytes > max_bytes)
    return str(who, ": shape ", shape_string(t.shape), " of ", t.dtype,
               " is larger than the message limit of ", max_bytes, " bytes");
  if (t.byte_length != bytes)
    return str(who, ": byte_length ", t.byte_length, " does not match shape ",
               shape_string(t.shape), " of ", t.dtype, " (", bytes, " bytes)");
  if (static_cast<int64_t>(t.data.size()) != t.byte_length)
    return str(who, ": carries ", t.data.size(), " bytes of data but byte_length says ",
               t.byte_length);
  return std::nullopt;
}

std::optional<std::string> check_matches(const WireTensor& t, const Tensor& expected,
                                         std::string_view what) {
  const std::string who = str(what, " ", quoted(t.name));
  if (wire_dtype(t.dtype) != expected.dtype())
    return str(who, ": dtype ", t.dtype, " but the variable is ", dtype_name(expected.dtype()));
  if (t.shape != expected.shape())
    return str(who, ": shape ", shape_string(t.shape), " but the variable is ",
               shape_string(expected.shape()));
  return std::nullopt;
}

Tensor tensor_from_wire(const WireTensor& t) {
  std::optional<DType> dtype = wire_dtype(t.dtype);
  TANDEM_ASSERT(dtype.has_value(), "tensor_from_wire before check_wire_tensor");
  Tensor out = empty(Shape(t.shape.begin(), t.shape.end()), *dtype);
  if (!t.data.empty()) std::memcpy(out.raw_data(), t.data.data(), t.data.size());
  return out;
}

}  // namespace tandem
