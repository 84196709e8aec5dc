// StoreServer: the gRPC callback service behind store.proto. One mutex guards the map, the waiter
// list and the heartbeats; handlers never block (a Get or Wait that cannot be answered is parked
// as a Waiter), and calls are finished outside the mutex.
//
// Every method is served as a generic call (StoreCall), not through the generated unary service:
// gRPC reads a unary request whole -- past any message limit, as a stream of HTTP/2 frames --
// before a handler or interceptor sees the metadata, so a caller without the token could make the
// store buffer as much as it sends. A StoreCall checks the token first and only then asks for the
// request; a refused call is answered before a byte of it is read. On the wire nothing changes:
// clients call the unary methods of store.proto.
#include "collectives/store/store_server.h"

#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <list>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "collectives/store/grpc_security.h"
#include "collectives/store/listening_clock.h"
#include "collectives/store/store.grpc.pb.h"
#include "core/base/error.h"

namespace tandem {
namespace {

namespace pb = ::tandem::store;
using Clock = std::chrono::steady_clock;

// CompareSet carries two values and a key: the largest legal message, plus room for framing.
constexpr int kMaxMessageBytes =
    static_cast<int>(2 * StoreServer::kMaxValueBytes + StoreServer::kMaxKeyBytes + (1 << 20));
// A blocking call waits at most a week: keeps deadlines far from overflow.
constexpr int64_t kMaxWaitMs = int64_t{7} * 24 * 3600 * 1000;

// A key as it appears in an error message: quoted, long keys cut short.
std::string quoted(const std::string& key) {
  if (key.size() <= 80) return "'" + key + "'";
  return "'" + key.substr(0, 80) + "...' (" + std::to_string(key.size()) + " bytes)";
}

std::optional<grpc::Status> check_key(const std::string& key) {
  if (key.empty())
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "empty key: keys must be non-empty");
  if (static_cast<int64_t>(key.size()) > StoreServer::kMaxKeyBytes)
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        str("key ", quoted(key), " is longer than the limit of ",
                            StoreServer::kMaxKeyBytes, " bytes: use a shorter key"));
  return std::nullopt;
}

std::optional<grpc::Status> check_value(const std::string& key, const std::string& value) {
  if (static_cast<int64_t>(value.size()) > StoreServer::kMaxValueBytes)
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        str("value of ", quoted(key), " has ", value.size(),
                            " bytes, over the limit of ", StoreServer::kMaxValueBytes,
                            " bytes: store large data elsewhere and put its location here"));
  return std::nullopt;
}

}  // namespace

class StoreService;

// One call, from its metadata to its answer: the token is checked when the call arrives and the
// request is read only after that. The request and response live as long as the call; finish()
// answers it (once, from any thread) and the call deletes itself when gRPC is done with it.
class StoreCall final : public grpc::ServerGenericBidiReactor {
 public:
  StoreCall(StoreService* service, grpc::GenericCallbackServerContext* ctx);

  void finish(const grpc::Status& status);
  bool cancelled() const { return ctx_->IsCancelled(); }
  const google::protobuf::Message& request() const { return *request_; }
  google::protobuf::Message& response() { return *response_; }

  void OnReadDone(bool ok) override;
  void OnDone() override { delete this; }

  struct Method;
  static const Method* find_method(const std::string& path);

 private:
  StoreService* service_;
  grpc::GenericCallbackServerContext* ctx_;
  const Method* method_ = nullptr;
  grpc::ByteBuffer request_bytes_, response_bytes_;
  std::unique_ptr<google::protobuf::Message> request_, response_;
};

