#include "collectives/shm/shm_communicator.h"

#include <fcntl.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>

#include "collectives/store/job_token.h"
#include "collectives/work_state.h"
#include "core/base/error.h"

namespace tandem {

namespace {

// One rank's progress counters, each on its own cache line. They count chunk rounds: `arrived`
// = this rank's slot holds round g's data; `reduced` = its slice of round g's result is written.
struct alignas(64) RankControl {
  std::atomic<uint32_t> arrived{0};
  char pad0[60];
  std::atomic<uint32_t> reduced{0};
  char pad1[60];
};

long futex(std::atomic<uint32_t>* addr, int op, uint32_t value, const timespec* timeout) {
  // Not FUTEX_PRIVATE_FLAG: the word lives in memory shared between processes.
  return syscall(SYS_futex, reinterpret_cast<uint32_t*>(addr), op, value, timeout, nullptr, 0);
}

bool reached(uint32_t value, uint32_t target) {
  return static_cast<int32_t>(value - target) >= 0;  // counters wrap
}

class ShmWork final : public Work {
 public:
  ShmWork(std::shared_ptr<WorkState> state, CollectiveCall call, uint64_t seq)
      : state_(std::move(state)), call_(std::move(call)), seq_(seq) {}
  void wait(std::chrono::milliseconds timeout) override {
    std::unique_lock<std::mutex> lock(state_->mu);
    if (!state_->cv.wait_for(lock, timeout,
                             [&] { return state_->done.load(std::memory_order_acquire); })) {
      throw TimeoutError(str(call_.brief(seq_), " timed out after ", timeout.count(),
                             " ms (shared-memory transport): a rank did not arrive"));
    }
    if (state_->error) std::rethrow_exception(state_->error);
  }
  bool is_completed() override { return state_->done.load(std::memory_order_acquire); }
  uint64_t sequence_number() const override { return seq_; }

 private:
  std::shared_ptr<WorkState> state_;
  CollectiveCall call_;
  uint64_t seq_;
};

// An inner communicator's Work under this communicator's sequence number.
class NumberedWork final : public Work {
 public:
  NumberedWork(std::unique_ptr<Work> inner, uint64_t seq) : inner_(std::move(inner)), seq_(seq) {}
  void wait(std::chrono::milliseconds timeout) override { inner_->wait(timeout); }
  bool is_completed() override { return inner_->is_completed(); }
  uint64_t sequence_number() const override { return seq_; }

 private:
  std::unique_ptr<Work> inner_;
  uint64_t seq_;
};

struct ShmOp {
  Tensor tensor;  // all_reduce: in place; all_gather: the input. Keeps the storage alive.
  Tensor output;  // all_gather only
  ReduceOp op = ReduceOp::kSum;
  std::shared_ptr<WorkState> state;
};

template <typename T>
void reduce_slice(T* out, const std::vector<const T*>& slots, int64_t lo, int64_t hi, ReduceOp op) {
  const T* first = slots[0];
  std::copy(first + lo, first + hi, out + lo);
  for (size_t r = 1; r < slots.size(); ++r) {
    const T* s = slots[r];
    if (op == ReduceOp::kMax) {
      for (int64_t i = lo; i < hi; ++i)
        out[i] = (out[i] > s[i] || out[i] != out[i]) ? out[i] : s[i];
    } else {
      for (int64_t i = lo; i < hi; ++i) out[i] += s[i];
    }
  }
  if (op == ReduceOp::kAvg) {
    const T w = static_cast<T>(slots.size());
    for (int64_t i = lo; i < hi; ++i) out[i] /= w;
  }
}

}  // namespace

struct ShmCommunicator::Impl {
  int rank = 0;
  int world = 1;
  void* base = MAP_FAILED;
  size_t bytes = 0;
  RankControl* control = nullptr;  // [world]
  char* slots = nullptr;           // [world][kChunkBytes]
  char* result = nullptr;          // [kChunkBytes]
  uint32_t round = 0;              // chunk rounds done (the thread's only)

  std::mutex mu;
  std::condition_variable cv;
  std::deque<ShmOp> queue;  // guarded by mu
  bool stop = false;        // guarded by mu; also read by waits
  std::atomic<bool> stopping{false};
  std::thread thread;

  ~Impl() {
    if (base != MAP_FAILED) munmap(base, bytes);
  }

  // Until every other rank's counter reaches `target`: spin briefly (the peer is usually a
  // moment behind), then sleep on its futex word.
  void wait_all(std::atomic<uint32_t> RankControl::*counter, uint32_t target) {
    for (int r = 0; r < world; ++r) {
      if (r == rank) continue;
      std::atomic<uint32_t>& word = control[r].*counter;
      for (int spin = 0;; ++spin) {
        const uint32_t v = word.load(std::memory_order_acquire);
        if (reached(v, target)) break;
        if (stopping.load(std::memory_order_relaxed))
          throw CommError("shm: communicator destroyed");
        if (spin < 200) continue;
        const timespec one_ms{0, 1'000'000};
        futex(&word, FUTEX_WAIT, v, &one_ms);
      }
    }
  }

