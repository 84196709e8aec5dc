// MpiCommunicator: collectives queued to one communication thread that issues non-blocking MPI
// calls in issue order and polls them with MPI_Test (see mpi_communicator.h).
#include "collectives/mpi/mpi_communicator.h"

#include <atomic>
#include <climits>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "collectives/cpu_reduction.h"
#include "collectives/mpi/mpi_runtime.h"
#include "collectives/work_state.h"

namespace tandem {

namespace {

// Hand-offs between the caller and the communication thread sleep on condition variables and
// never spin: mpirun binds each rank to one core by default, so both threads share it, and a
// spinning waiter starves the very thread it waits for. Measured at world size 1 (where the MPI
// call itself takes 0.1 us): 6 us per collective for the two wake-ups; 110 us with a 50 us spin.

// One queued collective: everything the communication thread needs to start and finish it.
struct MpiOp {
  CollectiveCall call;
  uint64_t seq = 0;
  Tensor keep_in, keep_out;  // hold the storage alive until the op completes
  const void* send = nullptr;
  void* recv = nullptr;
  int count = 0;
  int root = 0;
  MPI_Datatype type = MPI_DATATYPE_NULL;
  MPI_Op op = MPI_OP_NULL;
  int64_t average_numel = 0;  // kAvg: elements of recv divided by the world size after the sum
  MPI_Request request = MPI_REQUEST_NULL;
  std::shared_ptr<WorkState> state;
};

void check_cpu_contiguous(const Tensor& t, const char* what) {
  tandem::check_cpu_contiguous(t, "mpi", what);
}

int checked_count(int64_t numel, const char* what) {
  TANDEM_CHECK_T(Unimplemented, numel <= INT_MAX, "backend mpi does not support ", what, " of ",
                 numel, " elements (at most ", INT_MAX, " per call): split the tensor");
  return static_cast<int>(numel);
}

MPI_Datatype mpi_type(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return MPI_FLOAT;
    case DType::kF64:
      return MPI_DOUBLE;
    case DType::kBF16:
      return MpiRuntime::get().bf16_type();
    default:
      break;
  }
  throw Unimplemented(
      str("backend mpi does not support ", dtype_name(dtype), " tensors (f32, f64 and bf16 only)"));
}

MPI_Op mpi_op(DType dtype, ReduceOp op) {
  if (op == ReduceOp::kMax) return MpiRuntime::get().max_op(dtype);
  return dtype == DType::kBF16 ? MpiRuntime::get().bf16_sum()
                               : MPI_SUM;  // kSum, and kAvg before its division
}

}  // namespace

struct MpiCommunicator::Impl : std::enable_shared_from_this<MpiCommunicator::Impl> {
  using Deadline = std::chrono::steady_clock::time_point;

  MPI_Comm comm = MPI_COMM_NULL;
  int rank = 0;
  int size = 1;
  uint64_t next_seq = 0;  // caller's thread only

  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::unique_ptr<MpiOp>> queue;  // guarded by mu: issued, not started
  bool stop = false;                         // guarded by mu
  bool comm_idle = false;              // guarded by mu: the thread has nothing in flight and sleeps
  bool waiter_driving = false;         // guarded by mu: a waiter runs an op itself (see help)
  std::unique_ptr<MpiOp> handed_back;  // guarded by mu: started by a waiter that timed out
  std::atomic<int64_t> queued{0};      // queue.size(), readable without the lock
  std::thread thread;
  // Set by the destructor (stop_deadline first): ops still in flight at stop_deadline will never
  // complete (a peer is stopped or gone), and MPI cannot free a communicator or finalise with them
  // pending, so the thread aborts the job then instead of testing them forever.
  std::atomic<bool> stopping{false};
  Deadline stop_deadline;
  std::chrono::milliseconds timeout{0};  // the communicator's; the destructor's grace period

  // The communication thread's, or a helping waiter's while waiter_driving (never both: the
  // thread sleeps until the waiter is done).
  std::deque<std::unique_ptr<MpiOp>> in_flight;
  std::exception_ptr broken;  // the first failure; every later op fails with it