namespace {

// A Get or Wait that could not be answered at once. Exactly one of get/wait is set; the request
// and response objects stay alive until the call is finished.
struct Waiter {
  StoreCall* call = nullptr;
  const pb::GetRequest* get_request = nullptr;
  pb::GetResponse* get_response = nullptr;
  const pb::WaitRequest* wait_request = nullptr;
  pb::WaitResponse* wait_response = nullptr;
  Clock::time_point deadline;
};

struct Reply {
  StoreCall* call;
  grpc::Status status;
};

void send(std::vector<Reply>& replies) {
  for (Reply& r : replies) r.call->finish(r.status);
  replies.clear();
}

}  // namespace

class StoreService final : public grpc::CallbackGenericService {
 public:
  explicit StoreService(std::string token) : token_(std::move(token)) {
    timer_ = std::thread([this] { timer_loop(); });
  }
  ~StoreService() override { stop(); }

  // Answers every parked call with UNAVAILABLE and stops the timer; later waits fail at once.
  void stop() {
    std::vector<Reply> replies;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) return;
      stopping_ = true;
      for (Waiter& w : waiters_)
        replies.push_back(
            {w.call, grpc::Status(grpc::StatusCode::UNAVAILABLE, "the store is shutting down")});
      waiters_.clear();
    }
    timer_cv_.notify_all();
    send(replies);
    if (timer_.joinable()) timer_.join();
  }

  grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext* ctx) override {
    return new StoreCall(this, ctx);
  }

  // OK when the call's metadata carries this job's token. The message never repeats the token,
  // expected or received.
  grpc::Status authenticate(const grpc::GenericCallbackServerContext& ctx) const {
    return check_job_token(ctx, token_, "store",
                           "the launcher gives it to workers as TANDEM_JOB_TOKEN");
  }

  void set(StoreCall& call, const pb::SetRequest& req, pb::SetResponse& /*resp*/) {
    if (auto bad = check_key(req.key())) return call.finish(*bad);
    if (auto bad = check_value(req.key(), req.value())) return call.finish(*bad);
    std::vector<Reply> replies;
    {
      std::lock_guard<std::mutex> lock(mu_);
      kv_[req.key()] = req.value();
      collect_ready(replies);
    }
    send(replies);
    return call.finish(grpc::Status::OK);
  }

  void get(StoreCall& call, const pb::GetRequest& req, pb::GetResponse& resp) {
    if (auto bad = check_key(req.key())) return call.finish(*bad);
    std::unique_lock<std::mutex> lock(mu_);
    auto it = kv_.find(req.key());
    if (it != kv_.end() || req.timeout_ms() <= 0) {
      resp.set_found(it != kv_.end());
      if (it != kv_.end()) resp.set_value(it->second);
      lock.unlock();
      return call.finish(grpc::Status::OK);
    }
    Waiter w;
    w.call = &call;
    w.get_request = &req;
    w.get_response = &resp;
    park(std::move(w), req.timeout_ms(), lock);
  }

  void wait(StoreCall& call, const pb::WaitRequest& req, pb::WaitResponse& resp) {
    for (const std::string& key : req.keys())
      if (auto bad = check_key(key)) return call.finish(*bad);
    std::unique_lock<std::mutex> lock(mu_);
    Waiter w;
    w.call = &call;
    w.wait_request = &req;
    w.wait_response = &resp;
    if (all_present(w) || req.timeout_ms() <= 0) {
      fill(w);
      lock.unlock();
      return call.finish(grpc::Status::OK);
    }
    park(std::move(w), req.timeout_ms(), lock);
  }

  void add(StoreCall& call, const pb::AddRequest& req, pb::AddResponse& resp) {
    if (auto bad = check_key(req.key())) return call.finish(*bad);
    std::vector<Reply> replies;
    {
      std::lock_guard<std::mutex> lock(mu_);
      int64_t current = 0;
      auto it = kv_.find(req.key());
      if (it != kv_.end()) {
        const std::string& v = it->second;
        auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), current);
        if (ec != std::errc() || end != v.data() + v.size())
          return call.finish(grpc::Status(
              grpc::StatusCode::INVALID_ARGUMENT,
              str("add to ", quoted(req.key()), ": its value is not a decimal integer")));
      }
      int64_t next = 0;
      if (__builtin_add_overflow(current, req.delta(), &next))
        return call.finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                        str("add to ", quoted(req.key()), ": ", current, " + ",
                                            req.delta(), " overflows int64")));
      kv_[req.key()] = std::to_string(next);
      resp.set_value(next);
      collect_ready(replies);
    }
    send(replies);
    return call.finish(grpc::Status::OK);
  }

  void compare_set(StoreCall& call, const pb::CompareSetRequest& req,
                   pb::CompareSetResponse& resp) {
    if (auto bad = check_key(req.key())) return call.finish(*bad);
    if (auto bad = check_value(req.key(), req.desired())) return call.finish(*bad);
    std::vector<Reply> replies;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = kv_.find(req.key());
      bool matches = it == kv_.end() ? req.expected().empty() : it->second == req.expected();
      if (matches) {
        kv_[req.key()] = req.desired();
        collect_ready(replies);
        it = kv_.find(req.key());
      }
      resp.set_exists(it != kv_.end());
      if (it != kv_.end()) resp.set_value(it->second);
    }
    send(replies);
    return call.finish(grpc::Status::OK);
  }

  void remove(StoreCall& call, const pb::DeleteRequest& req, pb::DeleteResponse& resp) {
    for (const std::string& key : req.keys())
      if (auto bad = check_key(key)) return call.finish(*bad);
    std::lock_guard<std::mutex> lock(mu_);
    int64_t deleted = 0;
    for (const std::string& key : req.keys()) deleted += static_cast<int64_t>(kv_.erase(key));
    resp.set_deleted(deleted);
    return call.finish(grpc::Status::OK);
  }

  void heartbeat(StoreCall& call, const pb::HeartbeatRequest& req,
                 pb::HeartbeatResponse& /*resp*/) {
    if (req.rank() < 0)
      return call.finish(
          grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                       str("heartbeat from rank ", req.rank(), ": ranks are non-negative")));
    std::lock_guard<std::mutex> lock(mu_);
    heartbeats_[req.rank()] = {req.timestamp_ms(), Clock::now()};
    return call.finish(grpc::Status::OK);
  }

  void list_heartbeats(StoreCall& call, const pb::ListHeartbeatsRequest& /*req*/,
                       pb::ListHeartbeatsResponse& resp) {
    std::lock_guard<std::mutex> lock(mu_);
    Clock::time_point now = Clock::now();
    for (const auto& [rank, seen] : heartbeats_) {
      pb::HeartbeatRecord* r = resp.add_records();
      r->set_rank(rank);
      r->set_timestamp_ms(seen.timestamp_ms);
      // Silence while this process did not run is the store's, not the sender's.
      r->set_age_ms(std::chrono::duration_cast<std::chrono::milliseconds>(
                        listening_.listened(seen.received, now))
                        .count());
    }
    return call.finish(grpc::Status::OK);
  }

 private:
  struct Seen {
    int64_t timestamp_ms = 0;
    Clock::time_point received;
  };

  // Requires mu_ (held by `lock`, released here). Parks a call until its keys exist or its
  // timeout passes.
  void park(Waiter w, int64_t timeout_ms, std::unique_lock<std::mutex>& lock) {
    if (stopping_) {
      lock.unlock();
      return w.call->finish(
          grpc::Status(grpc::StatusCode::UNAVAILABLE, "the store is shutting down"));
    }
    w.deadline = Clock::now() + std::chrono::milliseconds(std::min(timeout_ms, kMaxWaitMs));
    waiters_.push_back(std::move(w));
    lock.unlock();
    timer_cv_.notify_all();
  }

  // Requires mu_.
  bool all_present(const Waiter& w) const {
    if (w.get_request) return kv_.count(w.get_request->key()) > 0;
    for (const std::string& key : w.wait_request->keys())
      if (!kv_.count(key)) return false;
    return true;
  }

  // Requires mu_. Writes the answer as of now: the value, or what is missing.
  void fill(const Waiter& w) const {
    if (w.get_request) {
      auto it = kv_.find(w.get_request->key());
      w.get_response->set_found(it != kv_.end());
      if (it != kv_.end()) w.get_response->set_value(it->second);
      return;
    }
    for (const std::string& key : w.wait_request->keys()) {
      auto it = kv_.find(key);
      if (it == kv_.end()) w.wait_response->add_missing(key);
      if (w.wait_request->return_values()) {
        w.wait_response->add_found(it != kv_.end());
        w.wait_response->add_values(it != kv_.end() ? it->second : std::string());
      }
    }
  }

  // Requires mu_. Answers (into `replies`) every parked call whose keys now all exist.
  void collect_ready(std::vector<Reply>& replies) {
    for (auto it = waiters_.begin(); it != waiters_.end();) {
      if (all_present(*it)) {
        fill(*it);
        replies.push_back({it->call, grpc::Status::OK});
        it = waiters_.erase(it);
      } else {
        ++it;
      }
    }
  }

  // Answers parked calls whose timeout passed (with what is missing) and drops those whose
  // client went away. Wakes for the earliest deadline, and at least every ListeningClock::kTick to
  // notice cancelled calls and to tick the listening clock.
  void timer_loop() {
    std::unique_lock<std::mutex> lock(mu_);
    std::vector<Reply> replies;
    while (!stopping_) {
      Clock::time_point now = Clock::now();
      listening_.tick(now);
      Clock::time_point next = now + ListeningClock::kTick;
      for (auto it = waiters_.begin(); it != waiters_.end();) {
        if (it->deadline <= now) {
          fill(*it);
          replies.push_back({it->call, grpc::Status::OK});
          it = waiters_.erase(it);
        } else if (it->call->cancelled()) {
          replies.push_back({it->call, grpc::Status::CANCELLED});
          it = waiters_.erase(it);
        } else {
          next = std::min(next, it->deadline);
          ++it;
        }
      }
      if (!replies.empty()) {
        lock.unlock();
        send(replies);
        lock.lock();
        continue;
      }
      timer_cv_.wait_until(lock, next);
    }
  }

  const std::string token_;
  std::mutex mu_;
  std::condition_variable timer_cv_;
  std::unordered_map<std::string, std::string> kv_;  // guarded by mu_
  std::list<Waiter> waiters_;                        // guarded by mu_
  std::map<int, Seen> heartbeats_;                   // guarded by mu_
  ListeningClock listening_;                         // guarded by mu_; heartbeat ages
  bool stopping_ = false;                            // guarded by mu_
  std::thread timer_;
};

