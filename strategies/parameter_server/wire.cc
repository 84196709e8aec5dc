#include "strategies/parameter_server/wire.h"

#include <algorithm>
#include <climits>
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

namespace {

// The checks a whole tensor and a piece share: a name, a known dtype, at most kMaxDims
// non-negative sizes whose product and byte size fit in int64. Sets *bytes to that size.
std::optional<std::string> check_declared(const WireTensor& t, std::string_view what,
                                          int64_t* bytes) {
  const std::string who = str(what, " ", quoted(t.name));
  if (t.name.empty()) return str(what, " without a name");
  std::optional<DType> dtype = wire_dtype(t.dtype);
  if (!dtype) return str(who, ": dtype ", quoted(t.dtype), " is not one of f32, f64, i64");
  if (t.shape.size() > kMaxDims)
    return str(who, ": ", t.shape.size(), " dimensions, more than the limit of ", kMaxDims);
  int64_t numel = 1, extent = 1;  // extent: the product without 0 sizes, which strides reach
  for (int64_t d : t.shape) {
    if (d < 0) return str(who, ": shape ", shape_string(t.shape), " has a negative dimension");
    if (__builtin_mul_overflow(numel, d, &numel) ||
        __builtin_mul_overflow(extent, std::max<int64_t>(d, 1), &extent))
      return str(who, ": shape ", shape_string(t.shape), " has too many elements");
  }
  if (__builtin_mul_overflow(numel, static_cast<int64_t>(dtype_size(*dtype)), bytes))
    return str(who, ": shape ", shape_string(t.shape), " has too many elements");
  return std::nullopt;
}

std::string byte_length_mismatch(const WireTensor& t, std::string_view what, int64_t bytes) {
  return str(what, " ", quoted(t.name), ": byte_length ", t.byte_length, " does not match shape ",
             shape_string(t.shape), " of ", t.dtype, " (", bytes, " bytes)");
}

}  // namespace

std::optional<std::string> check_wire_tensor(const WireTensor& t, int64_t max_bytes,
                                             std::string_view what) {
  const std::string who = str(what, " ", quoted(t.name));
  int64_t bytes = 0;
  if (auto bad = check_declared(t, what, &bytes)) return bad;
  if (bytes > max_bytes)
    return str(who, ": shape ", shape_string(t.shape), " of ", t.dtype,
               " is larger than the message limit of ", max_bytes,
               " bytes (strategy.max_message_mb)");
  if (t.byte_length != bytes) return byte_length_mismatch(t, what, bytes);
  if (static_cast<int64_t>(t.data.size()) != t.byte_length)
    return str(who, ": carries ", t.data.size(), " bytes of data but byte_length says ",
               t.byte_length);
  if (t.offset != 0) return str(who, ": offset ", t.offset, " in a whole tensor");
  return std::nullopt;
}

std::optional<std::string> check_wire_piece(const WireTensor& t, int64_t max_piece_bytes,
                                            std::string_view what) {
  int64_t bytes = 0;
  if (auto bad = check_declared(t, what, &bytes)) return bad;
  if (t.byte_length != bytes) return byte_length_mismatch(t, what, bytes);
  const std::string who = str(what, " ", quoted(t.name));
  const int64_t size = static_cast<int64_t>(t.data.size());
  // One element always fits: plan_messages gives a message at least one, whatever the limit.
  if (size > max_piece_bytes && size > static_cast<int64_t>(dtype_size(*wire_dtype(t.dtype))))
    return str(who, ": a piece of ", size, " bytes is larger than the message limit of ",
               max_piece_bytes, " bytes (strategy.max_message_mb)");
  if (t.offset < 0 || t.offset > t.byte_length || size > t.byte_length - t.offset)
    return str(who, ": bytes [", t.offset, ", ", t.offset, " + ", size,
               ") lie outside its byte_length ", t.byte_length);
  return std::nullopt;
}

int64_t wire_overhead(std::string_view name, size_t dims) {
  // Per field at most a 1-byte tag and a 10-byte varint; a Tensor has 6 fields plus the shape's
  // elements and the Tensor's own length prefix in the message.
  return static_cast<int64_t>(name.size() + 4) + 11 * (8 + static_cast<int64_t>(dims));
}

std::vector<std::vector<WirePiece>> plan_messages(const std::vector<WireItem>& items,
                                                  int64_t max_message_bytes) {
  std::vector<std::vector<WirePiece>> out(1);
  int64_t used = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    const WireItem& it = items[i];
    TANDEM_ASSERT(it.item_bytes > 0 && it.bytes % it.item_bytes == 0, "bad wire item ", i);
    for (int64_t offset = 0;;) {
      const int64_t remaining = it.bytes - offset;
      const int64_t room = max_message_bytes - used - it.overhead_bytes;
      int64_t length = std::min(remaining, std::max<int64_t>(room, 0));
      length -= length % it.item_bytes;
      const bool fits = room >= 0 && (length > 0 || remaining == 0);
      if (!fits) {
        if (!out.back().empty()) {  // no room for this piece here: start the next message
          out.emplace_back();
          used = 0;
          continue;
        }
        length = std::min(remaining, it.item_bytes);  // a message always takes one element
      }
      out.back().push_back({i, offset, length});
      used += length + it.overhead_bytes;
      offset += length;
      if (offset == it.bytes) break;  // an empty item, too, gets its one piece
    }
  }
  if (out.size() > 1 && out.back().empty()) out.pop_back();
  return out;
}

WireAssembler::WireAssembler(int64_t max_piece_bytes, std::string what)
    : max_piece_bytes_(max_piece_bytes), what_(std::move(what)) {}

std::optional<std::string> WireAssembler::add(const WireTensor& piece) {
  if (auto bad = check_wire_piece(piece, max_piece_bytes_, what_)) return bad;
  if (!open_) {
    if (piece.offset != 0)
      return str(what_, " ", quoted(piece.name), ": its first piece starts at byte ", piece.offset,
                 ", expected 0");
    open_ = Assembled{
        std::string(piece.name), std::string(piece.dtype), piece.shape, piece.byte_length, {}};
    // Room for the whole tensor up front, up to 1 GiB: past that the bytes must arrive first.
    open_->data.reserve(static_cast<size_t>(std::min<int64_t>(piece.byte_length, 1 << 30)));
  } else if (piece.name != open_->name || piece.dtype != open_->dtype ||
             piece.shape != open_->shape || piece.byte_length != open_->byte_length ||
             piece.offset != static_cast<int64_t>(open_->data.size())) {
    return str(what_, " ", quoted(open_->name), ": incomplete (", open_->data.size(), " of ",
               open_->byte_length, " bytes) when a piece of ", quoted(piece.name), " at byte ",
               piece.offset, " arrived");
  }
  open_->data.append(piece.data);
  if (static_cast<int64_t>(open_->data.size()) == open_->byte_length) {
    done_.push_back(std::move(*open_));
    open_.reset();
  }
  return std::nullopt;
}

std::optional<std::string> WireAssembler::finish() const {
  if (!open_) return std::nullopt;
  return str(what_, " ", quoted(open_->name), ": the stream ended after ", open_->data.size(),
             " of its ", open_->byte_length, " bytes");
}

WireTensor WireAssembler::tensor(size_t i) const {
  const Assembled& a = done_.at(i);
  WireTensor t;
  t.name = a.name;
  t.dtype = a.dtype;
  t.shape = a.shape;
  t.byte_length = a.byte_length;
  t.data = a.data;
  return t;
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
