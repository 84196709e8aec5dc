// PsShard: the calls of ps.proto on one shard's state (see ps_shard.h). Every wait is in slices of
// kWaitSlice, so a cancelled call or a stop is noticed quickly.
#include "strategies/parameter_server/ps_shard.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/autograd/grad_mode.h"
#include "core/base/error.h"
#include "strategies/parameter_server/proto_tensor.h"

namespace tandem {
namespace {

namespace pb = ::tandem::ps;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr milliseconds kWaitSlice{100};
constexpr int64_t kMaxWaitMs = int64_t{7} * 24 * 3600 * 1000;  // a week: far from overflow
constexpr size_t kKeptBarriers = 256;  // finished barriers remembered for retried calls
constexpr int kMaxWorkers = 1 << 16;
// Steps beyond this are refused: step + 1 and step differences must not overflow (2^62 steps at a
// million per second take 146,000 years).
constexpr int64_t kMaxStep = int64_t{1} << 62;
// Sync: workers wait for each step to be applied before the next, so one or two steps wait for
// pushes; more means workers disagree on the step, and each would hold a shard-sized sum.
constexpr size_t kMaxPendingSteps = 16;

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

// A name from the wire in a message: cut short, control characters as '?'.
std::string shown(const std::string& name) {
  std::string s;
  for (char c : name.substr(0, 80)) s.push_back(static_cast<unsigned char>(c) < 32 ? '?' : c);
  return name.size() > 80 ? s + "..." : s;
}

// sum += t, element-wise in the variable's dtype.
void add_into(Tensor& sum, const WireTensor& t) {
  const int64_t n = sum.numel();
  if (sum.dtype() == DType::kF32) {
    float* s = sum.data<float>();
    for (int64_t i = 0; i < n; ++i) {
      float v;
      std::memcpy(&v, t.data.data() + i * 4, 4);
      s[i] += v;
    }
  } else {
    double* s = sum.data<double>();
    for (int64_t i = 0; i < n; ++i) {
      double v;
      std::memcpy(&v, t.data.data() + i * 8, 8);
      s[i] += v;
    }
  }
}

// t /= w (division, not multiplication by 1/w: the same rounding as ddp's kAvg).
void divide(Tensor& t, double w) {
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

}  // namespace

PsShard::PsShard(PsServerOptions options) : o_(std::move(options)) {}

void PsShard::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
}

bool PsShard::wait_finished(milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, timeout, [&] { return finished_; });
}

bool PsShard::finished() const {
  std::lock_guard<std::mutex> lock(mu_);
  return finished_;
}

int64_t PsShard::max_lead() const {
  std::lock_guard<std::mutex> lock(mu_);
  return max_lead_;
}

grpc::Status PsShard::register_worker(const pb::RegisterRequest& req, pb::RegisterResponse* resp) {
  if (enum_from_name<PsMode>(req.mode()) != o_.mode)
    return precondition(str("shard ", o_.shard, " runs strategy.mode '", o_.mode, "' but worker ",
                            req.worker(), " runs '", shown(req.mode()),
                            "': start servers and workers with the same experiment"));
  if (req.num_shards() != o_.num_shards)
    return precondition(str("shard ", o_.shard, " is one of strategy.num_ps = ", o_.num_shards,
                            " but worker ", req.worker(), " expects ", req.num_shards()));
  std::lock_guard<std::mutex> lock(mu_);
  if (auto bad = check_world(req.world_size())) return *bad;
  if (auto bad = check_worker(req.worker())) return *bad;
  WorkerRecord& w = workers_[req.worker()];
  if (req.incarnation() > w.incarnation || !w.registered) {
    w = WorkerRecord{};
    w.registered = true;
    w.incarnation = req.incarnation();
  }
  done_.erase(req.worker());
  resp->set_initialized(initialized_);
  resp->set_shard(o_.shard);
  return grpc::Status::OK;
}

