// GlooCommunicator: gloo collectives run one at a time, in issue order, on a background thread
// (see gloo_communicator.h).
#include "collectives/gloo/gloo_communicator.h"

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <exception>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include <gloo/allgather.h>
#include <gloo/allreduce.h>
#include <gloo/barrier.h>
#include <gloo/broadcast.h>
#include <gloo/common/error.h>
#include <gloo/rendezvous/context.h>
#include <gloo/transport/tcp/device.h>

#include "collectives/cpu_reduction.h"
#include "collectives/gloo/gloo_store.h"
#include "collectives/work_state.h"

namespace tandem {

namespace {

// One queued collective.
struct GlooOp {
  CollectiveCall call;
  uint64_t seq = 0;
  std::chrono::milliseconds timeout{0};
  Tensor in, out;  // `in` only for all_gather and reduce_scatter; both keep storage alive
  std::shared_ptr<WorkState> state;
};

// gloo's own max (std::max) drops a NaN in its second argument: every op comes from the shared
// library instead, so sums and the NaN-propagating max match the other backends bit for bit.
PairReduceFn reduce_fn(DType dtype, ReduceOp op) {
  if (dtype == DType::kF32 || dtype == DType::kF64 || dtype == DType::kBF16)
    return pair_reduce_fn(dtype, op);
  throw Unimplemented(str("backend gloo does not support ", dtype_name(dtype),
                          " tensors (f32, f64 and bf16 only)"));
}

void check_dtype(DType dtype) {
  reduce_fn(dtype, ReduceOp::kSum);
}

void check_cpu_contiguous(const Tensor& t, const char* what) {
  tandem::check_cpu_contiguous(t, "gloo", what);
}

// The n in a communicator's key prefix: how many communicators this process created before it
// for the same (prefix, rank, world size). Counted per rank so that ranks running as threads of
// one process (tests) agree as well as ranks in separate processes do.
int next_instance(const std::string& prefix, int rank, int world_size) {
  static std::mutex mu;
  static std::map<std::string, int> created;
  std::lock_guard<std::mutex> lock(mu);
  return created[str(prefix, "/", rank, "/", world_size)]++;
}

}  // namespace

struct GlooCommunicator::Impl : std::enable_shared_from_this<GlooCommunicator::Impl> {
  int rank = 0;
  int size = 1;
  std::shared_ptr<gloo::rendezvous::Context> context;  // null in a world of one
  uint64_t next_seq = 0;                               // caller's thread only

  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::unique_ptr<GlooOp>> queue;  // guarded by mu
  bool stop = false;                          // guarded by mu
  bool thread_idle = false;                   // guarded by mu: the thread waits for work
  bool waiter_running = false;  // guarded by mu: a waiter runs an op itself (see help)
  bool thread_done = false;     // guarded by mu: run() has returned
  std::string running;          // guarded by mu: the collective the thread runs ("" between)
  std::chrono::milliseconds close_wait{0};
  std::thread thread;

  // The background thread's, or a helping waiter's while waiter_running (never both).
  std::exception_ptr broken;  // the first failure; every later op fails with it
  std::vector<char> scratch;  // reduce_scatter's copy of its input, reused

