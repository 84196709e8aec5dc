// StoreClient: gRPC stubs plus the translation of gRPC statuses into tandem's errors. Blocking
// calls send their timeout to the server, which answers when it passes; the call's own deadline
// is that timeout plus a grace period, so a slow answer is still told apart from a dead store.
#include "collectives/store/store_client.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <utility>

#include "collectives/store/grpc_security.h"
#include "collectives/store/store.grpc.pb.h"
#include "collectives/store/store_server.h"
#include "core/base/error.h"

namespace tandem {
namespace {

namespace pb = ::tandem::store;
using std::chrono::milliseconds;

// Time for a blocking call's answer to travel back once the server's own timeout has passed.
constexpr milliseconds kGrace{1000};

std::string quoted(const std::string& key) {
  if (key.size() <= 80) return "'" + key + "'";
  return "'" + key.substr(0, 80) + "...' (" + std::to_string(key.size()) + " bytes)";
}

// "'a', 'b', 'c'" with at most 8 keys named.
std::string quoted_list(const std::vector<std::string>& keys) {
  std::string s;
  for (size_t i = 0; i < keys.size() && i < 8; ++i) s += (i ? ", " : "") + quoted(keys[i]);
  if (keys.size() > 8) s += str(" and ", keys.size() - 8, " more");
  return s;
}

}  // namespace

struct StoreClient::Impl {
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<pb::Store::Stub> stub;
  std::string token;

  void prepare(grpc::ClientContext& ctx, milliseconds deadline) const {
    attach_job_token(ctx, token);
    ctx.set_deadline(std::chrono::system_clock::now() + deadline);
    ctx.set_wait_for_ready(true);
  }
};

StoreClient::StoreClient(std::string endpoint, std::string token, milliseconds timeout,
                         const JobTls& tls)
    : endpoint_(std::move(endpoint)), timeout_(timeout), impl_(std::make_unique<Impl>()) {
  TANDEM_CHECK(!endpoint_.empty(), "store client: empty endpoint: expected \"host:port\"");
  TANDEM_CHECK(timeout_.count() > 0, "store client: timeout must be positive, got ",
               timeout_.count(), " ms");
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);  // a value may be up to 64 MiB, get_many returns several
  args.SetMaxSendMessageSize(-1);
  impl_->channel = job_channel(endpoint_, tls, args, "store");
  impl_->stub = pb::Store::NewStub(impl_->channel);
  impl_->token = std::move(token);
}

StoreClient::~StoreClient() = default;

namespace {

// Throws the tandem error for a failed call. `what` names the call ("get 'k'"), `deadline` is
// the call's whole deadline.
[[noreturn]] void fail(const grpc::Status& status, const std::string& endpoint,
                       const std::string& what, milliseconds deadline, grpc::Channel& channel) {
  std::string where = str("store ", endpoint, ": ", what);
  const std::string& msg = status.error_message();
  switch (status.error_code()) {
    case grpc::StatusCode::UNAUTHENTICATED:
      throw CommError(str(where, " refused: ", msg));
    case grpc::StatusCode::INVALID_ARGUMENT:
      throw CommError(str(where, " refused: ", msg));
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      if (channel.GetState(false) != GRPC_CHANNEL_READY)
        throw CommError(str(where, " failed: could not reach the store within ", deadline.count(),
                            " ms: check that it is running, that the endpoint is right and, "
                            "across hosts, that TANDEM_TLS_CERT is this job's certificate"));
      throw TimeoutError(str(where, ": no answer within ", deadline.count(),
                             " ms: the store is overloaded or stuck"));
    case grpc::StatusCode::UNAVAILABLE:
      throw CommError(str(where, " failed: the store is unavailable (", msg,
                          "): check that the launcher's store is running at this endpoint"));
    default:
      throw CommError(str(where, " failed: ", grpc_code_name(status.error_code()), ": ", msg));
  }
}

// Refuses a value the server would refuse, before shipping up to 64 MiB to learn it.
void check_value_size(const std::string& endpoint, const std::string& what, const std::string& key,
                      const std::string& value) {
  TANDEM_CHECK_T(CommError, static_cast<int64_t>(value.size()) <= StoreServer::kMaxValueBytes,
                 "store ", endpoint, ": ", what, " refused: value of ", quoted(key), " has ",
                 value.size(), " bytes, over the limit of ", StoreServer::kMaxValueBytes,
                 " bytes: store large data elsewhere and put its location here");
}

}  // namespace