grpc::Status PsShard::restore(const std::function<bool(pb::RestoreRequest*)>& next) {
  WireAssembler params_in(o_.max_message_bytes, "parameter");
  WireAssembler state_in(o_.max_message_bytes, "optimizer state");
  int world_size = 0;
  pb::RestoreRequest m;
  for (bool first = true; next(&m); first = false) {
    if (first) world_size = m.world_size();
    for (const pb::Tensor& t : m.params())
      if (auto bad = params_in.add(wire_view(t))) return invalid(*bad);
    for (const pb::Tensor& t : m.optimizer())
      if (auto bad = state_in.add(wire_view(t))) return invalid(*bad);
    m.Clear();
  }
  if (auto bad = params_in.finish()) return invalid(*bad);
  if (auto bad = state_in.finish()) return invalid(*bad);
  NamedTensors params;
  std::set<std::string> names;
  for (size_t i = 0; i < params_in.size(); ++i) {
    const WireTensor t = params_in.tensor(i);
    const std::string name(t.name);
    if (t.dtype != "f32" && t.dtype != "f64")
      return invalid(
          str("parameter '", shown(name), "': dtype ", t.dtype, ", expected f32 or f64"));
    if (!names.insert(name).second)
      return invalid(str("parameter '", shown(name), "' appears twice"));
    Tensor p = tensor_from_wire(t).reshape({-1}).contiguous();
    p.set_requires_grad(true);
    params.emplace_back(name, p);
  }
  if (params.empty()) return invalid("restore without parameters: every shard holds at least one");
  NamedTensors opt_state;
  for (size_t i = 0; i < state_in.size(); ++i)
    opt_state.emplace_back(std::string(state_in.tensor(i).name),
                           tensor_from_wire(state_in.tensor(i)));
  std::unique_ptr<Optimizer> opt;
  try {
    opt = o_.make_optimizer(params);
    if (!opt_state.empty()) opt->load_state_dict(opt_state);
  } catch (const Error& e) {
    return invalid(str("restore of shard ", o_.shard, ": ", e.what()));
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (auto bad = check_world(world_size)) return *bad;
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

grpc::Status PsShard::pull(const pb::PullRequest& req, const Cancelled& cancelled,
                           const std::function<bool(const pb::PullResponse&)>& write) {
  if (req.step() < 0 || req.step() > kMaxStep)
    return invalid(str("pull of worker ", req.worker(), ": step ", req.step(), " is out of range"));
  std::vector<pb::PullResponse> stream;
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (auto bad = check_worker(req.worker())) return *bad;
    auto ready = [&] {
      if (!initialized_) return false;
      if (o_.mode == PsMode::kSync) return applied_through_ >= req.step();
      return lagging(req.step()).empty();
    };
    auto why = [&]() -> std::string {
      if (!initialized_) return "the chief worker (rank 0) to send the variables";
      if (o_.mode == PsMode::kSync)
        return str("every worker to push step ", req.step() - 1, " (missing: workers ",
                   list_ints(missing_pushers(req.step() - 1)), ")");
      return str("workers ", list_ints(lagging(req.step())), " to come within max_staleness ",
                 o_.max_staleness, " of step ", req.step());
    };
    if (auto bad = wait(lock, req.timeout_ms(), cancelled, ready, why)) return *bad;
    if (o_.mode == PsMode::kAsync) max_lead_ = std::max(max_lead_, lead(req.step()));
    std::vector<OutTensor> out;
    for (const auto& [name, p] : params_) out.push_back(out_tensor(name, p));
    const int64_t applied = o_.mode == PsMode::kSync ? applied_through_ : pushes_applied_;
    fill_pieces(out, o_.max_message_bytes, [&](size_t k, size_t) {
      if (k == stream.size()) stream.emplace_back().set_applied_through(applied);
      return stream[k].add_params();
    });
  }
  for (const pb::PullResponse& m : stream)
    if (!write(m)) return grpc::Status(grpc::StatusCode::CANCELLED, "the worker went away");
  return grpc::Status::OK;
}

grpc::Status PsShard::push(const std::function<bool(pb::PushRequest*)>& next,
                           pb::PushResponse* resp) {
  // Read and check the whole stream before taking the lock: a bad push changes nothing.
  PushCall call;
  WireAssembler grads_in(o_.max_message_bytes, "gradient");
  pb::PushRequest m;
  bool any = false;
  while (next(&m)) {
    if (!any) {  // the call's fields come from the first message
      call.head.set_worker(m.worker());
      call.head.set_incarnation(m.incarnation());
      call.head.set_step(m.step());
      call.head.set_lr(m.lr());
      any = true;
    }
    for (const pb::Tensor& t : m.grads())
      if (auto bad = grads_in.add(wire_view(t)))
        return invalid(
            str("push of worker ", call.head.worker(), " step ", call.head.step(), ": ", *bad));
    m.Clear();
  }
  const pb::PushRequest& h = call.head;
  if (auto bad = grads_in.finish())
    return invalid(str("push of worker ", h.worker(), " step ", h.step(), ": ", *bad));
  for (size_t i = 0; i < grads_in.size(); ++i) call.grads.push_back(grads_in.tensor(i));
  if (!(h.lr() >= 0) || !std::isfinite(h.lr()))
    return invalid(str("push of worker ", h.worker(), ": learning rate ", h.lr(),
                       " is not a finite number >= 0"));
  if (h.step() < 0 || h.step() > kMaxStep)
    return invalid(str("push of worker ", h.worker(), ": step ", h.step(), " is out of range"));
  std::lock_guard<std::mutex> lock(mu_);
  if (auto bad = check_worker(h.worker())) return *bad;
  if (!aborted_.empty()) return grpc::Status(grpc::StatusCode::ABORTED, aborted_);
  if (!initialized_)
    return precondition(
        str("push to shard ", o_.shard, " before the chief worker sent the variables"));
  std::vector<int> slot(params_.size(), -1);  // call.grads index of each variable
  for (size_t g = 0; g < call.grads.size(); ++g) {
    const std::string name(call.grads[g].name);
    auto it = index_.find(name);
    if (it == index_.end())
      return invalid(str("push of worker ", h.worker(), ": shard ", o_.shard, " has no variable '",
                         shown(name), "'"));
    if (auto bad = check_matches(call.grads[g], params_[it->second].second, "gradient"))
      return invalid(str("push of worker ", h.worker(), ": ", *bad));
    if (slot[it->second] >= 0)
      return invalid(
          str("push of worker ", h.worker(), ": gradient '", shown(name), "' appears twice"));
    slot[it->second] = static_cast<int>(g);
  }
  for (size_t i = 0; i < slot.size(); ++i)
    if (slot[i] < 0)
      return invalid(
          str("push of worker ", h.worker(), ": no gradient for '", params_[i].first, "'"));
  WorkerRecord& w = workers_[h.worker()];
  if (h.incarnation() < w.incarnation)
    return precondition(str("push of worker ", h.worker(), " incarnation ", h.incarnation(),
                            ": the worker was restarted since (incarnation ", w.incarnation, ")"));
  if (h.incarnation() > w.incarnation) {
    w = WorkerRecord{};
    w.registered = true;
    w.incarnation = h.incarnation();
  }
  return o_.mode == PsMode::kSync ? push_sync(call, slot, resp) : push_async(call, slot, w, resp);
}

grpc::Status PsShard::push_sync(const PushCall& call, const std::vector<int>& slot,
                                pb::PushResponse* resp) {
  const pb::PushRequest& h = call.head;
  if (h.step() < applied_through_) {
    resp->set_duplicate(true);  // this step is already applied (a retry)
    return grpc::Status::OK;
  }
  if (!pending_.count(h.step()) && pending_.size() >= kMaxPendingSteps)
    return precondition(str("push of worker ", h.worker(), " step ", h.step(), ": ",
                            pending_.size(),
                            " steps are already waiting for pushes; in sync mode "
                            "every worker pushes the same step"));
  PendingStep& p = pending_[h.step()];
  if (p.workers.count(h.worker())) {
    resp->set_duplicate(true);
    return grpc::Status::OK;
  }
  NoGradGuard ng;
  if (p.sums.empty()) {
    for (size_t i = 0; i < params_.size(); ++i)
      p.sums.push_back(tensor_from_wire(call.grads[slot[i]]));
    p.lr = h.lr();
  } else {
    for (size_t i = 0; i < params_.size(); ++i) add_into(p.sums[i], call.grads[slot[i]]);
  }
  p.workers.insert(h.worker());
  if (static_cast<int>(p.workers.size()) < world_size_) return grpc::Status::OK;
  // Every worker pushed: apply the average (sum, then divide: as ddp's all-reduce kAvg).
  for (size_t i = 0; i < params_.size(); ++i) divide(p.sums[i], static_cast<double>(world_size_));
  apply(p.sums, p.lr);
  applied_through_ = h.step() + 1;
  pending_.erase(pending_.begin(), pending_.upper_bound(h.step()));
  cv_.notify_all();
  return grpc::Status::OK;
}

grpc::Status PsShard::push_async(const PushCall& call, const std::vector<int>& slot,
                                 WorkerRecord& w, pb::PushResponse* resp) {
  if (call.head.step() <= w.last_step) {
    resp->set_duplicate(true);
    return grpc::Status::OK;
  }
  NoGradGuard ng;
  std::vector<Tensor> g;
  for (size_t i = 0; i < params_.size(); ++i) g.push_back(tensor_from_wire(call.grads[slot[i]]));
  apply(g, call.head.lr());
  w.last_step = call.head.step();
  pushes_applied_ += 1;
  cv_.notify_all();
  return grpc::Status::OK;
}

void PsShard::apply(const std::vector<Tensor>& grads, double lr) {
  for (size_t i = 0; i < params_.size(); ++i) params_[i].second.set_grad(grads[i]);
  optimizer_->set_lr(lr);
  optimizer_->step();
  for (auto& [name, p] : params_) p.set_grad(Tensor());
}

grpc::Status PsShard::barrier(const pb::BarrierRequest& req, const Cancelled& cancelled,
                              pb::BarrierResponse* resp) {
  if (req.key().empty() || req.key().size() > 256)
    return invalid("barrier key must have 1 to 256 bytes");
  if (req.values_size() > 1024) return invalid("barrier with more than 1024 values");
  std::unique_lock<std::mutex> lock(mu_);
  if (auto bad = check_worker(req.worker())) return *bad;
  if (world_size_ == 0) return precondition("barrier before any worker registered");
  auto [it, fresh] = barriers_.try_emplace(req.key());
  BarrierState& b = it->second;
  if (fresh) {
    b.sums.assign(req.values_size(), 0.0);
    barrier_order_.push_back(req.key());
  }
  if (static_cast<int>(b.sums.size()) != req.values_size())
    return invalid(str("barrier '", shown(req.key()), "': worker ", req.worker(), " sent ",
                       req.values_size(), " values, others ", b.sums.size()));
  if (b.arrived.insert(req.worker()).second) {
    for (int i = 0; i < req.values_size(); ++i) b.sums[i] += req.values(i);
    if (static_cast<int>(b.arrived.size()) == world_size_) {
      b.complete = true;
      cv_.notify_all();
    }
  }
  const std::string key = req.key();
  // find, never operator[]: a barrier dropped meanwhile must not come back empty.
  auto ready = [&] {
    auto found = barriers_.find(key);
    return found == barriers_.end() || found->second.complete;
  };
  auto why = [&]() -> std::string {
    std::vector<int> missing;
    auto found = barriers_.find(key);
    for (int r = 0; r < world_size_; ++r)
      if (found != barriers_.end() && !found->second.arrived.count(r)) missing.push_back(r);
    return str("workers ", list_ints(missing), " at barrier '", shown(key), "'");
  };
  if (auto bad = wait(lock, req.timeout_ms(), cancelled, ready, why)) return *bad;
  auto found = barriers_.find(key);
  if (found == barriers_.end()) return precondition(str("barrier '", shown(key), "' is too old"));
  for (double v : found->second.sums) resp->add_sums(v);
  while (barrier_order_.size() > kKeptBarriers) {
    barriers_.erase(barrier_order_.front());
    barrier_order_.pop_front();
  }
  return grpc::Status::OK;
}

grpc::Status PsShard::save(const std::function<bool(const pb::SaveResponse&)>& write) {
  std::vector<pb::SaveResponse> stream;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!initialized_)
      return precondition(str("save of shard ", o_.shard, " before it holds variables"));
    std::vector<OutTensor> out;
    for (const auto& [name, p] : params_) out.push_back(out_tensor(name, p));
    const size_t num_params = out.size();
    for (const auto& [name, t] : optimizer_->state_dict()) out.push_back(out_tensor(name, t));
    fill_pieces(out, o_.max_message_bytes, [&](size_t k, size_t t) {
      if (k == stream.size()) stream.emplace_back();
      return t < num_params ? stream[k].add_params() : stream[k].add_optimizer();
    });
  }
  for (const pb::SaveResponse& m : stream)
    if (!write(m)) return grpc::Status(grpc::StatusCode::CANCELLED, "the worker went away");
  return grpc::Status::OK;
}