  void publish(std::atomic<uint32_t> RankControl::*counter, uint32_t value) {
    std::atomic<uint32_t>& word = control[rank].*counter;
    word.store(value, std::memory_order_release);
    futex(&word, FUTEX_WAKE, INT_MAX, nullptr);
  }

  template <typename T>
  void all_reduce(T* data, int64_t n, ReduceOp op) {
    const int64_t per_chunk = kChunkBytes / static_cast<int64_t>(sizeof(T));
    std::vector<const T*> slot_ptrs(world);
    for (int r = 0; r < world; ++r)
      slot_ptrs[r] = reinterpret_cast<const T*>(slots + r * kChunkBytes);
    T* mine = reinterpret_cast<T*>(slots + rank * kChunkBytes);
    T* out = reinterpret_cast<T*>(result);
    for (int64_t begin = 0; begin < n || (n == 0 && begin == 0); begin += per_chunk) {
      const int64_t m = std::min(per_chunk, n - begin);
      const uint32_t g = ++round;
      // Every rank finished round g-1 (it published `arrived` g only after copying out), so
      // slots and result are free.
      std::memcpy(mine, data + begin, static_cast<size_t>(m) * sizeof(T));
      publish(&RankControl::arrived, g);
      wait_all(&RankControl::arrived, g);
      reduce_slice(out, slot_ptrs, m * rank / world, m * (rank + 1) / world, op);
      publish(&RankControl::reduced, g);
      wait_all(&RankControl::reduced, g);
      std::memcpy(data + begin, out, static_cast<size_t>(m) * sizeof(T));
      if (n == 0) break;
    }
  }

  // Each round: every rank copies up to a chunk of its input into its slot; once all have, each
  // copies every slot into its block of the output; once all have, the slots are free again.
  template <typename T>
  void all_gather(const T* in, T* out, int64_t n) {
    const int64_t per_chunk = kChunkBytes / static_cast<int64_t>(sizeof(T));
    for (int64_t begin = 0; begin < n || (n == 0 && begin == 0); begin += per_chunk) {
      const int64_t m = std::min(per_chunk, n - begin);
      const uint32_t g = ++round;
      std::memcpy(slots + rank * kChunkBytes, in + begin, static_cast<size_t>(m) * sizeof(T));
      publish(&RankControl::arrived, g);
      wait_all(&RankControl::arrived, g);
      for (int r = 0; r < world; ++r)
        std::memcpy(out + r * n + begin, slots + r * kChunkBytes,
                    static_cast<size_t>(m) * sizeof(T));
      publish(&RankControl::reduced, g);
      wait_all(&RankControl::reduced, g);
      if (n == 0) break;
    }
  }