  std::unique_ptr<Work> enqueue(std::unique_ptr<MpiOp> op);  // enqueue_chunks of one
  // One collective as one or several MPI calls (a large all-reduce in chunks, in flight together):
  // they share one sequence number, and the Work completes with the last, which completes last.
  std::unique_ptr<Work> enqueue_chunks(std::vector<std::unique_ptr<MpiOp>> ops);
  void run();
  void help(uint64_t seq, Deadline deadline);
  bool drive(MpiOp& op, Deadline deadline);
  void start(MpiOp& op);
  void complete(MpiOp& op);
  void fail(MpiOp& op, const std::exception_ptr& cause);
  void fail_all(const std::exception_ptr& cause);
  [[noreturn]] void abort_pending();
};

std::unique_ptr<Work> MpiCommunicator::Impl::enqueue(std::unique_ptr<MpiOp> op) {
  std::vector<std::unique_ptr<MpiOp>> one;
  one.push_back(std::move(op));
  return enqueue_chunks(std::move(one));
}

std::unique_ptr<Work> MpiCommunicator::Impl::enqueue_chunks(
    std::vector<std::unique_ptr<MpiOp>> ops) {
  const uint64_t seq = next_seq++;
  for (auto& op : ops) {
    op->seq = seq;
    op->state = std::make_shared<WorkState>();
  }
  auto work = std::make_unique<StateWork>(
      ops.back()->state, ops.back()->call, seq, "mpi",
      "; MPI cannot tell which ranks did not arrive: check that every rank issued the same "
      "collectives in the same order and that none has exited",
      [impl = shared_from_this()](uint64_t seq, std::chrono::steady_clock::time_point deadline,
                                  std::chrono::milliseconds) { impl->help(seq, deadline); });
  {
    std::lock_guard<std::mutex> lock(mu);
    for (auto& op : ops) queue.push_back(std::move(op));
    queued.store(static_cast<int64_t>(queue.size()), std::memory_order_release);
  }
  cv.notify_one();
  return work;
}

void MpiCommunicator::Impl::start(MpiOp& op) {
  switch (op.call.kind) {
    case CollectiveKind::kAllReduce:
      TANDEM_MPI_CHECK(
          MPI_Iallreduce(MPI_IN_PLACE, op.recv, op.count, op.type, op.op, comm, &op.request));
      break;
    case CollectiveKind::kBroadcast:
      TANDEM_MPI_CHECK(MPI_Ibcast(op.recv, op.count, op.type, op.root, comm, &op.request));
      break;
    case CollectiveKind::kAllGather:
      TANDEM_MPI_CHECK(MPI_Iallgather(op.send, op.count, op.type, op.recv, op.count, op.type, comm,
                                      &op.request));
      break;
    case CollectiveKind::kReduceScatter:
      TANDEM_MPI_CHECK(
          MPI_Ireduce_scatter_block(op.send, op.recv, op.count, op.type, op.op, comm, &op.request));
      break;
    case CollectiveKind::kBarrier:
      TANDEM_MPI_CHECK(MPI_Ibarrier(comm, &op.request));
      break;
  }
}

void MpiCommunicator::Impl::complete(MpiOp& op) {
  if (op.average_numel > 0) divide_in_place(op.call.dtype, op.recv, op.average_numel, size);
  op.state->finish(nullptr);
}

void MpiCommunicator::Impl::fail(MpiOp& op, const std::exception_ptr& cause) {
  std::string why;
  try {
    std::rethrow_exception(cause);
  } catch (const std::exception& e) {
    why = e.what();
  }
  op.state->finish(
      std::make_exception_ptr(CommError(str("mpi ", op.call.brief(op.seq), ": ", why))));
}

void MpiCommunicator::Impl::fail_all(const std::exception_ptr& cause) {
  for (auto& op : in_flight) fail(*op, cause);
  in_flight.clear();
}