grpc::Status PsShard::abort(const pb::AbortRequest& req) {
  std::lock_guard<std::mutex> lock(mu_);
  if (auto bad = check_worker(req.worker())) return *bad;
  if (aborted_.empty())
    aborted_ = str("worker ", req.worker(), " failed: ", req.reason().substr(0, 1024));
  cv_.notify_all();
  return grpc::Status::OK;
}

grpc::Status PsShard::done(const pb::DoneRequest& req) {
  std::lock_guard<std::mutex> lock(mu_);
  if (auto bad = check_worker(req.worker())) return *bad;
  done_.insert(req.worker());
  if (world_size_ > 0 && static_cast<int>(done_.size()) == world_size_) finished_ = true;
  cv_.notify_all();  // a staleness wait may have been waiting for this worker
  return grpc::Status::OK;
}

// Requires mu_. Async: the unfinished workers more than max_staleness steps behind `step`.
std::vector<int> PsShard::lagging(int64_t step) const {
  std::vector<int> out;
  if (o_.max_staleness <= 0) return out;
  for (const auto& [id, w] : workers_)
    if (w.registered && !done_.count(id) && step - (w.last_step + 1) > o_.max_staleness)
      out.push_back(id);
  return out;
}

// Requires mu_. Async: how many steps `step` is ahead of the slowest unfinished registered
// worker's next one (what max_staleness bounds).
int64_t PsShard::lead(int64_t step) const {
  int64_t out = 0;
  for (const auto& [id, w] : workers_)
    if (w.registered && !done_.count(id)) out = std::max(out, step - (w.last_step + 1));
  return out;
}

