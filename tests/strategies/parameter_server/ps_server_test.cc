// PsServer through its wire protocol, driven by hand-made messages: exactly-once pushes, refusal
// of inconsistent tensors and of calls without the token (the server keeps serving after each),
// the sync rule and the staleness bound. SGD with lr 0.5 keeps the expected numbers by hand:
// p' = p - 0.5 * g.
#include "strategies/parameter_server/ps_server.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <cstring>
#include <thread>

#include "collectives/net/host_address.h"
#include "collectives/store/job_tls.h"
#include "core/optim/adam.h"
#include "core/optim/sgd.h"
#include "core/random/philox.h"
#include "strategies/parameter_server/ps.grpc.pb.h"
#include "strategies/parameter_server/ps_client.h"
#include "tests/support/unauthenticated_call.h"

namespace tandem {
namespace {

namespace pb = ::tandem::ps;
constexpr char kToken[] = "test-token";

std::unique_ptr<PsServer> start_server(PsMode mode, int64_t max_staleness = 0,
                                       int64_t max_message_bytes = int64_t{1} << 20) {
  PsServerOptions o;
  o.token = kToken;
  o.mode = mode;
  o.max_staleness = max_staleness;
  o.max_message_bytes = max_message_bytes;
  o.make_optimizer = [](const NamedTensors& params) {
    return std::make_unique<Sgd>(params, SgdOptions{.lr = 0.5});
  };
  return std::make_unique<PsServer>(o);
}

pb::Tensor f32_tensor(const std::string& name, const std::vector<float>& values) {
  pb::Tensor t;
  t.set_name(name);
  t.set_dtype("f32");
  t.add_shape(static_cast<int64_t>(values.size()));
  t.set_byte_length(static_cast<int64_t>(values.size() * 4));
  t.set_data(values.data(), values.size() * 4);
  return t;
}

std::vector<float> floats(const pb::Tensor& t) {
  std::vector<float> v(t.data().size() / 4);
  std::memcpy(v.data(), t.data().data(), t.data().size());
  return v;
}

// Hand-made calls to a server. Restore and Push send a stream of one message, Pull and Save
// answer a stream (ps.proto); these tests' tensors fit in one message.
class Wire {
 public:
  explicit Wire(const PsServer& server) {
    grpc::ChannelArguments args;
    args.SetMaxSendMessageSize(-1);
    stub_ = pb::ParameterServer::NewStub(
        grpc::CreateCustomChannel(server.endpoint(), grpc::InsecureChannelCredentials(), args));
  }
  static void prepare(grpc::ClientContext* ctx, const char* token) {
    if (token != nullptr) ctx->AddMetadata("x-tandem-token", token);
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  }
  template <typename Req, typename Resp, typename Method>
  grpc::Status call(Method method, const Req& req, Resp* resp, const char* token = kToken) {
    grpc::ClientContext ctx;
    prepare(&ctx, token);
    return ((*stub_).*method)(&ctx, req, resp);
  }
  // A call that sends `req` as a stream of one message.
  template <typename Req, typename Resp, typename Method>
  grpc::Status send(Method method, const Req& req, Resp* resp, const char* token = kToken) {
    grpc::ClientContext ctx;
    prepare(&ctx, token);
    auto writer = ((*stub_).*method)(&ctx, resp);
    writer->Write(req);
    writer->WritesDone();
    return writer->Finish();
  }
  // A call whose answer is a stream; its messages go to *out.
  template <typename Req, typename Resp, typename Method>
  grpc::Status receive(Method method, const Req& req, std::vector<Resp>* out,
                       const char* token = kToken) {
    grpc::ClientContext ctx;
    prepare(&ctx, token);
    auto reader = ((*stub_).*method)(&ctx, req);
    for (Resp m; reader->Read(&m);) out->push_back(m);
    return reader->Finish();
  }
  grpc::Status reg(int worker, int world, const std::string& mode, int64_t incarnation = 0) {
    pb::RegisterRequest req;
    req.set_worker(worker);
    req.set_world_size(world);
    req.set_mode(mode);
    req.set_num_shards(1);
    req.set_incarnation(incarnation);
    pb::RegisterResponse resp;
    return call(&pb::ParameterServer::Stub::Register, req, &resp);
  }
  grpc::Status restore(int world, const std::vector<float>& w) {
    pb::RestoreRequest req;
    req.set_world_size(world);
    *req.add_params() = f32_tensor("w", w);
    pb::RestoreResponse resp;
    return send(&pb::ParameterServer::Stub::Restore, req, &resp);
  }
  grpc::Status push(int worker, int64_t step, const pb::Tensor& grad, bool* duplicate = nullptr,
                    int64_t incarnation = 0) {
    pb::PushRequest req;
    req.set_worker(worker);
    req.set_step(step);
    req.set_lr(0.5);
    req.set_incarnation(incarnation);
    *req.add_grads() = grad;
    pb::PushResponse resp;
    grpc::Status st = send(&pb::ParameterServer::Stub::Push, req, &resp);
    if (duplicate) *duplicate = resp.duplicate();
    return st;
  }
  grpc::Status pull(int worker, int64_t step, std::vector<float>* w, int64_t timeout_ms = 5000) {
    pb::PullRequest req;
    req.set_worker(worker);
    req.set_step(step);
    req.set_timeout_ms(timeout_ms);
    std::vector<pb::PullResponse> stream;
    grpc::Status st = receive(&pb::ParameterServer::Stub::Pull, req, &stream);
    if (st.ok() && w) *w = floats(stream.at(0).params(0));
    return st;
  }

