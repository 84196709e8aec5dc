// HierarchicalCommunicator: shared memory inside a host, one slice per local rank across hosts
// (see hierarchical_communicator.h).
#include "collectives/hierarchical/hierarchical_communicator.h"

#include <condition_variable>
#include <cstring>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

#include "collectives/cpu_reduction.h"
#include "collectives/work_state.h"
#include "core/base/error.h"

namespace tandem {
namespace {

struct HierarchicalOp {
  CollectiveCall call;
  uint64_t seq = 0;
  std::chrono::milliseconds timeout{0};  // each sub-collective's wait
  std::function<void()> run;             // issues the sub-collectives and waits for them
  std::shared_ptr<WorkState> state;
};

}  // namespace

struct HierarchicalCommunicator::Impl {
  int rank = 0;
  HostLayout layout;
  int host = 0, local = 0;
  std::unique_ptr<Communicator> global;
  std::unique_ptr<ShmCommunicator> local_comm;
  std::unique_ptr<Communicator> cross;
  std::chrono::milliseconds timeout{600'000};  // the running op's (the thread's only)
  Tensor gathered;  // the cross all-gather's landing space, reused (the thread's only)

  std::mutex mu;
  std::condition_variable cv;
  std::deque<HierarchicalOp> queue;  // guarded by mu
  bool stop = false;                 // guarded by mu
  std::thread thread;
  std::exception_ptr broken;  // the thread's: the first failure, which every later op reports

  void wait(std::unique_ptr<Work> w) { w->wait(timeout); }

  // Steps 1-3 of the header over a tensor inside a shared buffer.
  void all_reduce_shared(Tensor& t, ReduceOp op) {
    const int64_t n = t.numel();
    const int per_host = layout.ranks_on_host[host];
    const int64_t lo = n * local / per_host, hi = n * (local + 1) / per_host;
    const ReduceOp partial = op == ReduceOp::kMax ? ReduceOp::kMax : ReduceOp::kSum;
    wait(local_comm->reduce_own_slice(t, partial));
    Tensor slice = t.slice(0, lo, hi);
    if (hi > lo) wait(cross->all_reduce(slice, partial));
    if (op == ReduceOp::kAvg && hi > lo)
      divide_in_place(slice.dtype(), slice.raw_data(), slice.numel(), layout.world());
    wait(local_comm->spread(t, {{lo, hi}}));
  }

  // The in-place all_gather over a shared buffer: the blocks of this rank's local index on every
  // host arrive across hosts, then each rank spreads the blocks it holds inside its host.
  void all_gather_shared(const Tensor& input, Tensor& output) {
    const int64_t b = input.numel();
    if (!gathered.defined() || gathered.numel() < b * layout.hosts() ||
        gathered.dtype() != input.dtype())
      gathered = zeros({b * layout.hosts()}, input.dtype());
    Tensor landing = gathered.slice(0, 0, b * layout.hosts());
    wait(cross->all_gather(input, landing));
    const size_t elem = dtype_size(input.dtype());
    char* out = static_cast<char*>(output.raw_data());
    const char* in = static_cast<const char*>(landing.raw_data());
    std::vector<std::pair<int64_t, int64_t>> mine;
    for (int h = 0; h < layout.hosts(); ++h) {
      const int r = layout.rank_at(h, local);
      if (r != rank)
        std::memcpy(out + r * b * elem, in + h * b * elem, static_cast<size_t>(b) * elem);
      mine.push_back({r * b, (r + 1) * b});
    }
    wait(local_comm->spread(output, std::move(mine)));
  }

  void run() {
    for (;;) {
      HierarchicalOp op;
      {
        std::unique_lock<std::mutex> lock(mu);
        cv.wait(lock, [&] { return stop || !queue.empty(); });
        if (queue.empty() || stop) return;
        op = std::move(queue.front());
        queue.pop_front();
      }
      if (broken) {
        op.state->finish_broken(broken, str("hierarchical ", op.call.brief(op.seq)));
        continue;
      }
      try {
        timeout = op.timeout;
        op.run();
        op.state->finish(nullptr);
      } catch (...) {
        broken = std::current_exception();
        op.state->finish(broken);
      }
    }
  }
};

HierarchicalCommunicator::HierarchicalCommunicator(int rank, HostLayout layout,
                                                   std::unique_ptr<Communicator> global,
                                                   std::unique_ptr<ShmCommunicator> local,
                                                   std::unique_ptr<Communicator> cross)
    : rank_(rank), layout_(std::move(layout)), impl_(std::make_shared<Impl>()) {
  TANDEM_CHECK(layout_.uniform() && rank_ >= 0 && rank_ < layout_.world(),
               "hierarchical: needs the same number of ranks on every host and a rank in range");
  set_options(global->options());
  Impl& s = *impl_;
  s.rank = rank_;
  s.layout = layout_;
  s.host = layout_.host_of[rank_];
  s.local = layout_.local_of[rank_];
  TANDEM_CHECK(global->world_size() == layout_.world() && global->rank() == rank_ &&
                   local->world_size() == layout_.ranks_on_host[s.host] &&
                   local->rank() == s.local && cross->world_size() == layout_.hosts() &&
                   cross->rank() == s.host,
               "hierarchical: the sub-communicators do not match the host layout");
  s.global = std::move(global);
  s.local_comm = std::move(local);
  s.cross = std::move(cross);
  s.thread = std::thread([impl = impl_.get()] { impl->run(); });
}

HierarchicalCommunicator::~HierarchicalCommunicator() {
  std::deque<HierarchicalOp> left;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->stop = true;
    left.swap(impl_->queue);
  }
  impl_->cv.notify_all();
  if (impl_->thread.joinable()) impl_->thread.join();
  for (HierarchicalOp& op : left)
    op.state->finish(std::make_exception_ptr(CommError("hierarchical: communicator destroyed")));
}

std::string HierarchicalCommunicator::backend_name() const {
  return str("hierarchical(", impl_->local_comm->backend_name(), ", ", impl_->cross->backend_name(),
             ")");
}

namespace {
std::unique_ptr<Work> enqueue(HierarchicalCommunicator::Impl& s, uint64_t seq,
                              std::chrono::milliseconds timeout, CollectiveCall call,
                              std::function<void()> run) {
  auto state = std::make_shared<WorkState>();
  {
    std::lock_guard<std::mutex> lock(s.mu);
    s.queue.push_back(HierarchicalOp{call, seq, timeout, std::move(run), state});
  }
  s.cv.notify_one();
  return std::make_unique<StateWork>(std::move(state), std::move(call), seq, "hierarchical",
                                     ": a rank did not arrive");
}
}  // namespace

std::unique_ptr<Work> HierarchicalCommunicator::all_reduce(Tensor& tensor, ReduceOp op) {
  Impl& s = *impl_;
  CollectiveCall call{CollectiveKind::kAllReduce, tensor.dtype(), tensor.shape(), -1, op};
  Tensor t = tensor;  // keeps the storage alive until the op has run
  if (s.local_comm->is_shared(t))
    return enqueue(s, next_seq_++, options().timeout, call,
                   [&s, t, op]() mutable { s.all_reduce_shared(t, op); });
  return enqueue(s, next_seq_++, options().timeout, call,
                 [&s, t, op]() mutable { s.wait(s.global->all_reduce(t, op)); });
}

std::unique_ptr<Work> HierarchicalCommunicator::broadcast(Tensor& tensor, int root) {
  Impl& s = *impl_;
  Tensor t = tensor;
  return enqueue(s, next_seq_++, options().timeout,
                 {CollectiveKind::kBroadcast, t.dtype(), t.shape(), root},
                 [&s, t, root]() mutable { s.wait(s.global->broadcast(t, root)); });
}

std::unique_ptr<Work> HierarchicalCommunicator::all_gather(const Tensor& input, Tensor& output) {
  Impl& s = *impl_;
  Tensor in = input, out = output;
  CollectiveCall call{CollectiveKind::kAllGather, in.dtype(), in.shape()};
  const size_t block_bytes = static_cast<size_t>(in.numel()) * dtype_size(in.dtype());
  const bool in_place = in.numel() > 0 && in.dtype() == out.dtype() &&
                        out.numel() == in.numel() * world_size() && s.local_comm->is_shared(out) &&
                        static_cast<const char*>(in.raw_data()) ==
                            static_cast<const char*>(out.raw_data()) + rank_ * block_bytes;
  if (in_place)
    return enqueue(s, next_seq_++, options().timeout, call,
                   [&s, in, out]() mutable { s.all_gather_shared(in, out); });
  return enqueue(s, next_seq_++, options().timeout, call,
                 [&s, in, out]() mutable { s.wait(s.global->all_gather(in, out)); });
}

std::unique_ptr<Work> HierarchicalCommunicator::reduce_scatter(const Tensor& input, Tensor& output,
                                                               ReduceOp op) {
  Impl& s = *impl_;
  Tensor in = input, out = output;
  return enqueue(s, next_seq_++, options().timeout,
                 {CollectiveKind::kReduceScatter, in.dtype(), in.shape(), -1, op},
                 [&s, in, out, op]() mutable { s.wait(s.global->reduce_scatter(in, out, op)); });
}

std::unique_ptr<Work> HierarchicalCommunicator::barrier() {
  Impl& s = *impl_;
  return enqueue(s, next_seq_++, options().timeout, {CollectiveKind::kBarrier, DType::kF32, {}},
                 [&s]() { s.wait(s.global->barrier()); });
}

Tensor HierarchicalCommunicator::allocate_shared(int64_t numel, DType dtype, Device device) {
  return impl_->local_comm->allocate_shared(numel, dtype, device);
}

}  // namespace tandem