  void run() {
    for (;;) {
      ShmOp op;
      {
        std::unique_lock<std::mutex> lock(mu);
        cv.wait(lock, [&] { return stop || !queue.empty(); });
        if (stop) return;
        op = std::move(queue.front());
        queue.pop_front();
      }
      std::exception_ptr error;
      try {
        const bool f64 = op.tensor.dtype() == DType::kF64;
        if (op.output.defined() && f64) {
          all_gather(op.tensor.data<double>(), op.output.data<double>(), op.tensor.numel());
        } else if (op.output.defined()) {
          all_gather(op.tensor.data<float>(), op.output.data<float>(), op.tensor.numel());
        } else if (f64) {
          all_reduce(op.tensor.data<double>(), op.tensor.numel(), op.op);
        } else {
          all_reduce(op.tensor.data<float>(), op.tensor.numel(), op.op);
        }
      } catch (...) {
        error = std::current_exception();
      }
      op.state->finish(error);
      if (error) return;  // the rounds are out of step now: fail everything after
    }
  }
};

ShmCommunicator::ShmCommunicator(std::unique_ptr<Communicator> inner, StoreClient& store,
                                 const std::string& prefix)
    : inner_(std::move(inner)), impl_(std::make_shared<Impl>()) {
  set_options(inner_->options());
  Impl& s = *impl_;
  s.rank = inner_->rank();
  s.world = inner_->world_size();
  const size_t control_bytes = sizeof(RankControl) * static_cast<size_t>(s.world);
  s.bytes = control_bytes + static_cast<size_t>(s.world + 1) * kChunkBytes;
  const std::string key = prefix + "/segment";
  std::string name;
  int fd = -1;
  if (s.rank == 0) {
    name = "/tandem-" + generate_job_token().substr(0, 16);
    fd = shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
    TANDEM_CHECK_T(CommError, fd >= 0, "shm: shm_open(", name, ") failed: ", std::strerror(errno),
                   "; is /dev/shm mounted and writable? (strategy.backend=gloo avoids it)");
    // posix_fallocate, not ftruncate alone: /dev/shm is often small (64 MiB in a default Docker
    // container), and a sparse segment that does not fit fails later with SIGBUS on first touch.
    // Allocated pages read as zeros, which the counters start from.
    const int rc = posix_fallocate(fd, 0, static_cast<off_t>(s.bytes));
    if (rc != 0) {
      close(fd);
      shm_unlink(name.c_str());
      throw CommError(
          str("shm: reserving ", s.bytes, " bytes in /dev/shm failed: ", std::strerror(rc),
              "; enlarge /dev/shm (docker --shm-size) or set ", "strategy.backend=gloo"));
    }
    store.set(key, name);
  } else {
    name = store.get(key, options().timeout);
    fd = shm_open(name.c_str(), O_RDWR, 0600);
    TANDEM_CHECK_T(CommError, fd >= 0, "shm: rank ", s.rank, " cannot open rank 0's segment ", name,
                   ": ", std::strerror(errno), "; are all ranks on one host?");
  }
  s.base = mmap(nullptr, s.bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  const int map_errno = errno;
  close(fd);
  // Everyone has mapped it (or failed): the name can go.
  std::exception_ptr barrier_error;
  try {
    inner_->barrier()->wait(options().timeout);
  } catch (...) {
    barrier_error = std::current_exception();
  }
  if (s.rank == 0) shm_unlink(name.c_str());
  segment_name_ = name;
  TANDEM_CHECK_T(CommError, s.base != MAP_FAILED, "shm: mmap of ", s.bytes,
                 " bytes failed: ", std::strerror(map_errno));
  if (barrier_error) std::rethrow_exception(barrier_error);
  s.control = static_cast<RankControl*>(s.base);  // zero-filled: fresh tmpfs pages
  s.slots = static_cast<char*>(s.base) + control_bytes;
  s.result = s.slots + static_cast<size_t>(s.world) * kChunkBytes;
  s.thread = std::thread([impl = impl_.get()] { impl->run(); });
}

ShmCommunicator::~ShmCommunicator() {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->stop = true;
  }
  impl_->stopping.store(true);
  impl_->cv.notify_all();
  if (impl_->thread.joinable()) impl_->thread.join();
  // Works never finished (queued behind a failure or the stop) report it instead of timing out.
  for (ShmOp& op : impl_->queue)
    op.state->finish(std::make_exception_ptr(CommError("shm: communicator destroyed")));
}

int ShmCommunicator::rank() const {
  return impl_->rank;
}
int ShmCommunicator::world_size() const {
  return impl_->world;
}
std::string ShmCommunicator::backend_name() const {
  return "shm+" + inner_->backend_name();
}

namespace {
bool shm_can_take(const Tensor& t) {
  return t.defined() && t.device().is_cpu() && t.is_contiguous() &&
         (t.dtype() == DType::kF32 || t.dtype() == DType::kF64);
}
}  // namespace

std::unique_ptr<Work> ShmCommunicator::enqueue(CollectiveCall call, Tensor tensor, Tensor output,
                                               ReduceOp op) {
  auto state = std::make_shared<WorkState>();
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->queue.push_back(ShmOp{std::move(tensor), std::move(output), op, state});
  }
  impl_->cv.notify_one();
  return std::make_unique<ShmWork>(std::move(state), std::move(call), next_seq_++);
}

std::unique_ptr<Work> ShmCommunicator::all_reduce(Tensor& tensor, ReduceOp op) {
  if (!shm_can_take(tensor) || impl_->world == 1) return numbered(inner_->all_reduce(tensor, op));
  return enqueue({CollectiveKind::kAllReduce, tensor.dtype(), tensor.shape(), -1, op}, tensor,
                 Tensor(), op);
}

std::unique_ptr<Work> ShmCommunicator::numbered(std::unique_ptr<Work> inner_work) {
  return std::make_unique<NumberedWork>(std::move(inner_work), next_seq_++);
}

std::unique_ptr<Work> ShmCommunicator::broadcast(Tensor& tensor, int root) {
  return numbered(inner_->broadcast(tensor, root));
}
std::unique_ptr<Work> ShmCommunicator::all_gather(const Tensor& input, Tensor& output) {
  const bool ours = shm_can_take(input) && shm_can_take(output) &&
                    input.dtype() == output.dtype() &&
                    output.numel() == input.numel() * impl_->world && impl_->world > 1;
  if (!ours) return numbered(inner_->all_gather(input, output));  // checks and errors there
  return enqueue({CollectiveKind::kAllGather, input.dtype(), input.shape()}, input, output,
                 ReduceOp::kSum);
}
std::unique_ptr<Work> ShmCommunicator::reduce_scatter(const Tensor& input, Tensor& output,
                                                      ReduceOp op) {
  return numbered(inner_->reduce_scatter(input, output, op));
}
std::unique_ptr<Work> ShmCommunicator::barrier() {
  return numbered(inner_->barrier());
}

}  // namespace tandem
