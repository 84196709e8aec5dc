// Fuzz target: the parameter server's wire decoding. The input is a piece limit (u32) and a
// sequence of length-prefixed ps.Tensor messages, fed as one stream to a WireAssembler. Whatever
// it accepts must pass check_wire_tensor and convert; and the accepted tensors, split again into
// messages of a size from the input (plan_messages, fill_pieces) and reassembled, must come back
// byte for byte.
#include <google/protobuf/stubs/logging.h>

#include <cstdlib>

#include "strategies/parameter_server/proto_tensor.h"
#include "tests/fuzz/fuzz_input.h"

namespace {

// Inputs that are not valid protobuf are the point; protobuf's complaints about them are noise.
const bool kQuietProtobuf = [] {
  google::protobuf::SetLogHandler(nullptr);
  return true;
}();

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tandem;
  fuzz::FuzzInput in(data, size);
  const int64_t max_piece = 1 + in.u32() % (1 << 16);
  const int64_t max_message = 1 + in.u32() % (1 << 16);
  WireAssembler assembler(max_piece, "fuzz");
  bool refused = false;
  for (int i = 0; i < 64 && !in.empty() && !refused; ++i) {
    ps::Tensor m;
    const std::string_view bytes = in.bytes();
    if (!m.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) continue;
    refused = assembler.add(wire_view(m)).has_value();
  }
  if (refused || assembler.finish()) return 0;
  std::vector<OutTensor> out;
  for (size_t i = 0; i < assembler.size(); ++i) {
    const WireTensor t = assembler.tensor(i);
    if (check_wire_tensor(t, INT64_MAX, "fuzz")) std::abort();
    Tensor copy = tensor_from_wire(t);
    if (copy.numel() * static_cast<int64_t>(dtype_size(copy.dtype())) != t.byte_length)
      std::abort();
    OutTensor o;
    o.name = std::string(t.name);
    o.dtype = copy.dtype();
    o.shape = t.shape;
    o.data = t.data;
    out.push_back(std::move(o));
  }
  std::vector<ps::PushRequest> stream;
  fill_pieces(out, max_message, [&](size_t k, size_t) {
    if (k == stream.size()) stream.emplace_back();
    return stream[k].add_grads();
  });
  WireAssembler again(max_message, "fuzz (again)");
  for (const ps::PushRequest& m : stream) {
    int64_t bytes = 0;
    for (const ps::Tensor& t : m.grads()) bytes += static_cast<int64_t>(t.data().size());
    // Over the limit only as a single piece: the one element a message always gets.
    if (bytes > max_message && (m.grads_size() > 1 || bytes > 8)) std::abort();
    for (const ps::Tensor& t : m.grads())
      if (again.add(wire_view(t))) std::abort();
  }
  if (again.finish() || again.size() != assembler.size()) std::abort();
  for (size_t i = 0; i < again.size(); ++i)
    if (again.tensor(i).name != assembler.tensor(i).name ||
        again.tensor(i).data != assembler.tensor(i).data ||
        again.tensor(i).shape != assembler.tensor(i).shape)
      std::abort();
  return 0;
}
