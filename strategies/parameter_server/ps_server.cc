// PsServer: the service behind ps.proto. One mutex (mu_) guards every field of PsService; a call
// that must wait (Pull before its step is ready, Barrier before every worker arrived) waits on cv_
// in slices, so a cancelled call or a shutdown is noticed within kWaitSlice.
#include "strategies/parameter_server/ps_server.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <set>

#include "core/autograd/grad_mode.h"
#include "core/base/error.h"
#include "core/ops/ops.h"
#include "strategies/parameter_server/proto_tensor.h"
#include "strategies/parameter_server/ps.grpc.pb.h"

namespace tandem {
namespace {

namespace pb = ::tandem::ps;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr char kTokenHeader[] = "x-tandem-token";
constexpr milliseconds kWaitSlice{100};
constexpr int64_t kMaxWaitMs = int64_t{7} * 24 * 3600 * 1000;  // a week: far from overflow
constexpr size_t kKeptBarriers = 256;  // finished barriers remembered for retried calls
constexpr int kMaxWorkers = 1 << 16;

bool constant_time_equal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

grpc::Status invalid(const std::string& msg) {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, msg);
}
grpc::Status precondition(const std::string& msg) {
  return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, msg);
}

std::string list_ints(const std::vector<int>& v) {
  std::string s;
  for (size_t i = 0; i < v.size() && i < 16; ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  if (v.size() > 16) s += str(" and ", v.size() - 16, " more");
  return s;
}

}  // namespace

class PsService final : public pb::ParameterServer::Service {
 public:
  explicit PsService(PsServerOptions o) : o_(std::move(o)) {}

