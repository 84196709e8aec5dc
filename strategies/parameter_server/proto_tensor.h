// Conversions between ps.proto's Tensor message and tandem tensors, for the server and the client
// (both include the generated code; nothing public does).
#pragma once

#include <cstring>

#include "core/tensor/tensor.h"
#include "strategies/parameter_server/ps.pb.h"
#include "strategies/parameter_server/wire.h"

namespace tandem {

// A view of `m` for the checks in wire.h (valid while `m` lives).
inline WireTensor wire_view(const ::tandem::ps::Tensor& m) {
  WireTensor t;
  t.name = m.name();
  t.dtype = m.dtype();
  t.shape.assign(m.shape().begin(), m.shape().end());
  t.byte_length = m.byte_length();
  t.data = m.data();
  return t;
}

// Fills `m` with `name` and the elements of `t` (any layout; copied in row-major order).
inline void to_proto(const std::string& name, const Tensor& t, ::tandem::ps::Tensor* m) {
  Tensor c = t.contiguous();
  m->set_name(name);
  m->set_dtype(dtype_name(c.dtype()));
  m->clear_shape();
  for (int64_t d : c.shape()) m->add_shape(d);
  const int64_t bytes = c.numel() * static_cast<int64_t>(dtype_size(c.dtype()));
  m->set_byte_length(bytes);
  m->mutable_data()->assign(static_cast<const char*>(c.raw_data()), static_cast<size_t>(bytes));
}

// As to_proto for `numel` elements of a contiguous tensor from element `offset`, flattened.
inline void piece_to_proto(const std::string& name, const Tensor& t, int64_t offset, int64_t numel,
                           ::tandem::ps::Tensor* m) {
  const size_t item = dtype_size(t.dtype());
  m->set_name(name);
  m->set_dtype(dtype_name(t.dtype()));
  m->clear_shape();
  m->add_shape(numel);
  m->set_byte_length(numel * static_cast<int64_t>(item));
  m->mutable_data()->assign(static_cast<const char*>(t.raw_data()) + offset * item, numel * item);
}

}  // namespace tandem