 private:
  std::unique_ptr<pb::ParameterServer::Stub> stub_;
};

TEST(PsServer, DuplicatedAsyncPushChangesParametersOnce) {
  auto server = start_server(PsMode::kAsync);
  Wire wire(*server);
  ASSERT_TRUE(wire.reg(0, 1, "async").ok());
  ASSERT_TRUE(wire.restore(1, {1, 2, 3}).ok());
  bool duplicate = true;
  ASSERT_TRUE(wire.push(0, 0, f32_tensor("w", {1, 1, 1}), &duplicate).ok());
  EXPECT_FALSE(duplicate);
  ASSERT_TRUE(wire.push(0, 0, f32_tensor("w", {1, 1, 1}), &duplicate).ok());  // the retry
  EXPECT_TRUE(duplicate);
  std::vector<float> w;
  ASSERT_TRUE(wire.pull(0, 1, &w).ok());
  EXPECT_EQ(w, (std::vector<float>{0.5f, 1.5f, 2.5f}));  // 1 - 0.5 * 1, once
  ASSERT_TRUE(wire.push(0, 1, f32_tensor("w", {2, 2, 2}), &duplicate).ok());
  EXPECT_FALSE(duplicate);
  ASSERT_TRUE(wire.pull(0, 2, &w).ok());
  EXPECT_EQ(w, (std::vector<float>{-0.5f, 0.5f, 1.5f}));
}

TEST(PsServer, DuplicatedSyncPushIsCountedOnceInTheAverage) {
  auto server = start_server(PsMode::kSync);
  Wire wire(*server);
  ASSERT_TRUE(wire.reg(0, 2, "sync").ok());
  ASSERT_TRUE(wire.reg(1, 2, "sync").ok());
  ASSERT_TRUE(wire.restore(2, {1, 2, 3}).ok());
  bool duplicate = false;
  ASSERT_TRUE(wire.push(0, 0, f32_tensor("w", {2, 2, 2}), &duplicate).ok());
  ASSERT_TRUE(wire.push(0, 0, f32_tensor("w", {2, 2, 2}), &duplicate).ok());
  EXPECT_TRUE(duplicate);
  std::vector<float> w;
  // Worker 1 has not pushed step 0: a pull for step 1 waits (here: times out).
  grpc::Status st = wire.pull(0, 1, &w, /*timeout_ms=*/200);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_NE(st.error_message().find("missing: workers 1"), std::string::npos) << st.error_message();
  ASSERT_TRUE(wire.push(1, 0, f32_tensor("w", {4, 0, 6}), &duplicate).ok());
  EXPECT_FALSE(duplicate);
  ASSERT_TRUE(wire.pull(0, 1, &w).ok());
  // average (3, 1, 4): 1 - 1.5, 2 - 0.5, 3 - 2
  EXPECT_EQ(w, (std::vector<float>{-0.5f, 1.5f, 1.0f}));
  // A late retry of step 0 (already applied) changes nothing.
  ASSERT_TRUE(wire.push(1, 0, f32_tensor("w", {4, 0, 6}), &duplicate).ok());
  EXPECT_TRUE(duplicate);
  ASSERT_TRUE(wire.pull(1, 1, &w).ok());
  EXPECT_EQ(w, (std::vector<float>{-0.5f, 1.5f, 1.0f}));
}

TEST(PsServer, InconsistentTensorsAreRefusedAndTheServerKeepsServing) {
  auto server = start_server(PsMode::kAsync);
  Wire wire(*server);
  ASSERT_TRUE(wire.reg(0, 1, "async").ok());
  ASSERT_TRUE(wire.restore(1, {1, 2, 3}).ok());
  struct Case {
    const char* what;
    pb::Tensor t;
    const char* expect;
  };
  std::vector<Case> cases;
  pb::Tensor t = f32_tensor("w", {1, 1, 1});
  t.set_byte_length(8);
  cases.push_back({"byte_length", t, "byte_length 8 does not match shape [3] of f32 (12 bytes)"});
  t = f32_tensor("w", {1, 1, 1});
  t.set_data(std::string(8, '\0'));  // a first piece, and the stream ends
  cases.push_back({"data", t, "the stream ended after 8 of its 12 bytes"});
  t = f32_tensor("w", {1, 1, 1});
  t.set_dtype("f64");
  t.set_byte_length(24);
  t.set_data(std::string(24, '\0'));
  cases.push_back({"dtype", t, "dtype f64 but the variable is f32"});
  t = f32_tensor("w", {1, 1, 1, 1});
  cases.push_back({"shape", t, "shape [4] but the variable is [3]"});
  t = f32_tensor("w", {1, 1, 1});
  t.set_dtype("bf16");
  cases.push_back({"unknown dtype", t, "dtype 'bf16' is not one of f32, f64, i64"});
  t = f32_tensor("nope", {1, 1, 1});
  cases.push_back({"name", t, "has no variable 'nope'"});
  for (const Case& c : cases) {
    grpc::Status st = wire.push(0, 0, c.t);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.what;
    EXPECT_NE(st.error_message().find(c.expect), std::string::npos)
        << c.what << ": " << st.error_message();
  }
  // Nothing changed, and the server still serves: the good push of step 0 is the first applied.
  std::vector<float> w;
  ASSERT_TRUE(wire.pull(0, 0, &w).ok());
  EXPECT_EQ(w, (std::vector<float>{1, 2, 3}));
  bool duplicate = true;
  ASSERT_TRUE(wire.push(0, 0, f32_tensor("w", {2, 2, 2}), &duplicate).ok());
  EXPECT_FALSE(duplicate);
  ASSERT_TRUE(wire.pull(0, 1, &w).ok());
  EXPECT_EQ(w, (std::vector<float>{0, 1, 2}));
}

TEST(PsServer, MessagesOverTheLimitAreRefused) {
  auto server = start_server(PsMode::kAsync, 0, /*max_message_bytes=*/1024);
  Wire wire(*server);
  ASSERT_TRUE(wire.reg(0, 1, "async").ok());
  // A piece over the limit inside a message gRPC accepts: refused by the server's own check,
  // naming the key that sets the limit.
  grpc::Status st = wire.restore(1, std::vector<float>(512, 1.0f));
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("a piece of 2048 bytes is larger than the message limit of "
                                    "1024 bytes (strategy.max_message_mb)"),
            std::string::npos)
      << st.error_message();
  // A message over the limit plus framing: refused by gRPC before it is parsed.
  st = wire.restore(1, std::vector<float>(1 << 19, 1.0f));
  EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << st.error_message();
  EXPECT_TRUE(wire.restore(1, {1, 2, 3}).ok());  // still serving
  // Through PsClient, what gRPC refuses names the config keys that decide message sizes.
  PsClient client(0, server->endpoint(), kToken, std::chrono::seconds(5), int64_t{4} << 20);
  client.register_worker(0, 1, 0, PsMode::kAsync, 1);
  try {
    client.restore(1, {{"w", zeros({1 << 19})}}, {});
    FAIL() << "a 2 MiB message was accepted under a 1 KiB limit";
  } catch (const CommError& e) {
    EXPECT_NE(std::string(e.what()).find("RESOURCE_EXHAUSTED"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("strategy.max_message_mb (4 MiB): raise it, or spread "
                                         "the model over more servers with strategy.num_ps"),
              std::string::npos)
        << e.what();
  }
}

// Pieces that do not join up into whole tensors are refused, and change nothing.
TEST(PsServer, PiecesThatDoNotJoinUpAreRefused) {
  auto server = start_server(PsMode::kAsync);
  Wire wire(*server);
  ASSERT_TRUE(wire.reg(0, 1, "async").ok());
  ASSERT_TRUE(wire.restore(1, {1, 2, 3}).ok());
  auto piece = [](int64_t offset, std::vector<float> values) {
    pb::Tensor t = f32_tensor("w", values);
    t.clear_shape();
    t.add_shape(3);
    t.set_byte_length(12);
    t.set_offset(offset);
    return t;
  };
  struct Case {
    std::vector<pb::Tensor> pieces;
    const char* expect;
  };
  const Case cases[] = {
      {{piece(4, {1, 1})}, "its first piece starts at byte 4, expected 0"},
      {{piece(0, {1}), piece(8, {1})}, "incomplete (4 of 12 bytes) when a piece of 'w' at byte 8"},
      {{piece(0, {1, 1})}, "the stream ended after 8 of its 12 bytes"},
      {{piece(8, {1, 1})}, "bytes [8, 8 + 8) lie outside its byte_length 12"},
  };
  for (const Case& c : cases) {
    pb::PushRequest req;
    req.set_worker(0);
    req.set_lr(0.5);
    for (const pb::Tensor& p : c.pieces) *req.add_grads() = p;
    pb::PushResponse resp;
    grpc::Status st = wire.send(&pb::ParameterServer::Stub::Push, req, &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.expect;
    EXPECT_NE(st.error_message().find(c.expect), std::string::npos) << st.error_message();
  }
  // The same pieces in order, split over two messages of the stream, are one gradient.
  grpc::ClientContext ctx;
  Wire::prepare(&ctx, kToken);
  pb::PushResponse resp;
  grpc::Status st;
  {
    auto stub = pb::ParameterServer::NewStub(
        grpc::CreateChannel(server->endpoint(), grpc::InsecureChannelCredentials()));
    auto writer = stub->Push(&ctx, &resp);
    pb::PushRequest first, second;
    first.set_worker(0);
    first.set_lr(0.5);
    *first.add_grads() = piece(0, {2});
    *second.add_grads() = piece(4, {2, 2});
    writer->Write(first);
    writer->Write(second);
    writer->WritesDone();
    st = writer->Finish();
  }
  ASSERT_TRUE(st.ok()) << st.error_message();
  std::vector<float> w;
  ASSERT_TRUE(wire.pull(0, 1, &w).ok());
  EXPECT_EQ(w, (std::vector<float>{0, 1, 2}));  // p - 0.5 * 2, once
}

TEST(PsServer, CallsWithoutTheRightTokenAreRefused) {
  auto server = start_server(PsMode::kSync);
  Wire wire(*server);
  pb::RegisterRequest req;
  req.set_worker(0);
  req.set_world_size(1);
  req.set_mode("sync");
  req.set_num_shards(1);
  pb::RegisterResponse resp;
  grpc::Status st = wire.call(&pb::ParameterServer::Stub::Register, req, &resp, nullptr);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_NE(st.error_message().find("missing job token"), std::string::npos);
  st = wire.call(&pb::ParameterServer::Stub::Register, req, &resp, "wrong");
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(st.error_message().find("test-token"), std::string::npos);  // never echoed
  // Every other call of the service, without a token and with a wrong one.
  auto refused = [&](auto method, const auto& request, auto* response, const char* what) {
    for (const char* token : {static_cast<const char*>(nullptr), "wrong"}) {
      grpc::Status s = wire.call(method, request, response, token);
      EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED)
          << what << " with token " << (token ? token : "(none)") << ": " << s.error_message();
    }
  };
  pb::BarrierResponse barrier;
  refused(&pb::ParameterServer::Stub::Barrier, pb::BarrierRequest(), &barrier, "Barrier");
  for (const char* token : {static_cast<const char*>(nullptr), "wrong"}) {
    std::vector<pb::PullResponse> pulled;
    EXPECT_EQ(wire.receive(&pb::ParameterServer::Stub::Pull, pb::PullRequest(), &pulled, token)
                  .error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
    std::vector<pb::SaveResponse> saved;
    EXPECT_EQ(wire.receive(&pb::ParameterServer::Stub::Save, pb::SaveRequest(), &saved, token)
                  .error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
    pb::PushResponse push;
    EXPECT_EQ(
        wire.send(&pb::ParameterServer::Stub::Push, pb::PushRequest(), &push, token).error_code(),
        grpc::StatusCode::UNAUTHENTICATED);
    pb::RestoreResponse restore;
    EXPECT_EQ(wire.send(&pb::ParameterServer::Stub::Restore, pb::RestoreRequest(), &restore, token)
                  .error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }
  pb::DoneResponse done;
  refused(&pb::ParameterServer::Stub::Done, pb::DoneRequest(), &done, "Done");
  pb::AbortResponse abort;
  refused(&pb::ParameterServer::Stub::Abort, pb::AbortRequest(), &abort, "Abort");
  EXPECT_TRUE(wire.reg(0, 1, "sync").ok());  // the right token still works
  // Through PsClient, the refusal is an error naming the shard.
  PsClient client(0, server->endpoint(), "", std::chrono::seconds(5), 1 << 20);
  try {
    client.register_worker(0, 1, 0, PsMode::kSync, 1);
    FAIL() << "a call without a token was accepted";
  } catch (const CommError& e) {
    EXPECT_NE(std::string(e.what()).find("parameter server shard 0"), std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("UNAUTHENTICATED"), std::string::npos) << e.what();
  }
}

TEST(PsServer, ListensOnLoopbackUnlessGivenAHost) {
  auto server = start_server(PsMode::kSync);
  EXPECT_EQ(server->endpoint().rfind("127.0.0.1:", 0), 0u) << server->endpoint();
}

TEST(PsServer, AsyncPullWaitsForWorkersBeyondMaxStaleness) {
  auto server = start_server(PsMode::kAsync, /*max_staleness=*/1);
  Wire wire(*server);
  ASSERT_TRUE(wire.reg(0, 2, "async").ok());
  ASSERT_TRUE(wire.reg(1, 2, "async").ok());
  ASSERT_TRUE(wire.restore(2, {0, 0, 0}).ok());
  std::vector<float> w;
  ASSERT_TRUE(wire.push(0, 0, f32_tensor("w", {1, 1, 1})).ok());
  ASSERT_TRUE(wire.pull(0, 1, &w).ok());  // 1 step ahead of worker 1: allowed
  ASSERT_TRUE(wire.push(0, 1, f32_tensor("w", {1, 1, 1})).ok());
  grpc::Status st = wire.pull(0, 2, &w, 200);  // 2 steps ahead: waits
  EXPECT_EQ(st.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_NE(st.error_message().find("workers 1 to come within max_staleness 1"), std::string::npos)
      << st.error_message();
  ASSERT_TRUE(wire.push(1, 0, f32_tensor("w", {1, 1, 1})).ok());
  ASSERT_TRUE(wire.pull(0, 2, &w).ok());
  EXPECT_EQ(w, (std::vector<float>{-1.5f, -1.5f, -1.5f}));  // three pushes applied
  EXPECT_EQ(server->max_lead(), 1);  // served at most one step ahead of worker 1
}

TEST(PsServer, PushOfARestartedWorkersOldIncarnationIsRefused) {
  auto server = start_server(PsMode::kAsync);
  Wire wire(*server);
  ASSERT_TRUE(wire.reg(0, 1, "async", /*incarnation=*/1).ok());
  ASSERT_TRUE(wire.restore(1, {0, 0, 0}).ok());
  grpc::Status st = wire.push(0, 5, f32_tensor("w", {1, 1, 1}), nullptr, /*incarnation=*/0);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  // The new incarnation starts its own steps again (a resume from an older checkpoint).
  bool duplicate = true;
  ASSERT_TRUE(wire.push(0, 0, f32_tensor("w", {1, 1, 1}), &duplicate, 1).ok());
  EXPECT_FALSE(duplicate);
}

std::string bytes_of(const Tensor& t) {
  Tensor c = t.contiguous();
  return std::string(static_cast<const char*>(c.raw_data()), c.numel() * dtype_size(c.dtype()));
}

std::map<std::string, std::string> bytes_by_name(const NamedTensors& tensors) {
  std::map<std::string, std::string> out;
  for (const auto& [name, t] : tensors) out[name] = bytes_of(t);
  return out;
}

// ResNet-50 with Adam on one server is ~307 MB of variables and optimizer state against the
// default 257 MiB limit: Save, Restore and Pull went as one message each and failed with
// RESOURCE_EXHAUSTED at the first checkpoint, and on every restart. Here: 150,003 f32 variables
// (600 KB, 1.8 MB with Adam's buffers) against a 64 KiB limit.
TEST(PsServer, AShardLargerThanTheMessageLimitIsSavedRestoredAndPulledWhole) {
  constexpr int64_t kLimit = 64 << 10;
  PsServerOptions o;
  o.token = kToken;
  o.mode = PsMode::kSync;
  o.max_message_bytes = kLimit;
  o.make_optimizer = [](const NamedTensors& params) {
    return std::make_unique<Adam>(params, AdamOptions{.lr = 0.01});
  };
  Generator gen(7);
  const NamedTensors params = {
      {"w", randn({100000}, gen)}, {"v", randn({50000}, gen)}, {"b", randn({3}, gen)}};
  const NamedTensors grads = {
      {"w", randn({100000}, gen)}, {"v", randn({50000}, gen)}, {"b", randn({3}, gen)}};
  // The reference: the same Adam step on a copy, in this process.
  NamedTensors expected;
  for (const auto& [name, p] : params) {
    Tensor c = p.clone();
    c.set_requires_grad(true);
    expected.emplace_back(name, c);
  }
  Adam reference(expected, AdamOptions{.lr = 0.01});
  for (size_t i = 0; i < expected.size(); ++i) expected[i].second.set_grad(grads[i].second.clone());
  reference.step();

  auto pull_all = [](PsClient& client, int64_t step) {
    std::map<std::string, std::string> out;
    client.pull(0, step,
                [&](const WireTensor& t) { out[std::string(t.name)] = std::string(t.data); });
    return out;
  };
  PsServer first(o);
  PsClient client(0, first.endpoint(), kToken, std::chrono::seconds(20), kLimit);
  ASSERT_FALSE(client.register_worker(0, 1, 0, PsMode::kSync, 1));
  client.restore(1, params, {});
  EXPECT_EQ(pull_all(client, 0), bytes_by_name(params));
  std::vector<std::pair<std::string, std::string_view>> pushed;
  for (const auto& [name, g] : grads)
    pushed.emplace_back(
        name, std::string_view(static_cast<const char*>(g.raw_data()), g.numel() * sizeof(float)));
  EXPECT_FALSE(client.push(0, 0, 0, 0.01, pushed, DType::kF32));
  EXPECT_EQ(pull_all(client, 1), bytes_by_name(expected));
  NamedTensors saved_params, saved_state;
  client.save(&saved_params, &saved_state);
  EXPECT_EQ(bytes_by_name(saved_params), bytes_by_name(expected));
  EXPECT_EQ(bytes_by_name(saved_state), bytes_by_name(reference.state_dict()));

  // A restart: a fresh server gets the checkpoint back and serves the same bits.
  PsServer second(o);
  PsClient client2(0, second.endpoint(), kToken, std::chrono::seconds(20), kLimit);
  client2.register_worker(0, 1, 0, PsMode::kSync, 1);
  client2.restore(1, saved_params, saved_state);
  EXPECT_EQ(pull_all(client2, 0), bytes_by_name(expected));
  NamedTensors again_params, again_state;
  client2.save(&again_params, &again_state);
  EXPECT_EQ(bytes_by_name(again_params), bytes_by_name(expected));
  EXPECT_EQ(bytes_by_name(again_state), bytes_by_name(reference.state_dict()));
}

// Every method refuses a call without the token before it reads the request: the server's peak
// memory does not grow with the message, neither under the message limit (gRPC reads a unary
// request whole before a handler sees the token) nor over it (gRPC 1.51 still reads that one
// before it refuses it). A worker with the token then still moves a tensor larger than a message
// and than gRPC's default 4 MiB limit, in pieces, bit for bit.
TEST(PsServer, ACallWithoutTheTokenIsRefusedBeforeItsMessageIsRead) {
  constexpr int64_t kMiB = 1 << 20;
  constexpr int64_t kMostHeld = 16 * kMiB;  // measured: at most 6.4 MiB, a new connection included
  // Messages of 64 MiB and of 1 MiB: gRPC's limits 65 MiB and 2 MiB.
  auto wide = start_server(PsMode::kSync, 0, /*max_message_bytes=*/64 * kMiB);
  auto server = start_server(PsMode::kSync, 0, /*max_message_bytes=*/kMiB);
  for (const PsServer* target : {wide.get(), server.get()}) {
    for (int64_t bytes : {32 * kMiB, 256 * kMiB}) {
      if (!testing::expect_refused_before_read(
              target->endpoint(), "/tandem.ps.ParameterServer/",
              {"Register", "Pull", "Push", "Barrier", "Save", "Restore", "Done", "Abort"}, bytes,
              kMostHeld, "the server"))
        GTEST_SKIP() << "/proc/self/clear_refs is not writable: peak memory cannot be measured";
    }
  }
  Generator gen(11);
  const NamedTensors params = {{"w", randn({(5 << 20) / 4 + 3}, gen)}};
  PsClient client(0, server->endpoint(), kToken, std::chrono::seconds(20), kMiB);
  ASSERT_FALSE(client.register_worker(0, 1, 0, PsMode::kSync, 1));
  client.restore(1, params, {});
  std::map<std::string, std::string> pulled;
  client.pull(0, 0,
              [&](const WireTensor& t) { pulled[std::string(t.name)] = std::string(t.data); });
  EXPECT_EQ(pulled, bytes_by_name(params));
  NamedTensors saved_params, saved_state;
  client.save(&saved_params, &saved_state);
  EXPECT_EQ(bytes_by_name(saved_params), bytes_by_name(params));
}

// A shard serving TLS on `host` (mode `mode`): a worker with the job's certificate and token
// registers, restores, pushes and pulls the numbers SGD gives by hand; a plaintext worker, one
// pinning another job's certificate and one with a wrong token are refused, and change nothing.
void expect_tls_shard_admits_only_the_job(const std::string& host, TlsMode mode) {
  JobTls identity = generate_job_tls();
  identity.mode = mode;
  PsServerOptions o;
  o.host = host;
  o.token = kToken;
  o.tls = identity;
  o.mode = PsMode::kSync;
  o.max_message_bytes = 1 << 20;
  o.make_optimizer = [](const NamedTensors& params) {
    return std::make_unique<Sgd>(params, SgdOptions{.lr = 0.5});
  };
  PsServer server(o);
  JobTls certificate = identity;
  certificate.key_pem.clear();  // what a worker holds
  auto pull_w = [](PsClient& client, int64_t step) {
    std::vector<float> w;
    client.pull(0, step, [&](const WireTensor& t) {
      w.resize(t.data.size() / 4);
      std::memcpy(w.data(), t.data.data(), t.data.size());
    });
    return w;
  };

  PsClient member(0, server.endpoint(), kToken, std::chrono::seconds(5), 1 << 20, certificate);
  EXPECT_FALSE(member.register_worker(0, 1, 0, PsMode::kSync, 1));
  member.restore(1, {{"w", from_vector({1.0, 2.0, 3.0}, {3})}}, {});
  EXPECT_EQ(pull_w(member, 0), (std::vector<float>{1.0f, 2.0f, 3.0f}));

  auto refused = [&](const std::string& token, const JobTls& tls, const std::string& why) {
    PsClient other(0, server.endpoint(), token, std::chrono::milliseconds(1500), 1 << 20, tls);
    try {
      other.register_worker(1, 1, 0, PsMode::kSync, 1);
      ADD_FAILURE() << "accepted: " << why;
    } catch (const CommError& e) {
      EXPECT_NE(std::string(e.what()).find("parameter server shard 0"), std::string::npos)
          << why << ": " << e.what();
      return std::string(e.what());
    }
    return std::string();
  };
  JobTls plaintext;
  plaintext.mode = TlsMode::kOff;
  const std::string plain_msg = refused(kToken, plaintext, "plaintext");
  EXPECT_NE(plain_msg.find("could not reach the shard"), std::string::npos) << plain_msg;
  JobTls stranger = generate_job_tls();
  stranger.mode = mode;
  stranger.key_pem.clear();
  const std::string stranger_msg = refused(kToken, stranger, "another job's certificate");
  EXPECT_NE(stranger_msg.find("could not reach the shard"), std::string::npos) << stranger_msg;
  const std::string token_msg = refused("wrong-token", certificate, "a wrong token");
  EXPECT_NE(token_msg.find("UNAUTHENTICATED"), std::string::npos) << token_msg;
  EXPECT_NE(token_msg.find("wrong job token"), std::string::npos) << token_msg;
  EXPECT_EQ(token_msg.find("wrong-token"), std::string::npos) << token_msg;

  // Still the member's shard: one push of g = (2, 4, 6) at lr 0.5 gives w = (0, 0, 0).
  const std::vector<float> g = {2.0f, 4.0f, 6.0f};
  EXPECT_FALSE(member.push(0, 0, 0, 0.5,
                           {{"w", std::string_view(reinterpret_cast<const char*>(g.data()), 12)}},
                           DType::kF32));
  EXPECT_EQ(pull_w(member, 1), (std::vector<float>{0.0f, 0.0f, 0.0f}));
}

TEST(PsServer, WithTlsOnLoopbackServesOnlyTheJobsCertificateAndToken) {
  expect_tls_shard_admits_only_the_job("127.0.0.1", TlsMode::kAlways);
}

TEST(PsServer, OnANonLoopbackAddressSpeaksTlsByDefault) {
  const std::vector<std::string> addresses = local_addresses();
  if (addresses.empty()) GTEST_SKIP() << "this machine has no address but loopback";
  expect_tls_shard_admits_only_the_job(addresses.front(), TlsMode::kAcrossHosts);
}

TEST(PsServer, AcrossHostsRefusesToListenWithoutTheJobKey) {
  PsServerOptions o;
  o.host = "0.0.0.0";
  o.shard = 0;
  o.token = kToken;
  o.tls = generate_job_tls();
  o.tls.key_pem.clear();  // a certificate alone
  o.make_optimizer = [](const NamedTensors& params) {
    return std::make_unique<Sgd>(params, SgdOptions{.lr = 0.5});
  };
  try {
    PsServer server(o);
    FAIL() << "listened across hosts without the job's key";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("parameter server shard 0 on 0.0.0.0"), std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("TANDEM_TLS_KEY is not set"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace tandem