  void stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
  }

  bool wait_finished(milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return finished_; });
  }
  bool finished() const {
    std::lock_guard<std::mutex> lock(mu_);
    return finished_;
  }
  int64_t max_lead() const {
    std::lock_guard<std::mutex> lock(mu_);
    return max_lead_;
  }

  grpc::Status Register(grpc::ServerContext* ctx, const pb::RegisterRequest* req,
                        pb::RegisterResponse* resp) override {
    if (auto bad = authorize(ctx)) return *bad;
    if (req->mode() != o_.mode)
      return precondition(str("shard ", o_.shard, " runs strategy.mode '", o_.mode, "' but worker ",
                              req->worker(), " runs '", req->mode(),
                              "': start servers and workers with the same experiment"));
    if (req->num_shards() != o_.num_shards)
      return precondition(str("shard ", o_.shard, " is one of strategy.num_ps = ", o_.num_shards,
                              " but worker ", req->worker(), " expects ", req->num_shards()));
    std::lock_guard<std::mutex> lock(mu_);
    if (auto bad = check_world(req->world_size())) return *bad;
    if (auto bad = check_worker(req->worker())) return *bad;
    WorkerRecord& w = workers_[req->worker()];
    if (req->incarnation() > w.incarnation || !w.registered) {
      w = WorkerRecord{};
      w.registered = true;
      w.incarnation = req->incarnation();
    }
    done_.erase(req->worker());
    resp->set_initialized(initialized_);
    resp->set_shard(o_.shard);
    return grpc::Status::OK;
  }

  grpc::Status Restore(grpc::ServerContext* ctx, const pb::RestoreRequest* req,
                       pb::RestoreResponse*) override {
    if (auto bad = authorize(ctx)) return *bad;
    NamedTensors params;
    std::set<std::string> names;
    for (const pb::Tensor& m : req->params()) {
      WireTensor t = wire_view(m);
      if (auto bad = check_wire_tensor(t, o_.max_message_bytes, "parameter")) return invalid(*bad);
      if (t.dtype != "f32" && t.dtype != "f64")
        return invalid(
            str("parameter '", m.name(), "': dtype ", m.dtype(), ", expected f32 or f64"));
      if (!names.insert(m.name()).second)
        return invalid(str("parameter '", m.name(), "' appears twice"));
      Tensor p = tensor_from_wire(t).reshape({-1}).contiguous();
      p.set_requires_grad(true);
      params.emplace_back(m.name(), p);
    }
    if (params.empty())
      return invalid("restore without parameters: every shard holds at least one");
    NamedTensors opt_state;
    for (const pb::Tensor& m : req->optimizer()) {
      WireTensor t = wire_view(m);
      if (auto bad = check_wire_tensor(t, o_.max_message_bytes, "optimizer state"))
        return invalid(*bad);
      opt_state.emplace_back(m.name(), tensor_from_wire(t));
    }
    std::unique_ptr<Optimizer> opt;
    try {
      opt = o_.make_optimizer(params);
      if (!opt_state.empty()) opt->load_state_dict(opt_state);
    } catch (const Error& e) {
      return invalid(str("restore of shard ", o_.shard, ": ", e.what()));
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (auto bad = check_world(req->world_size())) return *bad;
    params_ = std::move(params);
    index_.clear();
    for (size_t i = 0; i < params_.size(); ++i) index_[params_[i].first] = static_cast<int>(i);
    optimizer_ = std::move(opt);
    pending_.clear();
    applied_through_ = 0;
    pushes_applied_ = 0;
    for (auto& [id, w] : workers_) w.last_step = -1;
    initialized_ = true;
    aborted_.clear();
    cv_.notify_all();
    return grpc::Status::OK;
  }

  grpc::Status Pull(grpc::ServerContext* ctx, const pb::PullRequest* req,
                    pb::PullResponse* resp) override {
    if (auto bad = authorize(ctx)) return *bad;
    std::unique_lock<std::mutex> lock(mu_);
    if (auto bad = check_worker(req->worker())) return *bad;
    auto ready = [&] {
      if (!initialized_) return false;
      if (o_.mode == "sync") return applied_through_ >= req->step();
      return lagging(req->step()).empty();
    };
    auto why = [&]() -> std::string {
      if (!initialized_) return "the chief worker (rank 0) to send the variables";
      if (o_.mode == "sync")
        return str("every worker to push step ", req->step() - 1, " (missing: workers ",
                   list_ints(missing_pushers(req->step() - 1)), ")");
      return str("workers ", list_ints(lagging(req->step())), " to come within max_staleness ",
                 o_.max_staleness, " of step ", req->step());
    };
    if (auto bad = wait(ctx, lock, req->timeout_ms(), ready, why)) return *bad;
    if (o_.mode == "async") max_lead_ = std::max(max_lead_, lead(req->step()));
    for (const auto& [name, p] : params_) to_proto(name, p, resp->add_params());
    resp->set_applied_through(o_.mode == "sync" ? applied_through_ : pushes_applied_);
    return grpc::Status::OK;
  }

  grpc::Status Push(grpc::ServerContext* ctx, const pb::PushRequest* req,
                    pb::PushResponse* resp) override {
    if (auto bad = authorize(ctx)) return *bad;
    // Check the whole message before taking the lock: a bad push changes nothing.
    std::vector<WireTensor> grads;
    for (const pb::Tensor& m : req->grads()) {
      grads.push_back(wire_view(m));
      if (auto bad = check_wire_tensor(grads.back(), o_.max_message_bytes, "gradient"))
        return invalid(str("push of worker ", req->worker(), " step ", req->step(), ": ", *bad));
    }
    if (!(req->lr() >= 0) || !std::isfinite(req->lr()))
      return invalid(str("push of worker ", req->worker(), ": learning rate ", req->lr(),
                         " is not a finite number >= 0"));
    if (req->step() < 0) return invalid(str("push of worker ", req->worker(), ": negative step"));
    std::lock_guard<std::mutex> lock(mu_);
    if (auto bad = check_worker(req->worker())) return *bad;
    if (!aborted_.empty()) return grpc::Status(grpc::StatusCode::ABORTED, aborted_);
    if (!initialized_)
      return precondition(
          str("push to shard ", o_.shard, " before the chief worker sent the variables"));
    std::vector<int> slot(params_.size(), -1);  // grads index of each variable
    for (size_t g = 0; g < grads.size(); ++g) {
      auto it = index_.find(std::string(grads[g].name));
      if (it == index_.end())
        return invalid(str("push of worker ", req->worker(), ": shard ", o_.shard,
                           " has no variable '", grads[g].name, "'"));
      if (auto bad = check_matches(grads[g], params_[it->second].second, "gradient"))
        return invalid(str("push of worker ", req->worker(), ": ", *bad));
      if (slot[it->second] >= 0)
        return invalid(str("push of worker ", req->worker(), ": gradient '", grads[g].name,
                           "' appears twice"));
      slot[it->second] = static_cast<int>(g);
    }
    for (size_t i = 0; i < slot.size(); ++i)
      if (slot[i] < 0)
        return invalid(
            str("push of worker ", req->worker(), ": no gradient for '", params_[i].first, "'"));
    WorkerRecord& w = workers_[req->worker()];
    if (req->incarnation() < w.incarnation)
      return precondition(str("push of worker ", req->worker(), " incarnation ", req->incarnation(),
                              ": the worker was restarted since (incarnation ", w.incarnation,
                              ")"));
    if (req->incarnation() > w.incarnation) {
      w = WorkerRecord{};
      w.registered = true;
      w.incarnation = req->incarnation();
    }
    return o_.mode == "sync" ? push_sync(*req, grads, slot, resp)
                             : push_async(*req, grads, slot, w, resp);
  }

  grpc::Status Barrier(grpc::ServerContext* ctx, const pb::BarrierRequest* req,
                       pb::BarrierResponse* resp) override {
    if (auto bad = authorize(ctx)) return *bad;
    if (req->key().empty() || req->key().size() > 256)
      return invalid("barrier key must have 1 to 256 bytes");
    if (req->values_size() > 1024) return invalid("barrier with more than 1024 values");
    std::unique_lock<std::mutex> lock(mu_);
    if (auto bad = check_worker(req->worker())) return *bad;
    if (world_size_ == 0) return precondition("barrier before any worker registered");
    auto [it, fresh] = barriers_.try_emplace(req->key());
    BarrierState& b = it->second;
    if (fresh) {
      b.sums.assign(req->values_size(), 0.0);
      barrier_order_.push_back(req->key());
    }
    if (static_cast<int>(b.sums.size()) != req->values_size())
      return invalid(str("barrier '", req->key(), "': worker ", req->worker(), " sent ",
                         req->values_size(), " values, others ", b.sums.size()));
    if (b.arrived.insert(req->worker()).second) {
      for (int i = 0; i < req->values_size(); ++i) b.sums[i] += req->values(i);
      if (static_cast<int>(b.arrived.size()) == world_size_) {
        b.complete = true;
        cv_.notify_all();
      }
    }
    const std::string key = req->key();
    auto ready = [&] { return barriers_.count(key) == 0 || barriers_[key].complete; };
    auto why = [&]() -> std::string {
      std::vector<int> missing;
      for (int r = 0; r < world_size_; ++r)
        if (!barriers_[key].arrived.count(r)) missing.push_back(r);
      return str("workers ", list_ints(missing), " at barrier '", key, "'");
    };
    if (auto bad = wait(ctx, lock, req->timeout_ms(), ready, why)) return *bad;
    auto found = barriers_.find(key);
    if (found == barriers_.end()) return precondition(str("barrier '", key, "' is too old"));
    for (double v : found->second.sums) resp->add_sums(v);
    while (barrier_order_.size() > kKeptBarriers) {
      barriers_.erase(barrier_order_.front());
      barrier_order_.pop_front();
    }
    return grpc::Status::OK;
  }

  grpc::Status Save(grpc::ServerContext* ctx, const pb::SaveRequest*,
                    pb::SaveResponse* resp) override {
    if (auto bad = authorize(ctx)) return *bad;
    std::lock_guard<std::mutex> lock(mu_);
    if (!initialized_)
      return precondition(str("save of shard ", o_.shard, " before it holds variables"));
    for (const auto& [name, p] : params_) to_proto(name, p, resp->add_params());
    for (const auto& [name, t] : optimizer_->state_dict()) to_proto(name, t, resp->add_optimizer());
    return grpc::Status::OK;
  }

  grpc::Status Abort(grpc::ServerContext* ctx, const pb::AbortRequest* req,
                     pb::AbortResponse*) override {
    if (auto bad = authorize(ctx)) return *bad;
    std::lock_guard<std::mutex> lock(mu_);
    if (auto bad = check_worker(req->worker())) return *bad;
    if (aborted_.empty())
      aborted_ = str("worker ", req->worker(), " failed: ", req->reason().substr(0, 1024));
    cv_.notify_all();
    return grpc::Status::OK;
  }

  grpc::Status Done(grpc::ServerContext* ctx, const pb::DoneRequest* req,
                    pb::DoneResponse*) override {
    if (auto bad = authorize(ctx)) return *bad;
    std::lock_guard<std::mutex> lock(mu_);
    if (auto bad = check_worker(req->worker())) return *bad;
    done_.insert(req->worker());
    if (world_size_ > 0 && static_cast<int>(done_.size()) == world_size_) finished_ = true;
    cv_.notify_all();  // a staleness wait may have been waiting for this worker
    return grpc::Status::OK;
  }

 private:
  struct WorkerRecord {
    bool registered = false;
    int64_t incarnation = 0;
    int64_t last_step = -1;  // async: the newest step applied
  };
  struct PendingStep {  // sync: the pushes of one step so far
    std::set<int> workers;
    std::vector<Tensor> sums;
    double lr = 0;
  };
  struct BarrierState {
    std::set<int> arrived;
    std::vector<double> sums;
    bool complete = false;
  };

  // Requires mu_.
  grpc::Status push_sync(const pb::PushRequest& req, const std::vector<WireTensor>& grads,
                         const std::vector<int>& slot, pb::PushResponse* resp) {
    if (req.step() < applied_through_) {
      resp->set_duplicate(true);  // this step is already applied (a retry)
      return grpc::Status::OK;
    }
    PendingStep& p = pending_[req.step()];
    if (p.workers.count(req.worker())) {
      resp->set_duplicate(true);
      return grpc::Status::OK;
    }
    NoGradGuard ng;
    if (p.sums.empty()) {
      for (size_t i = 0; i < params_.size(); ++i)
        p.sums.push_back(tensor_from_wire(grads[slot[i]]));
      p.lr = req.lr();
    } else {
      for (size_t i = 0; i < params_.size(); ++i) add_into(p.sums[i], grads[slot[i]]);
    }
    p.workers.insert(req.worker());
    if (static_cast<int>(p.workers.size()) < world_size_) return grpc::Status::OK;
    // Every worker pushed: apply the average (sum, then divide: as ddp's all-reduce kAvg).
    const double w = static_cast<double>(world_size_);
    for (size_t i = 0; i < params_.size(); ++i) scale_into(p.sums[i], 1.0 / w, w);
    apply(p.sums, p.lr);
    applied_through_ = req.step() + 1;
    pending_.erase(pending_.begin(), pending_.upper_bound(req.step()));
    cv_.notify_all();
    return grpc::Status::OK;
  }

  grpc::Status push_async(const pb::PushRequest& req, const std::vector<WireTensor>& grads,
                          const std::vector<int>& slot, WorkerRecord& w, pb::PushResponse* resp) {
    if (req.step() <= w.last_step) {
      resp->set_duplicate(true);
      return grpc::Status::OK;
    }
    NoGradGuard ng;
    std::vector<Tensor> g;
    for (size_t i = 0; i < params_.size(); ++i) g.push_back(tensor_from_wire(grads[slot[i]]));
    apply(g, req.lr());
    w.last_step = req.step();
    pushes_applied_ += 1;
    cv_.notify_all();
    return grpc::Status::OK;
  }

  // sum += t, element-wise in the variable's dtype.
  static void add_into(Tensor& sum, const WireTensor& t) {
    const int64_t n = sum.numel();
    if (sum.dtype() == DType::kF32) {
      float* s = sum.data<float>();
      const char* src = t.data.data();
      for (int64_t i = 0; i < n; ++i) {
        float v;
        std::memcpy(&v, src + i * 4, 4);
        s[i] += v;
      }
    } else {
      double* s = sum.data<double>();
      const char* src = t.data.data();
      for (int64_t i = 0; i < n; ++i) {
        double v;
        std::memcpy(&v, src + i * 8, 8);
        s[i] += v;
      }
    }
  }
  // t /= w (division, not multiplication by 1/w: the same rounding as ddp's kAvg).
  static void scale_into(Tensor& t, double, double w) {
    const int64_t n = t.numel();
    if (t.dtype() == DType::kF32) {
      float* s = t.data<float>();
      const float wf = static_cast<float>(w);
      for (int64_t i = 0; i < n; ++i) s[i] = s[i] / wf;
    } else {
      double* s = t.data<double>();
      for (int64_t i = 0; i < n; ++i) s[i] = s[i] / w;
    }
  }

  // Requires mu_. One optimizer step with `grads` (one per variable, in order).
  void apply(const std::vector<Tensor>& grads, double lr) {
    for (size_t i = 0; i < params_.size(); ++i) params_[i].second.set_grad(grads[i]);
    optimizer_->set_lr(lr);
    optimizer_->step();
    for (auto& [name, p] : params_) p.set_grad(Tensor());
  }

  // Requires mu_. Async: the unfinished workers more than max_staleness steps behind `step`.
  std::vector<int> lagging(int64_t step) const {
    std::vector<int> out;
    if (o_.max_staleness <= 0) return out;
    for (const auto& [id, w] : workers_)
      if (w.registered && !done_.count(id) && step - (w.last_step + 1) > o_.max_staleness)
        out.push_back(id);
    return out;
  }
  // Requires mu_. Async: how many steps `step` is ahead of the slowest unfinished registered
  // worker's next one (what max_staleness bounds).
  int64_t lead(int64_t step) const {
    int64_t out = 0;
    for (const auto& [id, w] : workers_)
      if (w.registered && !done_.count(id)) out = std::max(out, step - (w.last_step + 1));
    return out;
  }
  // Requires mu_. Sync: the workers that have not pushed `step` yet.
  std::vector<int> missing_pushers(int64_t step) const {
    std::vector<int> out;
    auto it = pending_.find(step);
    for (int r = 0; r < world_size_; ++r)
      if (it == pending_.end() || !it->second.workers.count(r)) out.push_back(r);
    return out;
  }

  // Requires mu_ (held by `lock`). Waits until ready() or the call's timeout, cancellation or a
  // shutdown; nullopt when ready.
  template <typename Ready, typename Why>
  std::optional<grpc::Status> wait(grpc::ServerContext* ctx, std::unique_lock<std::mutex>& lock,
                                   int64_t timeout_ms, Ready ready, Why why) {
    const auto deadline =
        Clock::now() + milliseconds(std::clamp<int64_t>(timeout_ms, 0, kMaxWaitMs));
    while (!ready()) {
      if (!aborted_.empty()) return grpc::Status(grpc::StatusCode::ABORTED, aborted_);
      if (stopping_)
        return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                            str("parameter server shard ", o_.shard, " is shutting down"));
      if (ctx->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "call cancelled");
      if (Clock::now() >= deadline)
        return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                            str("shard ", o_.shard, " waited ", timeout_ms, " ms for ", why()));
      cv_.wait_for(lock, std::min<Clock::duration>(kWaitSlice, deadline - Clock::now()));
    }
    return std::nullopt;
  }

  // Requires mu_. The job's world size is fixed by the first worker or Restore that names it.
  std::optional<grpc::Status> check_world(int world_size) {
    if (world_size < 1 || world_size > kMaxWorkers)
      return invalid(str("world size ", world_size, " is out of range 1..", kMaxWorkers));
    if (world_size_ == 0) world_size_ = world_size;
    if (world_size != world_size_)
      return precondition(
          str("shard ", o_.shard, " serves a job of ", world_size_, " workers, not ", world_size));
    return std::nullopt;
  }
  // Requires mu_.
  std::optional<grpc::Status> check_worker(int worker) const {
    if (worker < 0 || (world_size_ > 0 && worker >= world_size_) || worker >= kMaxWorkers)
      return invalid(
          str("worker ", worker, " is out of range for a job of ", world_size_, " workers"));
    return std::nullopt;
  }

  // The call refused, or nullopt when it carries this job's token. Never repeats a token.
  std::optional<grpc::Status> authorize(grpc::ServerContext* ctx) const {
    const auto& metadata = ctx->client_metadata();
    auto it = metadata.find(kTokenHeader);
    if (it == metadata.end())
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                          "missing job token: every parameter-server call must carry the job's "
                          "token (set TANDEM_JOB_TOKEN; tandem launch sets it for its workers)");
    if (!constant_time_equal(std::string_view(it->second.data(), it->second.size()), o_.token))
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                          "wrong job token: this parameter server belongs to another job or the "
                          "token was mistyped (TANDEM_JOB_TOKEN)");
    return std::nullopt;
  }

  const PsServerOptions o_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::string aborted_;  // why the job was aborted (Abort); "" while it runs
  bool initialized_ = false;
  bool finished_ = false;
  int world_size_ = 0;
  NamedTensors params_;               // the shard's pieces, flat, contiguous
  std::map<std::string, int> index_;  // piece name -> index in params_
  std::unique_ptr<Optimizer> optimizer_;
  std::map<int64_t, PendingStep> pending_;  // sync: by step
  int64_t applied_through_ = 0;             // sync: every step below this is applied
  int64_t pushes_applied_ = 0;              // async
  int64_t max_lead_ = 0;                    // async: the largest lead() a pull was served at
  std::map<int, WorkerRecord> workers_;
  std::set<int> done_;
  std::map<std::string, BarrierState> barriers_;
  std::deque<std::string> barrier_order_;
};

