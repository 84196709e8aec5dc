// ShmCommunicator: setup of the shared segment, the communication thread and the reduction
// kernels (see shm_communicator.h).
#include "collectives/shm/shm_communicator.h"

#include <fcntl.h>
#include <linux/futex.h>
#include <signal.h>
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

#include "collectives/cpu_reduction.h"
#include "collectives/work_state.h"
#include "core/base/error.h"
#include "core/tensor/storage.h"

namespace tandem {

namespace {

// One rank's progress counters, each on its own cache line. They count chunk rounds: `arrived`
// = this rank's slot holds round g's data; `reduced` = its slice of round g's result is written.
// `buffer` names what the rank's current round works on -- 0: the staging slots; else (shared
// buffer id << 40) + byte offset of the tensor in that buffer's copies -- and `count` its elements;
// both are written before `arrived`, so a peer that sees the round sees them.
struct alignas(64) RankControl {
  std::atomic<uint32_t> arrived{0};
  char pad0[60];
  std::atomic<uint32_t> reduced{0};
  char pad1[60];
  std::atomic<uint64_t> buffer{0};
  std::atomic<int64_t> count{0};
  std::atomic<int32_t> pid{0};  // the rank's process, so that peers notice when it is gone
  char pad2[44];
};

// One allocate_shared segment: `world` copies of `stride` bytes, rank r's at base + r * stride.
// Unmapped when the last tensor over it (and the last op using it) is gone.
struct SharedBuffer {
  uint64_t id = 0;  // 1, 2, ... in allocation order, the same on every rank
  char* base = nullptr;
  size_t stride = 0;
  size_t bytes = 0;  // of each copy that tensors may use
  size_t mapped = 0;
  ~SharedBuffer() {
    if (base != nullptr) munmap(base, mapped);
  }
};

}  // namespace

// Where a tensor lies in a shared buffer, for the in-place paths.
struct ShmCommunicator::SharedRef {
  std::shared_ptr<SharedBuffer> buffer;  // null: not in one
  size_t offset = 0;                     // bytes from the start of this rank's copy
  uint64_t key() const { return buffer ? (buffer->id << 40) + offset : 0; }
};

namespace {
using SharedRef = ShmCommunicator::SharedRef;

long futex(std::atomic<uint32_t>* addr, int op, uint32_t value, const timespec* timeout) {
  // Not FUTEX_PRIVATE_FLAG: the word lives in memory shared between processes.
  return syscall(SYS_futex, reinterpret_cast<uint32_t*>(addr), op, value, timeout, nullptr, 0);
}

bool reached(uint32_t value, uint32_t target) {
  return static_cast<int32_t>(value - target) >= 0;  // counters wrap
}

// An inner communicator's Work under this communicator's sequence number.
class NumberedWork final : public Work {
 public:
  NumberedWork(std::unique_ptr<Work> inner, uint64_t seq) : inner_(std::move(inner)), seq_(seq) {}
  void wait(std::chrono::milliseconds timeout) override { inner_->wait(timeout); }
  bool is_completed() override { return inner_->is_completed(); }
  uint64_t sequence_number() const override { return seq_; }
  std::optional<std::chrono::steady_clock::time_point> completed_at() override {
    return inner_->completed_at();
  }