// A method of store.proto: its path, the types of its messages (as default instances) and the
// StoreService member that answers it.
struct StoreCall::Method {
  std::string path;  // "/tandem.store.Store/Set"
  const google::protobuf::Message* request;
  const google::protobuf::Message* response;
  std::function<void(StoreService&, StoreCall&)> handle;
};

namespace {

template <typename Request, typename Response>
StoreCall::Method store_method(const char* name,
                               void (StoreService::*handle)(StoreCall&, const Request&,
                                                            Response&)) {
  return {str("/", pb::Store::service_full_name(), "/", name), &Request::default_instance(),
          &Response::default_instance(), [handle](StoreService& service, StoreCall& call) {
            (service.*handle)(call, static_cast<const Request&>(call.request()),
                              static_cast<Response&>(call.response()));
          }};
}

}  // namespace

const StoreCall::Method* StoreCall::find_method(const std::string& path) {
  static const std::vector<Method> methods = {
      store_method("Set", &StoreService::set),
      store_method("Get", &StoreService::get),
      store_method("Wait", &StoreService::wait),
      store_method("Add", &StoreService::add),
      store_method("CompareSet", &StoreService::compare_set),
      store_method("Delete", &StoreService::remove),
      store_method("Heartbeat", &StoreService::heartbeat),
      store_method("ListHeartbeats", &StoreService::list_heartbeats),
  };
  for (const Method& m : methods)
    if (m.path == path) return &m;
  return nullptr;
}