struct PsServer::GrpcServer {
  std::unique_ptr<grpc::Server> server;
};

PsServer::PsServer(PsServerOptions options) {
  TANDEM_CHECK_T(ConfigError, !options.token.empty(), "parameter server: empty job token");
  TANDEM_CHECK_T(ConfigError, options.mode == "sync" || options.mode == "async", "strategy.mode: '",
                 options.mode, "' is not one of sync, async");
  TANDEM_CHECK_T(ConfigError, options.shard >= 0 && options.shard < options.num_shards, "--shard ",
                 options.shard, " is out of range for strategy.num_ps = ", options.num_shards,
                 " (expected 0 to ", options.num_shards - 1, ")");
  TANDEM_CHECK_T(
      ConfigError,
      options.max_message_bytes > 0 && options.max_message_bytes <= (int64_t{2} << 30) - (1 << 20),
      "parameter server: max message size ", options.max_message_bytes,
      " bytes is out of range (1 byte to 2 GiB - 1 MiB)");
  TANDEM_ASSERT(options.make_optimizer != nullptr, "PsServerOptions.make_optimizer not set");
  host_ = options.host.empty() ? std::string("127.0.0.1") : options.host;
  const int64_t max_message = options.max_message_bytes;
  const int port = options.port;
  service_ = std::make_unique<PsService>(std::move(options));
  grpc::ServerBuilder builder;
  const std::string address =
      host_.find(':') != std::string::npos ? str("[", host_, "]:", port) : str(host_, ":", port);
  int bound = 0;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &bound);
  builder.RegisterService(service_.get());
  // gRPC refuses a larger message before it is parsed; framing of a full message fits in 1 MiB.
  builder.SetMaxReceiveMessageSize(static_cast<int>(max_message + (1 << 20)));
  builder.SetMaxSendMessageSize(-1);
  server_ = std::make_unique<GrpcServer>();
  server_->server = builder.BuildAndStart();
  if (!server_->server || bound == 0)
    throw CommError(str("parameter server cannot listen on ", address,
                        ": the port is taken or the host is not an address of this machine"));
  port_ = bound;
}

PsServer::~PsServer() {
  shutdown();
}

std::string PsServer::endpoint() const {
  return host_.find(':') != std::string::npos ? str("[", host_, "]:", port_)
                                              : str(host_, ":", port_);
}

bool PsServer::wait_finished(milliseconds timeout) {
  return service_->wait_finished(timeout);
}
bool PsServer::finished() const {
  return service_->finished();
}
int64_t PsServer::max_lead() const {
  return service_->max_lead();
}

void PsServer::shutdown(milliseconds grace) {
  if (!server_ || !server_->server) return;
  service_->stop();
  server_->server->Shutdown(std::chrono::system_clock::now() + grace);
  server_->server->Wait();
  server_->server.reset();
}

}  // namespace tandem
