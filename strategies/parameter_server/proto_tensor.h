// Conversions between ps.proto's Tensor message and tandem tensors, for the server and the client
// (both include the generated code; nothing public does), and the splitting of a list of tensors
// into a stream of messages of bounded size (wire.h plan_messages).
#pragma once

#include <functional>
#include <string>
#include <vector>

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
  t.offset = m.offset();
  return t;
}

// A tensor to send: `data` is its bytes in row-major order, kept alive by `keep` (or the caller).
struct OutTensor {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  std::string_view data;
  Tensor keep;
};

// `t` (a CPU tensor in any layout) as an OutTensor named `name`.
inline OutTensor out_tensor(const std::string& name, const Tensor& t) {
  OutTensor o;
  o.keep = t.contiguous();
  o.name = name;
  o.dtype = o.keep.dtype();
  o.shape.assign(o.keep.shape().begin(), o.keep.shape().end());
  o.data = std::string_view(static_cast<const char*>(o.keep.raw_data()),
                            static_cast<size_t>(o.keep.numel()) * dtype_size(o.dtype));
  return o;
}

// Splits `tensors`, in order, into messages of at most max_message_bytes (plan_messages) and
// returns how many; `field(k, t)` returns the Tensor of message k to fill with a piece of tensor t
// (the caller creates message k on first use and picks the repeated field t belongs to).
inline size_t fill_pieces(const std::vector<OutTensor>& tensors, int64_t max_message_bytes,
                          const std::function<::tandem::ps::Tensor*(size_t, size_t)>& field) {
  std::vector<WireItem> items;
  for (const OutTensor& t : tensors)
    items.push_back({static_cast<int64_t>(t.data.size()), static_cast<int64_t>(dtype_size(t.dtype)),
                     wire_overhead(t.name, t.shape.size())});
  const std::vector<std::vector<WirePiece>> plan = plan_messages(items, max_message_bytes);
  for (size_t k = 0; k < plan.size(); ++k) {
    for (const WirePiece& p : plan[k]) {
      const OutTensor& t = tensors[p.index];
      ::tandem::ps::Tensor* m = field(k, p.index);
      m->set_name(t.name);
      m->set_dtype(dtype_name(t.dtype));
      for (int64_t d : t.shape) m->add_shape(d);
      m->set_byte_length(static_cast<int64_t>(t.data.size()));
      m->set_offset(p.offset);
      m->set_data(t.data.data() + p.offset, static_cast<size_t>(p.length));
    }
  }
  return plan.size();
}

}  // namespace tandem
