// Fuzz target: the rendezvous store's calls with any messages. The store's handlers are gRPC
// callback reactors, which exist only inside a server, so the calls go to one StoreServer of this
// process over loopback. The input is up to 16 calls: a byte naming the call and the token to send
// (right, none, wrong), then the request as a length-prefixed store.proto message. Every answer
// must be OK, INVALID_ARGUMENT or UNAUTHENTICATED (the last exactly when the token is not right),
// and a value Set must read back with Get. Waits are cut to 2 ms; keys written by an input are
// deleted after it, so the store does not grow over a run.
#include <grpcpp/grpcpp.h>

#include <google/protobuf/stubs/logging.h>

#include <cstdlib>
#include <memory>
#include <set>

#include "collectives/store/store.grpc.pb.h"
#include "collectives/store/store_server.h"
#include "tests/fuzz/fuzz_input.h"

namespace {

// Inputs that are not valid protobuf are the point; protobuf's complaints about them are noise.
const bool kQuietProtobuf = [] {
  google::protobuf::SetLogHandler(nullptr);
  return true;
}();

namespace pb = ::tandem::store;
constexpr char kToken[] = "fuzz-token";

struct Connection {
  tandem::StoreServer server{"", 0, kToken};
  std::unique_ptr<pb::Store::Stub> stub;
  Connection() {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(-1);
    stub = pb::Store::NewStub(
        grpc::CreateCustomChannel(server.endpoint(), grpc::InsecureChannelCredentials(), args));
  }
};

Connection& connection() {
  static Connection* c = new Connection();  // lives until exit: the fuzzer never tears down
  return *c;
}

template <typename Message>
Message parse(tandem::fuzz::FuzzInput& in) {
  Message m;
  const std::string_view bytes = in.bytes();
  if (!m.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) m.Clear();
  return m;
}

// Calls `method` with the token chosen by `how` (0 right, 1 none, 2 wrong) and checks the code.
template <typename Method, typename Request, typename Response>
grpc::Status call(Method method, const Request& req, Response* resp, int how) {
  grpc::ClientContext ctx;
  if (how == 0) ctx.AddMetadata("x-tandem-token", kToken);
  if (how == 2) ctx.AddMetadata("x-tandem-token", "not-the-token");
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::Status st = ((*connection().stub).*method)(&ctx, req, resp);
  const grpc::StatusCode code = st.error_code();
  if ((how != 0) != (code == grpc::StatusCode::UNAUTHENTICATED)) std::abort();
  if (code != grpc::StatusCode::OK && code != grpc::StatusCode::INVALID_ARGUMENT &&
      code != grpc::StatusCode::UNAUTHENTICATED)
    std::abort();
  return st;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tandem::fuzz::FuzzInput in(data, size);
  std::set<std::string> written;
  for (int i = 0; i < 16 && !in.empty(); ++i) {
    const uint8_t op = in.byte();
    const int how = (op >> 3) % 3;
    switch (op % 8) {
      case 0: {
        auto req = parse<pb::SetRequest>(in);
        pb::SetResponse resp;
        if (!call(&pb::Store::Stub::Set, req, &resp, how).ok()) break;
        written.insert(req.key());
        pb::GetRequest get;
        get.set_key(req.key());
        pb::GetResponse got;
        if (!call(&pb::Store::Stub::Get, get, &got, 0).ok() || !got.found() ||
            got.value() != req.value())
          std::abort();
        break;
      }
      case 1: {
        auto req = parse<pb::GetRequest>(in);
        req.set_timeout_ms(req.timeout_ms() % 3);
        pb::GetResponse resp;
        call(&pb::Store::Stub::Get, req, &resp, how);
        break;
      }
      case 2: {
        auto req = parse<pb::WaitRequest>(in);
        req.set_timeout_ms(req.timeout_ms() % 3);
        pb::WaitResponse resp;
        call(&pb::Store::Stub::Wait, req, &resp, how);
        break;
      }
      case 3: {
        auto req = parse<pb::AddRequest>(in);
        pb::AddResponse resp;
        if (call(&pb::Store::Stub::Add, req, &resp, how).ok()) written.insert(req.key());
        break;
      }
      case 4: {
        auto req = parse<pb::CompareSetRequest>(in);
        pb::CompareSetResponse resp;
        if (call(&pb::Store::Stub::CompareSet, req, &resp, how).ok()) written.insert(req.key());
        break;
      }
      case 5: {
        auto req = parse<pb::DeleteRequest>(in);
        pb::DeleteResponse resp;
        call(&pb::Store::Stub::Delete, req, &resp, how);
        break;
      }
      case 6: {
        auto req = parse<pb::HeartbeatRequest>(in);
        if (req.rank() >= 0) req.set_rank(req.rank() % 64);  // a bounded set of ranks per run
        pb::HeartbeatResponse resp;
        call(&pb::Store::Stub::Heartbeat, req, &resp, how);
        break;
      }
      case 7: {
        pb::ListHeartbeatsResponse resp;
        call(&pb::Store::Stub::ListHeartbeats, pb::ListHeartbeatsRequest(), &resp, how);
        break;
      }
    }
  }
  pb::DeleteRequest cleanup;
  for (const std::string& key : written) cleanup.add_keys(key);
  pb::DeleteResponse deleted;
  if (!written.empty()) call(&pb::Store::Stub::Delete, cleanup, &deleted, 0);
  return 0;
}