StoreCall::StoreCall(StoreService* service, grpc::GenericCallbackServerContext* ctx)
    : service_(service), ctx_(ctx) {
  // The token first: a refused call ends here, before gRPC is asked for a byte of its request.
  grpc::Status status = service_->authenticate(*ctx_);
  if (!status.ok()) {
    Finish(status);
    return;
  }
  method_ = find_method(ctx_->method());
  if (!method_) {
    Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                        str("the store has no method ", ctx_->method().substr(0, 80))));
    return;
  }
  request_.reset(method_->request->New());
  response_.reset(method_->response->New());
  StartRead(&request_bytes_);
}

void StoreCall::OnReadDone(bool ok) {
  if (!ok) {
    Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "the call carried no request"));
    return;
  }
  grpc::Status parsed = grpc::SerializationTraits<google::protobuf::Message>::Deserialize(
      &request_bytes_, request_.get());
  if (!parsed.ok()) {
    Finish(
        grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                     str("malformed request to ", ctx_->method(), ": ", parsed.error_message())));
    return;
  }
  method_->handle(*service_, *this);
}

void StoreCall::finish(const grpc::Status& status) {
  if (!status.ok()) {
    Finish(status);
    return;
  }
  bool own_buffer = false;
  grpc::Status serialized = grpc::SerializationTraits<google::protobuf::Message>::Serialize(
      *response_, &response_bytes_, &own_buffer);
  if (!serialized.ok()) {
    Finish(serialized);
    return;
  }
  StartWriteAndFinish(&response_bytes_, grpc::WriteOptions(), status);
}