void StoreClient::set(const std::string& key, const std::string& value) {
  set(key, value, timeout_);
}

void StoreClient::set(const std::string& key, const std::string& value, milliseconds timeout) {
  check_value_size(endpoint_, "set " + quoted(key), key, value);
  pb::SetRequest req;
  req.set_key(key);
  req.set_value(value);
  pb::SetResponse resp;
  grpc::ClientContext ctx;
  impl_->prepare(ctx, timeout);
  grpc::Status st = impl_->stub->Set(&ctx, req, &resp);
  if (!st.ok()) fail(st, endpoint_, "set " + quoted(key), timeout, *impl_->channel);
}

std::string StoreClient::get(const std::string& key) {
  return get(key, timeout_);
}

std::string StoreClient::get(const std::string& key, milliseconds timeout) {
  pb::GetRequest req;
  req.set_key(key);
  req.set_timeout_ms(timeout.count());
  pb::GetResponse resp;
  grpc::ClientContext ctx;
  impl_->prepare(ctx, timeout + kGrace);
  grpc::Status st = impl_->stub->Get(&ctx, req, &resp);
  std::string what = "get " + quoted(key);
  if (!st.ok()) fail(st, endpoint_, what, timeout + kGrace, *impl_->channel);
  if (!resp.found())
    throw TimeoutError(
        str("store ", endpoint_, ": ", what, " timed out after ", timeout.count(), " ms"));
  return std::move(*resp.mutable_value());
}

void StoreClient::wait(const std::vector<std::string>& keys) {
  wait(keys, timeout_);
}

void StoreClient::wait(const std::vector<std::string>& keys, milliseconds timeout) {
  pb::WaitRequest req;
  for (const std::string& k : keys) req.add_keys(k);
  req.set_timeout_ms(timeout.count());
  pb::WaitResponse resp;
  grpc::ClientContext ctx;
  impl_->prepare(ctx, timeout + kGrace);
  grpc::Status st = impl_->stub->Wait(&ctx, req, &resp);
  std::string what = "wait for " + quoted_list(keys);
  if (!st.ok()) fail(st, endpoint_, what, timeout + kGrace, *impl_->channel);
  if (resp.missing_size() > 0) {
    std::vector<std::string> missing(resp.missing().begin(), resp.missing().end());
    throw TimeoutError(str("store ", endpoint_, ": ", what, " timed out after ", timeout.count(),
                           " ms: missing ", quoted_list(missing)));
  }
}

std::vector<std::string> StoreClient::get_many(const std::vector<std::string>& keys,
                                               milliseconds timeout) {
  pb::WaitRequest req;
  for (const std::string& k : keys) req.add_keys(k);
  req.set_timeout_ms(timeout.count());
  req.set_return_values(true);
  pb::WaitResponse resp;
  grpc::ClientContext ctx;
  impl_->prepare(ctx, timeout + kGrace);
  grpc::Status st = impl_->stub->Wait(&ctx, req, &resp);
  std::string what = "get " + quoted_list(keys);
  if (!st.ok()) fail(st, endpoint_, what, timeout + kGrace, *impl_->channel);
  if (resp.missing_size() > 0) {
    std::vector<std::string> missing(resp.missing().begin(), resp.missing().end());
    throw TimeoutError(str("store ", endpoint_, ": ", what, " timed out after ", timeout.count(),
                           " ms: missing ", quoted_list(missing)));
  }
  TANDEM_CHECK_T(CommError, resp.values_size() == static_cast<int>(keys.size()), "store ",
                 endpoint_, ": ", what, ": the store answered ", resp.values_size(), " values for ",
                 keys.size(), " keys");
  std::vector<std::string> values;
  values.reserve(keys.size());
  for (std::string& v : *resp.mutable_values()) values.push_back(std::move(v));
  return values;
}

std::vector<std::optional<std::string>> StoreClient::get_existing(
    const std::vector<std::string>& keys) {
  return get_existing(keys, timeout_);
}

