// Fuzz target: a parameter-server shard's calls (PsShard, without network), in any order with any
// messages. The input is a configuration byte, then up to 48 calls: a byte naming the call, then
// its request(s) as length-prefixed ps.proto messages (Restore and Push: a count, then that many).
// Every call must answer a status -- nothing may throw or crash -- and waits are cut to 0 ms.
#include <google/protobuf/stubs/logging.h>

#include <cstdlib>
#include <memory>

#include "core/optim/adam.h"
#include "core/optim/sgd.h"
#include "strategies/parameter_server/ps_shard.h"
#include "tests/fuzz/fuzz_input.h"

namespace {

// Inputs that are not valid protobuf are the point; protobuf's complaints about them are noise.
const bool kQuietProtobuf = [] {
  google::protobuf::SetLogHandler(nullptr);
  return true;
}();

template <typename Message>
Message parse(tandem::fuzz::FuzzInput& in) {
  Message m;
  const std::string_view bytes = in.bytes();
  if (!m.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) m.Clear();
  return m;
}

// The messages of a stream the call receives: a count (0..7), then the messages.
template <typename Message>
std::vector<Message> parse_stream(tandem::fuzz::FuzzInput& in) {
  std::vector<Message> out(in.byte() % 8);
  for (Message& m : out) m = parse<Message>(in);
  return out;
}

template <typename Message>
std::function<bool(Message*)> reader(const std::vector<Message>& stream) {
  auto next = std::make_shared<size_t>(0);
  return [&stream, next](Message* m) {
    if (*next == stream.size()) return false;
    *m = stream[(*next)++];
    return true;
  };
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tandem;
  fuzz::FuzzInput in(data, size);
  const uint8_t setup = in.byte();
  PsServerOptions o;
  o.mode = setup & 1 ? PsMode::kAsync : PsMode::kSync;
  o.max_staleness = (setup >> 1) & 3;
  o.max_message_bytes = 64 << ((setup >> 3) & 7);  // 64 B .. 8 KiB: streams of many messages
  o.num_shards = 1;
  const bool adam = setup & 0x40;
  o.make_optimizer = [adam](const NamedTensors& params) -> std::unique_ptr<Optimizer> {
    if (adam) return std::make_unique<Adam>(params, AdamOptions{.lr = 0.01});
    return std::make_unique<Sgd>(params, SgdOptions{.lr = 0.5, .momentum = 0.9});
  };
  PsShard shard(o);
  auto never = [] { return false; };
  for (int call = 0; call < 48 && !in.empty(); ++call) {
    switch (in.byte() % 8) {
      case 0: {
        ps::RegisterResponse resp;
        shard.register_worker(parse<ps::RegisterRequest>(in), &resp);
        break;
      }
      case 1: {
        const auto stream = parse_stream<ps::RestoreRequest>(in);
        shard.restore(reader(stream));
        break;
      }
      case 2: {
        auto req = parse<ps::PullRequest>(in);
        req.set_timeout_ms(0);
        shard.pull(req, never, [](const ps::PullResponse&) { return true; });
        break;
      }
      case 3: {
        const auto stream = parse_stream<ps::PushRequest>(in);
        ps::PushResponse resp;
        shard.push(reader(stream), &resp);
        break;
      }
      case 4: {
        auto req = parse<ps::BarrierRequest>(in);
        req.set_timeout_ms(0);
        ps::BarrierResponse resp;
        shard.barrier(req, never, &resp);
        break;
      }
      case 5:
        shard.save([](const ps::SaveResponse&) { return true; });
        break;
      case 6:
        shard.abort(parse<ps::AbortRequest>(in));
        break;
      case 7:
        shard.done(parse<ps::DoneRequest>(in));
        break;
    }
  }
  return 0;
}