 private:
  std::unique_ptr<Work> inner_;
  uint64_t seq_;
};

// Elements [lo, hi) of every rank's input reduced in rank order (collectives/cpu_reduction.h) --
// the staged and the in-place paths alike, so both give the same bits -- into every output.
template <typename T>
void reduce_range(const std::vector<const T*>& inputs, const std::vector<T*>& outputs, int64_t lo,
                  int64_t hi, ReduceOp op) {
  if (hi <= lo) return;
  std::vector<const void*> in;
  for (const T* p : inputs) in.push_back(p + lo);
  std::vector<void*> out;
  for (T* p : outputs) out.push_back(p + lo);
  reduce_buffers(DTypeOf<T>::value, op, in, out, hi - lo);
}

template <typename T>
std::vector<const T*> const_ptrs(const std::vector<T*>& ptrs) {
  return std::vector<const T*>(ptrs.begin(), ptrs.end());
}

}  // namespace

enum class ShmOpKind { kAllReduce, kAllGather, kReduceOwnSlice, kSpread };

struct ShmOp {
  ShmOpKind kind = ShmOpKind::kAllReduce;
  Tensor tensor;  // all_reduce, reduce_own_slice, spread: in place; all_gather: the input.
  Tensor output;  // all_gather only
  ReduceOp op = ReduceOp::kSum;
  std::shared_ptr<WorkState> state;
  ShmCommunicator::SharedRef
      shared;  // set: the in-place path (all_reduce: tensor's place; all_gather: output's)
  std::vector<std::pair<int64_t, int64_t>> ranges;  // spread: element ranges of this rank's copy
};

struct ShmCommunicator::Impl {
  int rank = 0;
  int world = 1;
  void* base = MAP_FAILED;
  size_t bytes = 0;
  RankControl* control = nullptr;  // [world]
  char* slots = nullptr;           // [world][kChunkBytes]
  char* result = nullptr;          // [kChunkBytes]
  uint32_t round = 0;              // chunk rounds done (the thread's only)