// The communication thread: start newly queued ops (at most kMaxInFlight in flight), then test
// the oldest one in flight; sleep only when nothing is queued or in flight.
void MpiCommunicator::Impl::run() {
  std::deque<std::unique_ptr<MpiOp>> fresh;  // taken from the queue, not started yet
  for (;;) {
    if ((in_flight.empty() && fresh.empty()) || queued.load(std::memory_order_acquire) > 0) {
      std::unique_lock<std::mutex> lock(mu);
      if (in_flight.empty()) {
        comm_idle = true;
        auto ready = [&] {
          return !waiter_driving && (stop || !queue.empty() || handed_back != nullptr);
        };
        cv.wait(lock, ready);
        if (!stop && !handed_back) {
          // Woken by a new op: give the issuing thread one chance to reach Work::wait and run
          // the op itself (see help()) before taking it.
          lock.unlock();
          std::this_thread::yield();
          lock.lock();
          cv.wait(lock, ready);
        }
        comm_idle = false;
        if (handed_back) in_flight.push_back(std::move(handed_back));  // older than the queue
      }
      if (queue.empty() && in_flight.empty() && fresh.empty()) return;  // stop, all completed
      for (auto& op : queue) fresh.push_back(std::move(op));
      queue.clear();
      queued.store(0, std::memory_order_relaxed);
    }
    while (!fresh.empty() && in_flight.size() < kMaxInFlight) {
      std::unique_ptr<MpiOp> op = std::move(fresh.front());
      fresh.pop_front();
      if (broken) {
        fail(*op, broken);
        continue;
      }
      try {
        start(*op);
        in_flight.push_back(std::move(op));
      } catch (...) {
        broken = std::current_exception();
        fail(*op, broken);
        fail_all(broken);
      }
    }
    if (!in_flight.empty() && stopping.load(std::memory_order_acquire) &&
        std::chrono::steady_clock::now() >= stop_deadline)
      abort_pending();
    // Complete in issue order: only the oldest op is tested (testing it progresses all of them).
    while (!in_flight.empty()) {
      MpiOp& op = *in_flight.front();
      int flag = 0;
      try {
        TANDEM_MPI_CHECK(MPI_Test(&op.request, &flag, MPI_STATUS_IGNORE));
      } catch (...) {
        broken = std::current_exception();
        fail_all(broken);
        break;
      }
      if (!flag) break;
      complete(op);
      in_flight.pop_front();
    }
  }
}

void MpiCommunicator::Impl::abort_pending() {
  const MpiOp& op = *in_flight.front();
  std::fprintf(stderr,
               "tandem: mpi rank %d of %d: %s was still in flight %.1f s after the communicator "
               "was closed: a peer is stopped or gone (the timeout before this names it). MPI "
               "cannot shut down with a collective pending: aborting the job (MPI_Abort) instead "
               "of waiting forever\n",
               rank, size, op.call.brief(op.seq).c_str(), timeout.count() / 1000.0);
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, 1);
  std::_Exit(1);  // MPI_Abort does not return; should it, the process still must not hang
}

// A waiter about to sleep on an op that nobody has started -- the only one queued, the thread
// idle -- runs it itself: it would otherwise sleep through two thread wake-ups, and on a core
// shared with other processes each can cost a scheduler time slice (measured: 4 MiB all-reduce
// medians 3x slower than the raw call without this; see benchmarks/allreduce_busbw.cc). The thread
// keeps sleeping meanwhile, so MPI is still called by one thread at a time. If the waiter's
// deadline passes first, it hands the started op back to the thread and gives up.
void MpiCommunicator::Impl::help(uint64_t seq, Deadline deadline) {
  std::unique_ptr<MpiOp> op;
  {
    std::lock_guard<std::mutex> lock(mu);
    if (!comm_idle || waiter_driving || queue.size() != 1 || queue.front()->seq != seq) return;
    op = std::move(queue.front());
    queue.pop_front();
    queued.store(0, std::memory_order_relaxed);
    waiter_driving = true;
  }
  const bool finished = drive(*op, deadline);
  bool wake = false;
  {
    std::lock_guard<std::mutex> lock(mu);
    waiter_driving = false;
    if (!finished) handed_back = std::move(op);
    wake = handed_back != nullptr || !queue.empty();
  }
  if (wake) cv.notify_one();
}