  std::unique_ptr<Work> enqueue(std::unique_ptr<GlooOp> op, std::chrono::milliseconds timeout);
  void run();
  void help(uint64_t seq, std::chrono::milliseconds timeout);
  void process(GlooOp& op);
  void execute(GlooOp& op);
  void all_reduce_buffer(void* data, int64_t n, DType dtype, ReduceOp op, const GlooOp& o);
};

std::unique_ptr<Work> GlooCommunicator::Impl::enqueue(std::unique_ptr<GlooOp> op,
                                                      std::chrono::milliseconds timeout) {
  op->seq = next_seq++;
  op->timeout = timeout;
  op->state = std::make_shared<WorkState>();
  auto work = std::make_unique<StateWork>(
      op->state, op->call, op->seq, "gloo",
      "; gloo cannot tell which ranks did not arrive: check that every rank issued the same "
      "collectives in the same order and that none has exited",
      [impl = shared_from_this()](uint64_t seq, std::chrono::steady_clock::time_point,
                                  std::chrono::milliseconds timeout) { impl->help(seq, timeout); });
  {
    std::lock_guard<std::mutex> lock(mu);
    queue.push_back(std::move(op));
  }
  cv.notify_all();  // the destructor may wait on cv too
  return work;
}

void GlooCommunicator::Impl::all_reduce_buffer(void* data, int64_t n, DType dtype, ReduceOp op,
                                               const GlooOp& o) {
  gloo::AllreduceOptions opts(context);
  // The element type sets the element size, from which gloo counts what it hands the reduce
  // function; the function itself does the typed work.
  const size_t count = static_cast<size_t>(n);
  if (dtype == DType::kF32) {
    opts.setOutput<float>(static_cast<float*>(data), count);
  } else if (dtype == DType::kF64) {
    opts.setOutput<double>(static_cast<double*>(data), count);
  } else {
    opts.setOutput<BFloat16>(static_cast<BFloat16*>(data), count);
  }
  opts.setReduceFunction(reduce_fn(dtype, op));
  opts.setTag(static_cast<uint32_t>(o.seq));
  opts.setTimeout(o.timeout);
  gloo::allreduce(opts);
}

void GlooCommunicator::Impl::execute(GlooOp& op) {
  const CollectiveCall& c = op.call;
  switch (c.kind) {
    case CollectiveKind::kAllReduce: {
      const int64_t n = op.out.numel();
      if (size > 1 && n > 0) all_reduce_buffer(op.out.raw_data(), n, c.dtype, c.op, op);
      if (c.op == ReduceOp::kAvg && size > 1) divide_in_place(c.dtype, op.out.raw_data(), n, size);
      break;
    }
    case CollectiveKind::kBroadcast: {
      const size_t bytes = op.out.numel() * dtype_size(c.dtype);
      if (size == 1 || bytes == 0) break;
      gloo::BroadcastOptions opts(context);
      opts.setOutput<char>(static_cast<char*>(op.out.raw_data()), bytes);
      opts.setRoot(c.root);
      opts.setTag(static_cast<uint32_t>(op.seq));
      opts.setTimeout(op.timeout);
      gloo::broadcast(opts);
      break;
    }
    case CollectiveKind::kAllGather: {
      const size_t bytes = op.in.numel() * dtype_size(c.dtype);
      char* out = static_cast<char*>(op.out.raw_data());
      const char* in = static_cast<const char*>(op.in.raw_data());
      char* own_block = out + bytes * rank;
      if (bytes == 0) break;
      if (in != own_block) std::memcpy(own_block, in, bytes);
      if (size == 1) break;
      gloo::AllgatherOptions opts(context);
      opts.setOutput<char>(out, bytes * size);  // no input: the own block is already in place
      opts.setTag(static_cast<uint32_t>(op.seq));
      opts.setTimeout(op.timeout);
      gloo::allgather(opts);
      break;
    }
    case CollectiveKind::kReduceScatter: {
      const int64_t n = op.out.numel();
      const size_t bytes = n * dtype_size(c.dtype);
      if (bytes == 0) break;
      const char* in = static_cast<const char*>(op.in.raw_data());
      if (size > 1) {
        scratch.resize(bytes * size);
        std::memcpy(scratch.data(), in, bytes * size);
        all_reduce_buffer(scratch.data(), n * size, c.dtype, c.op, op);
        in = scratch.data();
      }
      std::memcpy(op.out.raw_data(), in + bytes * rank, bytes);
      if (c.op == ReduceOp::kAvg && size > 1) divide_in_place(c.dtype, op.out.raw_data(), n, size);
      break;
    }
    case CollectiveKind::kBarrier: {
      if (size == 1) break;
      gloo::BarrierOptions opts(context);
      opts.setTag(static_cast<uint32_t>(op.seq));
      opts.setTimeout(op.timeout);
      gloo::barrier(opts);
      break;
    }
  }
}

void GlooCommunicator::Impl::run() {
  for (;;) {
    std::unique_ptr<GlooOp> op;
    {
      std::unique_lock<std::mutex> lock(mu);
      auto ready = [&] { return !waiter_running && (stop || !queue.empty()); };
      thread_idle = true;
      cv.wait(lock, ready);
      if (!stop) {
        // Woken by a new op: give the issuing thread one chance to reach Work::wait and run the
        // op itself (see help()) before taking it.
        lock.unlock();
        std::this_thread::yield();
        lock.lock();
        cv.wait(lock, ready);
      }
      thread_idle = false;
      if (queue.empty()) {  // stop, and everything has run
        thread_done = true;
        cv.notify_all();
        return;
      }
      op = std::move(queue.front());
      queue.pop_front();
      running = op->call.brief(op->seq);
    }
    process(*op);
    std::lock_guard<std::mutex> lock(mu);
    running.clear();
  }
}

// Runs one op and finishes its Work; the first failure breaks the communicator for good.
void GlooCommunicator::Impl::process(GlooOp& op) {
  const std::string name = str("gloo ", op.call.brief(op.seq));
  if (broken) {
    op.state->finish_broken(broken, name);
    return;
  }
  try {
    execute(op);
    op.state->finish(nullptr);
  } catch (const gloo::IoException& e) {
    // gloo reports its own timeouts as I/O errors whose message starts "Timed out".
    std::string what = e.what();
    if (what.find("Timed out") != std::string::npos) {
      broken = std::make_exception_ptr(
          TimeoutError(str(name, " timed out after ", op.timeout.count(), " ms: ", what)));
    } else {
      broken = std::make_exception_ptr(CommError(str(name, " failed: ", what)));
    }
    op.state->finish(broken);
  } catch (const std::exception& e) {
    broken = std::make_exception_ptr(CommError(str(name, " failed: ", e.what())));
    op.state->finish(broken);
  }
}

// A waiter about to sleep on an op nobody has started -- the only one queued, the thread idle --
// runs it itself instead of sleeping through two thread wake-ups (see the MPI backend's help()
// for the measurements). gloo's calls block until done or until the op's own timeout, so this
// happens only when the waiter would wait at least that long anyway: gloo's timeout then fires
// before the waiter's.
void GlooCommunicator::Impl::help(uint64_t seq, std::chrono::milliseconds timeout) {
  std::unique_ptr<GlooOp> op;
  {
    std::lock_guard<std::mutex> lock(mu);
    if (!thread_idle || waiter_running || queue.size() != 1 || queue.front()->seq != seq ||
        timeout < queue.front()->timeout) {
      return;
    }
    op = std::move(queue.front());
    queue.pop_front();
    waiter_running = true;
  }
  process(*op);
  bool wake = false;
  {
    std::lock_guard<std::mutex> lock(mu);
    waiter_running = false;
    wake = !queue.empty() || stop;
  }
  if (wake) cv.notify_all();
}

GlooCommunicator::GlooCommunicator(StoreClient& store, int rank, int world_size,
                                   const GlooOptions& gloo_options, const CommOptions& options)
    : rank_(rank), world_size_(world_size), impl_(std::make_shared<Impl>()) {
  options_ = options;
  TANDEM_CHECK(world_size >= 1 && rank >= 0 && rank < world_size, "gloo: rank ", rank,
               " is not in a world of ", world_size);
  impl_->rank = rank;
  impl_->size = world_size;
  const int instance = next_instance(gloo_options.key_prefix, rank, world_size);
  if (world_size > 1) {
    GlooStore gloo_store(store, str(gloo_options.key_prefix, "/", instance, "/"), options.timeout);
    try {
      gloo::transport::tcp::attr attr;
      if (!gloo_options.interface.empty()) {
        attr.iface = gloo_options.interface;
      } else {
        attr.hostname = gloo_options.hostname;
      }
      auto device = gloo::transport::tcp::CreateDevice(attr);
      auto context = std::make_shared<gloo::rendezvous::Context>(rank, world_size);
      context->setTimeout(options.timeout);
      context->connectFullMesh(gloo_store, device);
      impl_->context = std::move(context);
    } catch (const Error&) {
      throw;  // the Store's own CommError / TimeoutError already names the endpoint and key
    } catch (const std::exception& e) {
      throw CommError(str("gloo: rank ", rank, " of ", world_size,
                          " could not connect to its peers ", "(store keys under '",
                          gloo_store.prefix(), "', ",
                          gloo_options.interface.empty() ? "host " + gloo_options.hostname
                                                         : "interface " + gloo_options.interface,
                          "): ", e.what()));
    }
  }
  impl_->close_wait = gloo_options.close_wait;
  // The thread owns a reference: if the destructor leaves it behind, it still has its state.
  impl_->thread = std::thread([impl = impl_] { impl->run(); });
}

GlooCommunicator::~GlooCommunicator() {
  Impl& s = *impl_;
  std::deque<std::unique_ptr<GlooOp>> never_run;
  std::string running;
  {
    std::unique_lock<std::mutex> lock(s.mu);
    s.stop = true;
    never_run.swap(s.queue);
    s.cv.notify_all();
    s.cv.wait_for(lock, s.close_wait, [&] { return s.thread_done; });
    running = s.thread_done ? std::string() : s.running;
  }
  for (auto& op : never_run)
    op->state->finish(std::make_exception_ptr(CommError(
        str("gloo ", op->call.brief(op->seq), ": the communicator was closed before it ran"))));
  if (running.empty()) {
    s.thread.join();
    return;
  }
  std::fprintf(stderr,
               "tandem: gloo rank %d: %s still running %.1f s after the communicator was closed (a "
               "peer stopped or gone?); left to finish or time out on its own\n",
               s.rank, running.c_str(), s.close_wait.count() / 1000.0);
  s.thread.detach();
}

std::shared_ptr<gloo::Context> GlooCommunicator::context() const {
  return impl_->context;
}

std::unique_ptr<Work> GlooCommunicator::all_reduce(Tensor& tensor, ReduceOp op) {
  check_cpu_contiguous(tensor, "all_reduce tensor");
  check_dtype(tensor.dtype());
  auto o = std::make_unique<GlooOp>();
  o->call = CollectiveCall{CollectiveKind::kAllReduce, tensor.dtype(), tensor.shape(), -1, op};
  o->out = tensor;
  return impl_->enqueue(std::move(o), options_.timeout);
}

std::unique_ptr<Work> GlooCommunicator::broadcast(Tensor& tensor, int root) {
  check_cpu_contiguous(tensor, "broadcast tensor");
  check_dtype(tensor.dtype());
  TANDEM_CHECK(root >= 0 && root < world_size_, "gloo broadcast: root ", root,
               " is not a rank of this world of ", world_size_);
  auto o = std::make_unique<GlooOp>();
  o->call = CollectiveCall{CollectiveKind::kBroadcast, tensor.dtype(), tensor.shape(), root};
  o->out = tensor;
  return impl_->enqueue(std::move(o), options_.timeout);
}

std::unique_ptr<Work> GlooCommunicator::all_gather(const Tensor& input, Tensor& output) {
  check_cpu_contiguous(input, "all_gather input");
  check_cpu_contiguous(output, "all_gather output");
  check_dtype(input.dtype());
  TANDEM_CHECK_T(TypeError, input.dtype() == output.dtype(), "gloo all_gather: input is ",
                 dtype_name(input.dtype()), " but output is ", dtype_name(output.dtype()));
  TANDEM_CHECK_SHAPE(output.numel() == input.numel() * world_size_,
                     "gloo all_gather: output needs ", world_size_, " x ", input.numel(),
                     " elements, got ", output.str());
  auto o = std::make_unique<GlooOp>();
  o->call = CollectiveCall{CollectiveKind::kAllGather, input.dtype(), input.shape()};
  o->in = input;
  o->out = output;
  return impl_->enqueue(std::move(o), options_.timeout);
}

std::unique_ptr<Work> GlooCommunicator::reduce_scatter(const Tensor& input, Tensor& output,
                                                       ReduceOp op) {
  check_cpu_contiguous(input, "reduce_scatter input");
  check_cpu_contiguous(output, "reduce_scatter output");
  check_dtype(input.dtype());
  TANDEM_CHECK_T(TypeError, input.dtype() == output.dtype(), "gloo reduce_scatter: input is ",
                 dtype_name(input.dtype()), " but output is ", dtype_name(output.dtype()));
  TANDEM_CHECK_SHAPE(input.numel() == output.numel() * world_size_,
                     "gloo reduce_scatter: input needs ", world_size_, " x ", output.numel(),
                     " elements, got ", input.str());
  auto o = std::make_unique<GlooOp>();
  o->call = CollectiveCall{CollectiveKind::kReduceScatter, input.dtype(), input.shape(), -1, op};
  o->in = input;
  o->out = output;
  return impl_->enqueue(std::move(o), options_.timeout);
}

std::unique_ptr<Work> GlooCommunicator::barrier() {
  auto o = std::make_unique<GlooOp>();
  o->call.kind = CollectiveKind::kBarrier;
  return impl_->enqueue(std::move(o), options_.timeout);
}

}  // namespace tandem