struct StoreServer::GrpcServer {
  std::unique_ptr<grpc::Server> server;
};

StoreServer::StoreServer(const std::string& host, int port, const std::string& token,
                         const JobTls& tls)
    : host_(host.empty() ? kLoopback : host) {
  TANDEM_CHECK(!token.empty(),
               "store: the job token is empty: create one with generate_job_token()");
  TANDEM_CHECK(port >= 0 && port <= 65535, "store: port ", port, " is out of range 0..65535");
  // Read first: a missing certificate fails before anything starts.
  std::shared_ptr<grpc::ServerCredentials> credentials = server_credentials(host_, tls, "store");
  service_ = std::make_unique<StoreService>(token);
  bool ipv6 = host_.find(':') != std::string::npos && host_.front() != '[';
  std::string address = ipv6 ? str("[", host_, "]:", port) : str(host_, ":", port);
  grpc::ServerBuilder builder;
  int bound_port = 0;
  builder.AddListeningPort(address, credentials, &bound_port);
  builder.RegisterCallbackGenericService(service_.get());
  builder.SetMaxReceiveMessageSize(kMaxMessageBytes);
  // gRPC sets SO_REUSEPORT by default, which would let a second store share a busy port.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  server_ = std::make_unique<GrpcServer>();
  server_->server = builder.BuildAndStart();
  if (!server_->server || bound_port == 0) {
    service_->stop();
    throw CommError(str("store: cannot listen on ", address,
                        ": the port is in use or the address is not on this machine; choose "
                        "another port (0 picks a free one)"));
  }
  port_ = bound_port;
}

StoreServer::~StoreServer() {
  service_->stop();
  if (server_ && server_->server) {
    server_->server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    server_->server->Wait();
  }
}

std::string StoreServer::endpoint() const {
  bool ipv6 = host_.find(':') != std::string::npos && host_.front() != '[';
  return ipv6 ? str("[", host_, "]:", port_) : str(host_, ":", port_);
}

}  // namespace tandem
