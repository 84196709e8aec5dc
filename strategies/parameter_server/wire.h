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

// One tensor as it came off the wire; `data` points into the message.
struct WireTensor {
  std::string_view name;
  std::string_view dtype;  // "f32", "f64", "i64"
  std::vector<int64_t> shape;
  int64_t byte_length = 0;
  std::string_view data;
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

// Why `t` does not fit `expected` (dtype and shape), or nullopt. Call after check_wire_tensor.
std::optional<std::string> check_matches(const WireTensor& t, const Tensor& expected,
                                         std::string_view what);

// A contiguous CPU tensor holding a copy of a tensor that passed check_wire_tensor.
Tensor tensor_from_wire(const WireTensor& t);

// "[784, 512]"
std::string shape_string(const std::vector<int64_t>& shape);

}  // namespace tandem