// Starts `op` and tests it until it completes (true) or the deadline passes (false: still running).
bool MpiCommunicator::Impl::drive(MpiOp& op, Deadline deadline) {
  try {
    if (broken) std::rethrow_exception(broken);
    start(op);
    for (int polls = 1;; ++polls) {
      int flag = 0;
      TANDEM_MPI_CHECK(MPI_Test(&op.request, &flag, MPI_STATUS_IGNORE));
      if (flag) break;
      if (polls % 64 == 0 && std::chrono::steady_clock::now() >= deadline) return false;
    }
  } catch (...) {
    if (!broken) broken = std::current_exception();
    fail(op, broken);
    return true;
  }
  complete(op);
  return true;
}

MpiCommunicator::MpiCommunicator(const CommOptions& options) : MpiCommunicator(-1, 0, options) {}

MpiCommunicator::MpiCommunicator(int color, int key, const CommOptions& options)
    : impl_(std::make_shared<Impl>()) {
  options_ = options;
  MpiRuntime& runtime = MpiRuntime::get();
  if (color < 0) {
    TANDEM_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &impl_->comm));
  } else {
    TANDEM_MPI_CHECK(MPI_Comm_split(MPI_COMM_WORLD, color, key, &impl_->comm));
  }
  TANDEM_MPI_CHECK(MPI_Comm_set_errhandler(impl_->comm, MPI_ERRORS_RETURN));
  TANDEM_MPI_CHECK(MPI_Comm_rank(impl_->comm, &impl_->rank));
  TANDEM_MPI_CHECK(MPI_Comm_size(impl_->comm, &impl_->size));
  impl_->timeout = options.timeout;
  runtime.retain();
  Impl* impl = impl_.get();
  impl_->thread = std::thread([impl] { impl->run(); });
}

MpiCommunicator::~MpiCommunicator() {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->stop = true;
    impl_->stop_deadline = std::chrono::steady_clock::now() + impl_->timeout;
    impl_->stopping.store(true, std::memory_order_release);
  }
  impl_->cv.notify_one();
  impl_->thread.join();
  try {
    TANDEM_MPI_CHECK(MPI_Comm_free(&impl_->comm));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tandem: %s\n", e.what());
  }
  MpiRuntime::get().release();
}

int MpiCommunicator::rank() const {
  return impl_->rank;
}
int MpiCommunicator::world_size() const {
  return impl_->size;
}

std::unique_ptr<Work> MpiCommunicator::all_reduce(Tensor& tensor, ReduceOp op) {
  check_cpu_contiguous(tensor, "all_reduce tensor");
  const CollectiveCall call{CollectiveKind::kAllReduce, tensor.dtype(), tensor.shape(), -1, op};
  const MPI_Datatype type = mpi_type(tensor.dtype());
  const MPI_Op mop = mpi_op(tensor.dtype(), op);
  const size_t elem = dtype_size(tensor.dtype());
  auto make = [&](int64_t begin, int64_t n) {
    auto o = std::make_unique<MpiOp>();
    o->call = call;
    o->type = type;
    o->op = mop;
    o->count = checked_count(n, "all_reduce");
    o->recv = static_cast<char*>(tensor.raw_data()) + begin * static_cast<int64_t>(elem);
    o->keep_out = tensor;
    if (op == ReduceOp::kAvg && impl_->size > 1) o->average_numel = n;
    return o;
  };
  const int64_t n = tensor.numel();
  const int64_t per_chunk = kChunkBytes / static_cast<int64_t>(elem);
  if (static_cast<int64_t>(n * elem) <= kChunkAboveBytes || impl_->size == 1)
    return impl_->enqueue(make(0, n));
  // Large: chunks in flight together, so one chunk's reduction overlaps the next one's transfer
  // (libnbc's schedules reduce only once a whole message has arrived).
  std::vector<std::unique_ptr<MpiOp>> chunks;
  for (int64_t b = 0; b < n; b += per_chunk) chunks.push_back(make(b, std::min(per_chunk, n - b)));
  return impl_->enqueue_chunks(std::move(chunks));
}