// Requires mu_. Sync: the workers that have not pushed `step` yet.
std::vector<int> PsShard::missing_pushers(int64_t step) const {
  std::vector<int> out;
  auto it = pending_.find(step);
  for (int r = 0; r < world_size_; ++r)
    if (it == pending_.end() || !it->second.workers.count(r)) out.push_back(r);
  return out;
}

// Requires mu_ (held by `lock`). Waits until ready() or the call's timeout, cancellation or a
// stop; nullopt when ready.
std::optional<grpc::Status> PsShard::wait(std::unique_lock<std::mutex>& lock, int64_t timeout_ms,
                                          const Cancelled& cancelled,
                                          const std::function<bool()>& ready,
                                          const std::function<std::string()>& why) {
  const auto deadline = Clock::now() + milliseconds(std::clamp<int64_t>(timeout_ms, 0, kMaxWaitMs));
  while (!ready()) {
    if (!aborted_.empty()) return grpc::Status(grpc::StatusCode::ABORTED, aborted_);
    if (stopping_)
      return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                          str("parameter server shard ", o_.shard, " is shutting down"));
    if (cancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "call cancelled");
    if (Clock::now() >= deadline)
      return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                          str("shard ", o_.shard, " waited ", timeout_ms, " ms for ", why()));
    cv_.wait_for(lock, std::min<Clock::duration>(kWaitSlice, deadline - Clock::now()));
  }
  return std::nullopt;
}

// Requires mu_. The job's world size is fixed by the first worker or Restore that names it.
std::optional<grpc::Status> PsShard::check_world(int world_size) {
  if (world_size < 1 || world_size > kMaxWorkers)
    return invalid(str("world size ", world_size, " is out of range 1..", kMaxWorkers));
  if (world_size_ == 0) world_size_ = world_size;
  if (world_size != world_size_)
    return precondition(
        str("shard ", o_.shard, " serves a job of ", world_size_, " workers, not ", world_size));
  return std::nullopt;
}

// Requires mu_.
std::optional<grpc::Status> PsShard::check_worker(int worker) const {
  if (worker < 0 || (world_size_ > 0 && worker >= world_size_) || worker >= kMaxWorkers)
    return invalid(
        str("worker ", worker, " is out of range for a job of ", world_size_, " workers"));
  return std::nullopt;
}

}  // namespace tandem