  std::mutex buffers_mu;
  std::vector<std::weak_ptr<SharedBuffer>> buffers;  // guarded by buffers_mu

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
  // moment behind), then sleep on its futex word, looking every 100 sleeps whether the peer's
  // process still exists (a rank that died would otherwise keep the others waiting until their
  // timeout).
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
        if (spin % 100 == 0) check_alive(r);
        const timespec one_ms{0, 1'000'000};
        futex(&word, FUTEX_WAIT, v, &one_ms);
      }
    }
  }

  void check_alive(int r) {
    const int32_t pid = control[r].pid.load(std::memory_order_relaxed);
    if (pid > 0 && kill(pid, 0) != 0 && errno == ESRCH)
      throw CommError(str("shm: rank ", r, " of this host (pid ", pid,
                          ") is gone: it died or was killed during a collective"));
  }

  void publish(std::atomic<uint32_t> RankControl::*counter, uint32_t value) {
    std::atomic<uint32_t>& word = control[rank].*counter;
    word.store(value, std::memory_order_release);
    futex(&word, FUTEX_WAKE, INT_MAX, nullptr);
  }

  // The start of every round: say what this rank works on, wait for everyone to arrive, and fail
  // (on every rank that sees it) when a peer works on something else.
  void arrive(uint32_t g, uint64_t key, int64_t count) {
    control[rank].buffer.store(key, std::memory_order_relaxed);
    control[rank].count.store(count, std::memory_order_relaxed);
    publish(&RankControl::arrived, g);
    wait_all(&RankControl::arrived, g);
    for (int r = 0; r < world; ++r) {
      const uint64_t theirs = control[r].buffer.load(std::memory_order_relaxed);
      const int64_t n = control[r].count.load(std::memory_order_relaxed);
      if (theirs != key || n != count) {
        auto what = [](uint64_t k, int64_t m) {
          return k == 0 ? str(m, " elements through the staging slots")
                        : str(m, " elements of shared buffer ", k >> 40, " at byte ",
                              k & ((uint64_t{1} << 40) - 1));
        };
        throw CommError(str("shm: rank ", rank, " reduces ", what(key, count), " but rank ", r, " ",
                            what(theirs, n),
                            "; every rank must pass the same tensor (same allocate_shared buffer "
                            "and offset, or none)"));
      }
    }
  }

  // The tensor's place in a shared buffer, if it lies inside this rank's copy of one.
  SharedRef find_shared(const Tensor& t) {
    const char* p = static_cast<const char*>(t.raw_data());
    const size_t n = static_cast<size_t>(t.numel()) * dtype_size(t.dtype());
    std::lock_guard<std::mutex> lock(buffers_mu);
    SharedRef found;
    for (auto it = buffers.begin(); it != buffers.end();) {
      std::shared_ptr<SharedBuffer> b = it->lock();
      if (!b) {
        it = buffers.erase(it);
        continue;
      }
      const char* own = b->base + static_cast<size_t>(rank) * b->stride;
      if (p >= own && p + n <= own + b->bytes) found = {b, static_cast<size_t>(p - own)};
      ++it;
    }
    return found;
  }

  template <typename T>
  std::vector<T*> copies_at(const SharedRef& ref) {
    std::vector<T*> out(world);
    for (int r = 0; r < world; ++r)
      out[r] = reinterpret_cast<T*>(ref.buffer->base + static_cast<size_t>(r) * ref.buffer->stride +
                                    ref.offset);
    return out;
  }

  // In place over every rank's copy: this rank reduces its slice of all of them and writes the
  // result into all of them; no rank touches another's slice, so one round suffices.
  template <typename T>
  void all_reduce_shared(const SharedRef& ref, int64_t n, ReduceOp op) {
    const uint32_t g = ++round;
    arrive(g, ref.key(), n);
    std::vector<T*> copies = copies_at<T>(ref);
    reduce_range<T>(const_ptrs(copies), copies, n * rank / world, n * (rank + 1) / world, op);
    publish(&RankControl::reduced, g);
    wait_all(&RankControl::reduced, g);
  }

  // In-place all_gather over every rank's copy of the output (n elements per rank): once all have
  // arrived (no rank writes into a copy its owner may still be using), each writes its own block
  // into every other copy.
  template <typename T>
  void all_gather_shared(const SharedRef& ref, int64_t n) {
    const uint32_t g = ++round;
    arrive(g, ref.key(), n);
    std::vector<T*> copies = copies_at<T>(ref);
    const T* mine = copies[rank] + static_cast<int64_t>(rank) * n;
    for (int r = 0; r < world; ++r)
      if (r != rank)
        std::memcpy(copies[r] + static_cast<int64_t>(rank) * n, mine,
                    static_cast<size_t>(n) * sizeof(T));
    publish(&RankControl::reduced, g);
    wait_all(&RankControl::reduced, g);
  }

  // Slice `rank` of every copy, reduced into this rank's copy only: the first half of an all-reduce
  // whose second half happens elsewhere (the hierarchical communicator reduces the slice across
  // hosts, then spreads it). Nobody writes a slice another rank reads, so one round suffices.
  template <typename T>
  void reduce_own_slice(const SharedRef& ref, int64_t n, ReduceOp op) {
    const uint32_t g = ++round;
    arrive(g, ref.key(), n);
    std::vector<T*> copies = copies_at<T>(ref);
    const int64_t lo = n * rank / world, hi = n * (rank + 1) / world;
    reduce_range<T>(const_ptrs(copies), {copies[rank]}, lo, hi, op);
    publish(&RankControl::reduced, g);
    wait_all(&RankControl::reduced, g);
  }

  // This rank's `ranges` of its own copy, written into every other copy (once all have arrived, so
  // no copy is written while its owner still uses it).
  void spread(const SharedRef& ref, int64_t n, size_t elem,
              const std::vector<std::pair<int64_t, int64_t>>& ranges) {
    const uint32_t g = ++round;
    arrive(g, ref.key(), n);
    std::vector<char*> copies = copies_at<char>(ref);
    for (const auto& [lo, hi] : ranges)
      for (int r = 0; r < world; ++r)
        if (r != rank && hi > lo)
          std::memcpy(copies[r] + lo * elem, copies[rank] + lo * elem,
                      static_cast<size_t>(hi - lo) * elem);
    publish(&RankControl::reduced, g);
    wait_all(&RankControl::reduced, g);
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
      arrive(g, 0, n);
      reduce_range<T>(slot_ptrs, {out}, m * rank / world, m * (rank + 1) / world, op);
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
      arrive(g, 0, n);
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
        if (op.kind == ShmOpKind::kReduceOwnSlice) {
          if (f64)
            reduce_own_slice<double>(op.shared, op.tensor.numel(), op.op);
          else
            reduce_own_slice<float>(op.shared, op.tensor.numel(), op.op);
        } else if (op.kind == ShmOpKind::kSpread) {
          spread(op.shared, op.tensor.numel(), dtype_size(op.tensor.dtype()), op.ranges);
        } else if (op.shared.buffer && op.output.defined()) {
          if (f64)
            all_gather_shared<double>(op.shared, op.tensor.numel());
          else
            all_gather_shared<float>(op.shared, op.tensor.numel());
        } else if (op.shared.buffer) {
          if (f64)
            all_reduce_shared<double>(op.shared, op.tensor.numel(), op.op);
          else
            all_reduce_shared<float>(op.shared, op.tensor.numel(), op.op);
        } else if (op.output.defined() && f64) {
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
                                 const std::string& prefix, const std::string& segment_prefix)
    : inner_(std::move(inner)),
      impl_(std::make_shared<Impl>()),
      store_(&store),
      prefix_(prefix),
      segment_prefix_(segment_prefix) {
  TANDEM_CHECK_T(ConfigError, valid_shm_prefix(segment_prefix_), "shm: segment prefix '",
                 segment_prefix_,
                 "' must be 'tandem-' followed by letters, digits, '-' or '_' (TANDEM_SHM_PREFIX)");
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
    name = new_shm_segment_name(segment_prefix_);
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
      throw CommError(str("shm: reserving ", s.bytes, " bytes in /dev/shm failed: ",
                          std::strerror(rc), "; ", shm_full_advice(segment_prefix_)));
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
  s.control[s.rank].pid.store(static_cast<int32_t>(getpid()), std::memory_order_relaxed);
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
                                               ReduceOp op, SharedRef shared) {
  ShmOp o;
  o.kind = output.defined() ? ShmOpKind::kAllGather : ShmOpKind::kAllReduce;
  o.tensor = std::move(tensor);
  o.output = std::move(output);
  o.op = op;
  o.shared = std::move(shared);
  return enqueue_op(std::move(call), std::move(o));
}

std::unique_ptr<Work> ShmCommunicator::enqueue_op(CollectiveCall call, ShmOp op) {
  auto state = std::make_shared<WorkState>();
  op.state = state;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->queue.push_back(std::move(op));
  }
  impl_->cv.notify_one();
  return std::make_unique<StateWork>(std::move(state), std::move(call), next_seq_++, "shm",
                                     " (shared-memory transport): a rank did not arrive");
}