std::unique_ptr<Work> MpiCommunicator::broadcast(Tensor& tensor, int root) {
  check_cpu_contiguous(tensor, "broadcast tensor");
  TANDEM_CHECK(root >= 0 && root < impl_->size, "mpi broadcast: root ", root,
               " is not a rank of this world of ", impl_->size);
  auto o = std::make_unique<MpiOp>();
  o->call = CollectiveCall{CollectiveKind::kBroadcast, tensor.dtype(), tensor.shape(), root};
  o->type = mpi_type(tensor.dtype());
  o->count = checked_count(tensor.numel(), "broadcast");
  o->recv = tensor.raw_data();
  o->root = root;
  o->keep_out = tensor;
  return impl_->enqueue(std::move(o));
}

std::unique_ptr<Work> MpiCommunicator::all_gather(const Tensor& input, Tensor& output) {
  check_cpu_contiguous(input, "all_gather input");
  check_cpu_contiguous(output, "all_gather output");
  TANDEM_CHECK_T(TypeError, input.dtype() == output.dtype(), "mpi all_gather: input is ",
                 dtype_name(input.dtype()), " but output is ", dtype_name(output.dtype()));
  TANDEM_CHECK_SHAPE(output.numel() == input.numel() * impl_->size, "mpi all_gather: output needs ",
                     impl_->size, " x ", input.numel(), " elements, got ", output.str());
  auto o = std::make_unique<MpiOp>();
  o->call = CollectiveCall{CollectiveKind::kAllGather, input.dtype(), input.shape()};
  o->type = mpi_type(input.dtype());
  o->count = checked_count(input.numel(), "all_gather");
  o->recv = output.raw_data();
  // Input already in its block of the output: MPI_IN_PLACE (MPI forbids overlapping buffers).
  const char* own_block =
      static_cast<const char*>(o->recv) + input.numel() * dtype_size(input.dtype()) * impl_->rank;
  o->send = input.raw_data() == own_block ? MPI_IN_PLACE : input.raw_data();
  o->keep_in = input;
  o->keep_out = output;
  return impl_->enqueue(std::move(o));
}

std::unique_ptr<Work> MpiCommunicator::reduce_scatter(const Tensor& input, Tensor& output,
                                                      ReduceOp op) {
  check_cpu_contiguous(input, "reduce_scatter input");
  check_cpu_contiguous(output, "reduce_scatter output");
  TANDEM_CHECK_T(TypeError, input.dtype() == output.dtype(), "mpi reduce_scatter: input is ",
                 dtype_name(input.dtype()), " but output is ", dtype_name(output.dtype()));
  TANDEM_CHECK_SHAPE(input.numel() == output.numel() * impl_->size,
                     "mpi reduce_scatter: input needs ", impl_->size, " x ", output.numel(),
                     " elements, got ", input.str());
  auto o = std::make_unique<MpiOp>();
  o->call = CollectiveCall{CollectiveKind::kReduceScatter, input.dtype(), input.shape(), -1, op};
  o->type = mpi_type(input.dtype());
  o->op = mpi_op(input.dtype(), op);
  o->count = checked_count(output.numel(), "reduce_scatter");
  checked_count(input.numel(), "reduce_scatter");
  o->send = input.raw_data();
  o->recv = output.raw_data();
  o->keep_in = input;
  o->keep_out = output;
  if (op == ReduceOp::kAvg && impl_->size > 1) o->average_numel = output.numel();
  return impl_->enqueue(std::move(o));
}

std::unique_ptr<Work> MpiCommunicator::barrier() {
  auto o = std::make_unique<MpiOp>();
  o->call.kind = CollectiveKind::kBarrier;
  return impl_->enqueue(std::move(o));
}

}  // namespace tandem
