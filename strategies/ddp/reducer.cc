#include "strategies/ddp/reducer.h"

#include "strategies/step_trace.h"

#include <algorithm>
#include <iostream>
#include <sstream>

#include "core/autograd/grad_mode.h"
#include "core/base/error.h"
#include "core/ops/ops.h"
#include "strategies/ddp/bucket_plan.h"

namespace tandem {

Reducer::Reducer(NamedTensors params, Communicator& comm, ReducerOptions options)
    : params_(std::move(params)), comm_(comm), options_(std::move(options)) {
  plan(reverse_order(static_cast<int>(params_.size())));
  warned_unused_.assign(params_.size(), false);
  for (size_t i = 0; i < params_.size(); ++i) {
    int index = static_cast<int>(i);
    hooks_.push_back(params_[i].second.register_post_accumulate_grad_hook(
        [this, index](const Tensor&) { on_grad_ready(index); }));
  }
}

Reducer::~Reducer() {
  for (HookHandle& h : hooks_) h.remove();
  for (auto& [name, p] : params_) p.set_grad_destination(Tensor());
}

void Reducer::plan(const std::vector<int>& order) {
  // Keep current gradient values across a re-plan.
  std::vector<Tensor> old_grads(params_.size());
  for (size_t i = 0; i < params_.size(); ++i)
    if (params_[i].second.grad().defined()) old_grads[i] = params_[i].second.grad().clone();
  buckets_.clear();
  bucket_of_.assign(params_.size(), -1);
  std::vector<BucketItem> items;
  for (const auto& [name, t] : params_)
    items.push_back({t.numel() * static_cast<int64_t>(dtype_size(t.dtype())), t.dtype()});
  for (std::vector<int>& members :
       plan_buckets(items, order, options_.first_bucket_bytes, options_.bucket_bytes)) {
    buckets_.emplace_back();
    buckets_.back().params = std::move(members);
  }
  NoGradGuard ng;
  for (size_t k = 0; k < buckets_.size(); ++k) {
    Bucket& bk = buckets_[k];
    int64_t n = 0;
    for (int p : bk.params) {
      bk.offsets.push_back(n);
      n += params_[p].second.numel();
    }
    DType dt = params_[bk.params[0]].second.dtype();
    const Device dev = params_[bk.params[0]].second.device();  // buckets live with the grads
    // Where the backend can, in memory the other ranks reach (shm: reduced in place, no copies).
    // Every rank plans the same buckets in the same order, as allocate_shared needs.
    bk.buffer = comm_.allocate_shared(n, dt, dev);
    if (options_.compression != Compression::kNone)
      bk.wire =
          empty({n}, options_.compression == Compression::kBf16 ? DType::kBF16 : DType::kF16, dev);
    for (size_t j = 0; j < bk.params.size(); ++j) {
      int p = bk.params[j];
      const Tensor& param = params_[p].second;
      Tensor view =
          bk.buffer.slice(0, bk.offsets[j], bk.offsets[j] + param.numel()).view(param.shape());
      if (old_grads[p].defined()) view.copy_(old_grads[p]);
      param.set_grad(view);  // autograd accumulates into the bucket in place
      // and, once zero_grad set the gradient to none, ops that can (linear's weight) compute the
      // next one straight into it: no copy at all.
      param.set_grad_destination(view);
      bucket_of_[p] = static_cast<int>(k);
    }
  }
}

Tensor Reducer::bucket_view(int p) const {
  const Bucket& b = buckets_[bucket_of_[p]];
  const Tensor& param = params_[p].second;
  size_t j = std::find(b.params.begin(), b.params.end(), p) - b.params.begin();
  return b.buffer.slice(0, b.offsets[j], b.offsets[j] + param.numel()).view(param.shape());
}

std::vector<std::vector<std::string>> Reducer::bucket_layout() const {
  std::vector<std::vector<std::string>> out;
  for (const Bucket& b : buckets_) {
    out.emplace_back();
    for (int p : b.params) out.back().push_back(params_[p].first);
  }
  return out;
}

void Reducer::prepare_for_backward(bool sync) {
  sync_ = sync;
  if (!sync) return;
  ready_.assign(params_.size(), false);
  params_pending_ = static_cast<int>(params_.size());
  next_to_launch_ = 0;
  launch_log_.clear();
  for (Bucket& b : buckets_) {
    b.pending = static_cast<int>(b.params.size());
    b.launched = false;
    b.work.reset();
  }
  if (steps_ == 0) arrival_order_.clear();
}

void Reducer::on_grad_ready(int p) {
  if (!sync_) return;
  TANDEM_CHECK_T(AutogradError, !ready_[p], "ddp: parameter '", params_[p].first,
                 "' received its gradient twice in one backward; a parameter may take part in the "
                 "loss once per step (reused modules need accumulate_steps or a single forward)");
  // A hook that found the gradient replaced (not our view) copies it back into the bucket.
  Bucket& b = buckets_[bucket_of_[p]];
  const Tensor& param = params_[p].second;
  if (param.grad().storage() != b.buffer.storage()) {
    Tensor view = bucket_view(p);
    view.copy_(param.grad());
    param.set_grad(view);
  }
  ready_[p] = true;
  --params_pending_;
  if (steps_ == 0) arrival_order_.push_back(p);
  if (--b.pending == 0) launch_ready_buckets();
}

void Reducer::launch_ready_buckets() {
  while (next_to_launch_ < num_buckets() && buckets_[next_to_launch_].pending == 0) {
    Bucket& b = buckets_[next_to_launch_];
    launch_log_.push_back({next_to_launch_, params_pending_, std::chrono::steady_clock::now()});
    if (b.wire.defined()) {
      b.wire.copy_(b.buffer);
      b.work = comm_.all_reduce(b.wire, ReduceOp::kAvg);
    } else {
      b.work = comm_.all_reduce(b.buffer, ReduceOp::kAvg);
    }
    b.launched = true;
    ++next_to_launch_;
  }
}

void Reducer::mark_unused_ready() {
  unused_last_step_.clear();
  std::vector<std::string> first_time;
  NoGradGuard ng;
  for (size_t i = 0; i < params_.size(); ++i) {
    if (ready_[i]) continue;
    const int p = static_cast<int>(i);
    const Tensor& param = params_[p].second;
    Tensor view = bucket_view(p);
    // Our view holds this step's accumulation so far (zero unless an earlier micro-batch reached
    // the parameter); a gradient set to none is zero; a replaced one is copied in.
    if (!param.grad().defined()) {
      view.zero_();
      param.set_grad(view);
    } else if (param.grad().storage() != view.storage()) {
      view.copy_(param.grad());
      param.set_grad(view);
    }
    unused_last_step_.push_back(params_[p].first);
    if (!warned_unused_[p]) {
      warned_unused_[p] = true;
      first_time.push_back(params_[p].first);
    }
  }
  if (!first_time.empty()) {
    std::ostringstream line;
    line << "ddp rank " << comm_.rank() << ": warning: " << first_time.size()
         << " parameter(s) received no gradient in a step: ";
    for (size_t k = 0; k < first_time.size() && k < 10; ++k)
      line << (k ? ", " : "") << first_time[k];
    if (first_time.size() > 10) line << " and " << first_time.size() - 10 << " more";
    line << "; they take part with a zero gradient from this rank (named once)";
    if (options_.warn)
      options_.warn(line.str());
    else
      std::cerr << line.str() << "\n";
  }
  // Launch what they held back, in bucket order, as their hooks would have.
  for (size_t i = 0; i < params_.size(); ++i) {
    if (ready_[i]) continue;
    const int p = static_cast<int>(i);
    ready_[p] = true;
    --params_pending_;
    if (steps_ == 0) arrival_order_.push_back(p);
    --buckets_[bucket_of_[p]].pending;
  }
  launch_ready_buckets();
}

void Reducer::trace_bucket(int index) {
  const Bucket& b = buckets_[index];
  const auto now = std::chrono::steady_clock::now();
  auto launched = now;
  for (const BucketLaunch& l : launch_log_)
    if (l.bucket == index) launched = l.at;
  trace_->bucket(index, b.buffer.numel() * static_cast<int64_t>(dtype_size(b.buffer.dtype())),
                 comm_.backend_name(), launched, b.work->completed_at().value_or(now));
}

void Reducer::finalize() {
  if (!sync_) return;
  if (params_pending_ > 0) mark_unused_ready();
  for (size_t i = 0; i < buckets_.size(); ++i) {
    Bucket& b = buckets_[i];
    TANDEM_ASSERT(b.work != nullptr, "bucket not launched");
    b.work->wait(comm_.options().timeout);
    if (trace_ != nullptr && trace_->on()) trace_bucket(static_cast<int>(i));
    if (b.wire.defined()) b.buffer.copy_(b.wire);
    b.work.reset();
  }
  ++steps_;
  if (steps_ == 1 && options_.rebuild_after_first_step && !rebuilt_) {
    // Re-plan from the order gradients arrived in, as rank 0 saw it (all ranks must agree).
    Tensor order = empty({static_cast<int64_t>(params_.size())}, DType::kI64);
    int64_t* po = order.data<int64_t>();
    for (size_t i = 0; i < arrival_order_.size(); ++i) po[i] = arrival_order_[i];
    // Collectives reduce floats (indices are exact in f64), on the gradients' device (NCCL: CUDA).
    Tensor order_f = order.to(DType::kF64).to(params_.front().second.device());
    broadcast_sync(comm_, order_f, 0);
    std::vector<double> v = order_f.to_vector();
    std::vector<int> new_order(v.begin(), v.end());
    plan(new_order);
    rebuilt_ = true;
  }
}

}  // namespace tandem