std::unique_ptr<Work> ShmCommunicator::all_reduce(Tensor& tensor, ReduceOp op) {
  if (!shm_can_take(tensor) || impl_->world == 1) return numbered(inner_->all_reduce(tensor, op));
  return enqueue({CollectiveKind::kAllReduce, tensor.dtype(), tensor.shape(), -1, op}, tensor,
                 Tensor(), op, impl_->find_shared(tensor));
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
  // In place over a shared buffer (input = this rank's block of output): no staging.
  SharedRef shared = impl_->find_shared(output);
  const size_t block_bytes = static_cast<size_t>(input.numel()) * dtype_size(input.dtype());
  const bool in_place = shared.buffer && input.numel() > 0 &&
                        static_cast<const char*>(input.raw_data()) ==
                            static_cast<const char*>(output.raw_data()) + impl_->rank * block_bytes;
  return enqueue({CollectiveKind::kAllGather, input.dtype(), input.shape()}, input, output,
                 ReduceOp::kSum, in_place ? std::move(shared) : SharedRef{});
}

Tensor ShmCommunicator::allocate_shared(int64_t numel, DType dtype, Device device) {
  Impl& s = *impl_;
  if (s.world == 1 || !device.is_cpu() || (dtype != DType::kF32 && dtype != DType::kF64))
    return Communicator::allocate_shared(numel, dtype, device);
  auto buffer = std::make_shared<SharedBuffer>();
  buffer->id = ++buffers_made_;
  buffer->bytes = static_cast<size_t>(numel) * dtype_size(dtype);
  const size_t page = 4096;
  buffer->stride = std::max<size_t>((buffer->bytes + page - 1) / page * page, page);
  buffer->mapped = buffer->stride * static_cast<size_t>(s.world);
  const std::string key = prefix_ + "/buffer/" + std::to_string(buffer->id);
  // Rank 0 creates and reserves the segment (an empty name: it could not, /dev/shm is too small);
  // every rank maps it; one inner all_reduce of "did it work" makes them agree, and is the
  // barrier after which rank 0 unlinks the name.
  std::string name;
  int fd = -1;
  if (s.rank == 0) {
    name = new_shm_segment_name(segment_prefix_);
    fd = shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
    if (fd >= 0 && posix_fallocate(fd, 0, static_cast<off_t>(buffer->mapped)) != 0) {
      close(fd);
      shm_unlink(name.c_str());
      fd = -1;
    }
    store_->set(key, fd >= 0 ? name : "");
  } else {
    name = store_->get(key, options().timeout);
    if (!name.empty()) fd = shm_open(name.c_str(), O_RDWR, 0600);
  }
  void* base = MAP_FAILED;
  if (fd >= 0) {
    base = mmap(nullptr, buffer->mapped, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
  }
  Tensor failed = full({1}, base == MAP_FAILED ? 1.0 : 0.0, DType::kF64);
  std::exception_ptr agree_error;
  try {
    inner_->all_reduce(failed, ReduceOp::kMax)->wait(options().timeout);
  } catch (...) {
    agree_error = std::current_exception();
  }
  if (s.rank == 0 && !name.empty()) shm_unlink(name.c_str());
  if (base != MAP_FAILED) buffer->base = static_cast<char*>(base);  // unmapped with `buffer`
  if (agree_error) std::rethrow_exception(agree_error);
  if (failed.item() != 0.0) return Communicator::allocate_shared(numel, dtype, device);
  {
    std::lock_guard<std::mutex> lock(s.buffers_mu);
    s.buffers.push_back(buffer);
  }
  // Fresh tmpfs pages read as zeros. The storage keeps the mapping alive.
  char* mine = buffer->base + static_cast<size_t>(s.rank) * buffer->stride;
  auto storage = std::make_shared<Storage>(mine, buffer->bytes, Device::cpu(),
                                           [buffer]() mutable { buffer.reset(); });
  return from_storage(std::move(storage), {numel}, dtype);
}
bool ShmCommunicator::is_shared(const Tensor& tensor) const {
  return shm_can_take(tensor) && impl_->find_shared(tensor).buffer != nullptr;
}

std::unique_ptr<Work> ShmCommunicator::reduce_own_slice(Tensor& tensor, ReduceOp op) {
  SharedRef shared = impl_->find_shared(tensor);
  TANDEM_CHECK(shm_can_take(tensor) && shared.buffer, "shm: reduce_own_slice needs a contiguous ",
               "f32/f64 tensor inside an allocate_shared buffer, got ", tensor.str());
  ShmOp o;
  o.kind = ShmOpKind::kReduceOwnSlice;
  o.tensor = tensor;
  o.op = op;
  o.shared = std::move(shared);
  return enqueue_op({CollectiveKind::kReduceScatter, tensor.dtype(), tensor.shape(), -1, op},
                    std::move(o));
}

std::unique_ptr<Work> ShmCommunicator::spread(Tensor& tensor,
                                              std::vector<std::pair<int64_t, int64_t>> ranges) {
  SharedRef shared = impl_->find_shared(tensor);
  TANDEM_CHECK(shm_can_take(tensor) && shared.buffer, "shm: spread needs a contiguous ",
               "f32/f64 tensor inside an allocate_shared buffer, got ", tensor.str());
  for (const auto& [lo, hi] : ranges)
    TANDEM_CHECK(lo >= 0 && lo <= hi && hi <= tensor.numel(), "shm: spread range [", lo, ", ", hi,
                 ") is outside a tensor of ", tensor.numel(), " elements");
  ShmOp o;
  o.kind = ShmOpKind::kSpread;
  o.tensor = tensor;
  o.shared = std::move(shared);
  o.ranges = std::move(ranges);
  return enqueue_op({CollectiveKind::kAllGather, tensor.dtype(), tensor.shape()}, std::move(o));
}

std::unique_ptr<Work> ShmCommunicator::reduce_scatter(const Tensor& input, Tensor& output,
                                                      ReduceOp op) {
  return numbered(inner_->reduce_scatter(input, output, op));
}
std::unique_ptr<Work> ShmCommunicator::barrier() {
  return numbered(inner_->barrier());
}

}  // namespace tandem
