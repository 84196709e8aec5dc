// Checks on tensors that arrive from the network, before their bytes are used. A parameter-server
// message is untrusted input: a worker of another build, a bug, or anything that holds the token
// may send a tensor whose dtype, shape and byte length disagree with each other, with the data, or
// with the variable it names. Each check answers a one-line reason instead of throwing, so the
// server can refuse the call (INVALID_ARGUMENT) and keep serving.
//
// Independent of protobuf on purpose: the checks are unit-tested on plain values.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/tensor/tensor.h"

namespace tandem {

// One tensor, or one piece of it, as it came off the wire; `data` points into the message. A
// tensor larger than a message travels as consecutive pieces (ps.proto Tensor.offset): each names
// the whole tensor (dtype, shape, byte_length) and carries bytes [offset, offset + data.size()).
struct WireTensor {
  std::string_view name;
  std::string_view dtype;  // "f32", "f64", "i64"
  std::vector<int64_t> shape;
  int64_t byte_length = 0;  // of the whole tensor
  std::string_view data;
  int64_t offset = 0;
};

// The dtypes the parameter server moves: f32/f64 variables and gradients, i64 optimizer step
// counts. Anything else is refused.
std::optional<DType> wire_dtype(std::string_view name);

// Why `t` is malformed, or nullopt when it is consistent: a known dtype, at most 8 dimensions,
// none negative, the element count without overflow, byte_length = elements x dtype size = the
// size of data, and byte_length <= max_bytes. `what` names the tensor's role in the message
// ("gradient", "parameter") for the reason.
std::optional<std::string> check_wire_tensor(const WireTensor& t, int64_t max_bytes,
                                             std::string_view what);

// As check_wire_tensor for one piece: consistent dtype, shape and byte_length of the whole
// tensor, 0 <= offset, offset + data.size() <= byte_length, and data.size() <= max_piece_bytes
// (or one element, which a message always holds, whatever the limit).
std::optional<std::string> check_wire_piece(const WireTensor& t, int64_t max_piece_bytes,
                                            std::string_view what);

// Why `t` does not fit `expected` (dtype and shape), or nullopt. Call after check_wire_tensor.
std::optional<std::string> check_matches(const WireTensor& t, const Tensor& expected,
                                         std::string_view what);

// A contiguous CPU tensor holding a copy of a tensor that passed check_wire_tensor.
Tensor tensor_from_wire(const WireTensor& t);

// "[784, 512]"
std::string shape_string(const std::vector<int64_t>& shape);

// ---- Streams: a shard's variables in messages of at most a given size.

// One tensor to send: its data size, element size (pieces end at element boundaries) and the
// bytes its name and shape add to a message.
struct WireItem {
  int64_t bytes = 0;
  int64_t item_bytes = 1;
  int64_t overhead_bytes = 0;
};
// Bytes [offset, offset + length) of item `index`.
struct WirePiece {
  size_t index = 0;
  int64_t offset = 0;
  int64_t length = 0;
};
// Bytes a piece adds to a message besides its data (field tags, lengths, offset): a bound.
int64_t wire_overhead(std::string_view name, size_t dims);

// Splits `items`, in order, into messages whose pieces cost (data + overhead) at most
// `max_message_bytes` each -- except a message of a single piece: a message always takes one
// element, whatever the limit. An empty item is one piece of length 0. Concatenating the pieces
// of all messages gives every item whole.
std::vector<std::vector<WirePiece>> plan_messages(const std::vector<WireItem>& items,
                                                  int64_t max_message_bytes);

// Joins the pieces of a stream into whole tensors. The pieces of one tensor arrive in order and
// before the next tensor's; each is checked (check_wire_piece) before its bytes are copied, and
// memory grows with the bytes that arrived, not with what a piece claims. Not thread-safe.
class WireAssembler {
 public:
  WireAssembler(int64_t max_piece_bytes, std::string what);

  // nullopt, or why the piece is refused (the stream is then refused as a whole).
  std::optional<std::string> add(const WireTensor& piece);
  // After the last piece: nullopt when no tensor was left incomplete.
  std::optional<std::string> finish() const;

  size_t size() const { return done_.size(); }
  // Complete tensor i, in arrival order; valid while the assembler lives. Passes
  // check_wire_tensor.
  WireTensor tensor(size_t i) const;

 private:
  struct Assembled {
    std::string name, dtype;
    std::vector<int64_t> shape;
    int64_t byte_length = 0;
    std::string data;
  };
  int64_t max_piece_bytes_;
  std::string what_;
  std::vector<Assembled> done_;
  std::optional<Assembled> open_;  // the tensor whose pieces are arriving
};

}  // namespace tandem