std::vector<std::optional<std::string>> StoreClient::get_existing(
    const std::vector<std::string>& keys, milliseconds timeout) {
  pb::WaitRequest req;
  for (const std::string& k : keys) req.add_keys(k);
  req.set_timeout_ms(0);
  req.set_return_values(true);
  pb::WaitResponse resp;
  grpc::ClientContext ctx;
  impl_->prepare(ctx, timeout);
  grpc::Status st = impl_->stub->Wait(&ctx, req, &resp);
  std::string what = "get " + quoted_list(keys);
  if (!st.ok()) fail(st, endpoint_, what, timeout, *impl_->channel);
  TANDEM_CHECK_T(CommError,
                 resp.values_size() == static_cast<int>(keys.size()) &&
                     resp.found_size() == static_cast<int>(keys.size()),
                 "store ", endpoint_, ": ", what, ": the store answered ", resp.values_size(),
                 " values for ", keys.size(), " keys");
  std::vector<std::optional<std::string>> values(keys.size());
  for (size_t i = 0; i < keys.size(); ++i)
    if (resp.found(static_cast<int>(i))) values[i] = std::move(*resp.mutable_values(i));
  return values;
}

int64_t StoreClient::add(const std::string& key, int64_t delta) {
  pb::AddRequest req;
  req.set_key(key);
  req.set_delta(delta);
  pb::AddResponse resp;
  grpc::ClientContext ctx;
  impl_->prepare(ctx, timeout_);
  grpc::Status st = impl_->stub->Add(&ctx, req, &resp);
  if (!st.ok()) fail(st, endpoint_, "add to " + quoted(key), timeout_, *impl_->channel);
  return resp.value();
}

std::string StoreClient::compare_set(const std::string& key, const std::string& expected,
                                     const std::string& desired) {
  check_value_size(endpoint_, "compare_set " + quoted(key), key, desired);
  pb::CompareSetRequest req;
  req.set_key(key);
  req.set_expected(expected);
  req.set_desired(desired);
  pb::CompareSetResponse resp;
  grpc::ClientContext ctx;
  impl_->prepare(ctx, timeout_);
  grpc::Status st = impl_->stub->CompareSet(&ctx, req, &resp);
  if (!st.ok()) fail(st, endpoint_, "compare_set " + quoted(key), timeout_, *impl_->channel);
  return resp.exists() ? std::move(*resp.mutable_value()) : std::string();
}

bool StoreClient::remove(const std::string& key) {
  return remove(std::vector<std::string>{key}) == 1;
}

int64_t StoreClient::remove(const std::vector<std::string>& keys) {
  pb::DeleteRequest req;
  for (const std::string& k : keys) req.add_keys(k);
  pb::DeleteResponse resp;
  grpc::ClientContext ctx;
  impl_->prepare(ctx, timeout_);
  grpc::Status st = impl_->stub->Delete(&ctx, req, &resp);
  if (!st.ok()) fail(st, endpoint_, "delete " + quoted_list(keys), timeout_, *impl_->channel);
  return resp.deleted();
}

void StoreClient::heartbeat(int rank) {
  pb::HeartbeatRequest req;
  req.set_rank(rank);
  req.set_timestamp_ms(
      std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
  pb::HeartbeatResponse resp;
  grpc::ClientContext ctx;
  impl_->prepare(ctx, timeout_);
  grpc::Status st = impl_->stub->Heartbeat(&ctx, req, &resp);
  if (!st.ok()) fail(st, endpoint_, str("heartbeat of rank ", rank), timeout_, *impl_->channel);
}

std::vector<HeartbeatRecord> StoreClient::last_heartbeats() {
  pb::ListHeartbeatsRequest req;
  pb::ListHeartbeatsResponse resp;
  grpc::ClientContext ctx;
  impl_->prepare(ctx, timeout_);
  grpc::Status st = impl_->stub->ListHeartbeats(&ctx, req, &resp);
  if (!st.ok()) fail(st, endpoint_, "list heartbeats", timeout_, *impl_->channel);
  std::vector<HeartbeatRecord> records;
  for (const pb::HeartbeatRecord& r : resp.records())
    records.push_back({r.rank(), r.timestamp_ms(), r.age_ms()});
  return records;
}

}  // namespace tandem
