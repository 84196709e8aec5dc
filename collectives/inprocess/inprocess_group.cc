// In-process backend: a hub of pending collectives keyed by sequence number. The last rank to
// arrive runs the collective outside the hub's lock, then marks it done and wakes the waiters.
#include "collectives/inprocess/inprocess_group.h"

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>

#include "collectives/cpu_reduction.h"
#include "core/base/error.h"

namespace tandem {

// One collective, from the first rank's arrival until every rank has arrived and it ran (or a
// rank's call differed). Guarded by the hub's mutex, except the tensors while it runs.
struct InProcessSlot {
  CollectiveCall call;  // as called by first_rank
  int first_rank = -1;
  std::vector<Tensor> inputs, outputs;  // per rank; handles keep storage alive after a timeout
  std::vector<char> arrived;
  int count = 0;
  bool done = false;
  std::string error;  // set when done by a mismatch
};

struct InProcessHub {
  explicit InProcessHub(int w) : world_size(w), claimed(w, 0) {}
  const int world_size;
  std::mutex mu;
  std::condition_variable cv;
  std::map<uint64_t, std::shared_ptr<InProcessSlot>> pending;  // guarded by mu
  std::vector<char> claimed;                                   // guarded by mu
};

namespace {

// Runs the collective over every rank's tensors. Called by the last rank to arrive, without the
// hub's lock: no other thread touches a slot's tensors until it is marked done.
void run_collective(const InProcessSlot& s, int world_size) {
  const CollectiveCall& call = s.call;
  switch (call.kind) {
    case CollectiveKind::kAllReduce: {
      std::vector<const void*> in;
      std::vector<void*> out;
      for (int r = 0; r < world_size; ++r) {
        in.push_back(s.inputs[r].raw_data());
        out.push_back(s.outputs[r].raw_data());
      }
      reduce_buffers(call.dtype, call.op, in, out, shape_numel(call.shape));
      return;
    }
    case CollectiveKind::kBroadcast: {
      const size_t bytes = shape_numel(call.shape) * dtype_size(call.dtype);
      if (bytes == 0) return;
      const void* src = s.inputs[call.root].raw_data();
      for (int r = 0; r < world_size; ++r)
        if (r != call.root) std::memcpy(s.outputs[r].raw_data(), src, bytes);
      return;
    }
    case CollectiveKind::kAllGather: {
      const size_t bytes = shape_numel(call.shape) * dtype_size(call.dtype);
      if (bytes == 0) return;
      for (int q = 0; q < world_size; ++q) {
        char* out = static_cast<char*>(s.outputs[q].raw_data());
        // memmove: an input may be the output's own block (in-place all_gather).
        for (int r = 0; r < world_size; ++r)
          std::memmove(out + r * bytes, s.inputs[r].raw_data(), bytes);
      }
      return;
    }
    case CollectiveKind::kReduceScatter: {
      const int64_t n = shape_numel(call.shape) / world_size;
      const size_t block_bytes = n * dtype_size(call.dtype);
      for (int q = 0; q < world_size; ++q) {
        std::vector<const void*> in;
        for (int r = 0; r < world_size; ++r)
          in.push_back(static_cast<const char*>(s.inputs[r].raw_data()) + q * block_bytes);
        reduce_buffers(call.dtype, call.op, in, {s.outputs[q].raw_data()}, n);
      }
      return;
    }
    case CollectiveKind::kBarrier:
      return;
  }
}

std::string rank_list(const std::vector<int>& ranks) {
  std::string s = ranks.size() == 1 ? "rank " : "ranks ";
  for (size_t i = 0; i < ranks.size(); ++i) s += (i ? ", " : "") + std::to_string(ranks[i]);
  return s;
}

class InProcessWork final : public Work {
 public:
  InProcessWork(std::shared_ptr<InProcessHub> hub, std::shared_ptr<InProcessSlot> slot,
                uint64_t seq)
      : hub_(std::move(hub)), slot_(std::move(slot)), seq_(seq) {}

  void wait(std::chrono::milliseconds timeout) override {
    std::unique_lock<std::mutex> lock(hub_->mu);
    if (!hub_->cv.wait_for(lock, timeout, [&] { return slot_->done; })) {
      std::vector<int> missing;
      for (int r = 0; r < hub_->world_size; ++r)
        if (!slot_->arrived[r]) missing.push_back(r);
      std::string what = str(collective_kind_name(slot_->call.kind), " #", seq_,
                             " timed out after ", timeout.count(), " ms: ");
      if (missing.empty())
        throw TimeoutError(what + "every rank arrived but it did not finish in time");
      throw TimeoutError(what + rank_list(missing) + " did not arrive");
    }
    if (!slot_->error.empty()) throw CommError(slot_->error);
  }

  bool is_completed() override {
    std::lock_guard<std::mutex> lock(hub_->mu);
    return slot_->done;
  }

  uint64_t sequence_number() const override { return seq_; }

 private:
  std::shared_ptr<InProcessHub> hub_;
  std::shared_ptr<InProcessSlot> slot_;
  uint64_t seq_;
};

class InProcessCommunicator final : public Communicator {
 public:
  InProcessCommunicator(std::shared_ptr<InProcessHub> hub, int rank, const CommOptions& options)
      : hub_(std::move(hub)), rank_(rank) {
    options_ = options;
  }

  int rank() const override { return rank_; }
  int world_size() const override { return hub_->world_size; }
  std::string backend_name() const override { return "inprocess"; }

  std::unique_ptr<Work> all_reduce(Tensor& tensor, ReduceOp op) override {
    std::string what = name("all_reduce");
    check_tensor(tensor, what, "tensor");
    check_reducible(tensor.dtype(), op, what);
    return issue({CollectiveKind::kAllReduce, tensor.dtype(), tensor.shape(), -1, op}, tensor,
                 tensor);
  }

  std::unique_ptr<Work> broadcast(Tensor& tensor, int root) override {
    std::string what = name("broadcast");
    check_tensor(tensor, what, "tensor");
    TANDEM_CHECK(root >= 0 && root < world_size(), what, ": root ", root,
                 " is not a rank of this group of ", world_size());
    return issue({CollectiveKind::kBroadcast, tensor.dtype(), tensor.shape(), root}, tensor,
                 tensor);
  }

  std::unique_ptr<Work> all_gather(const Tensor& input, Tensor& output) override {
    std::string what = name("all_gather");
    check_tensor(input, what, "input");
    check_tensor(output, what, "output");
    TANDEM_CHECK_T(TypeError, input.dtype() == output.dtype(), what, ": input is ",
                   dtype_name(input.dtype()), " but output is ", dtype_name(output.dtype()));
    TANDEM_CHECK_SHAPE(output.numel() == world_size() * input.numel(), what, ": output has ",
                       output.numel(), " elements, expected world_size ", world_size(), " x ",
                       input.numel());
    return issue({CollectiveKind::kAllGather, input.dtype(), input.shape()}, input, output);
  }

  std::unique_ptr<Work> reduce_scatter(const Tensor& input, Tensor& output, ReduceOp op) override {
    std::string what = name("reduce_scatter");
    check_tensor(input, what, "input");
    check_tensor(output, what, "output");
    check_reducible(input.dtype(), op, what);
    TANDEM_CHECK_T(TypeError, input.dtype() == output.dtype(), what, ": input is ",
                   dtype_name(input.dtype()), " but output is ", dtype_name(output.dtype()));
    TANDEM_CHECK_SHAPE(input.numel() == world_size() * output.numel(), what, ": input has ",
                       input.numel(), " elements, expected world_size ", world_size(), " x ",
                       output.numel());
    return issue({CollectiveKind::kReduceScatter, input.dtype(), input.shape(), -1, op}, input,
                 output);
  }

  std::unique_ptr<Work> barrier() override {
    return issue(CollectiveCall(), Tensor(), Tensor());  // CollectiveCall() is a barrier
  }

 private:
  // "all_reduce #3 on rank 1": the call about to be issued, for argument errors.
  std::string name(const char* op) const { return str(op, " #", next_seq_, " on rank ", rank_); }

  static void check_tensor(const Tensor& t, const std::string& what, const char* role) {
    TANDEM_CHECK(t.defined(), what, ": the ", role, " tensor is undefined");
    TANDEM_CHECK(t.device().is_cpu(), what, ": the ", role, " is on ", t.device().str(),
                 ": the in-process backend takes CPU tensors");
    TANDEM_CHECK(t.is_contiguous(), what, ": the ", role,
                 " is not contiguous: pass tensor.contiguous() and copy the result back");
  }

  std::unique_ptr<Work> issue(const CollectiveCall& call, const Tensor& input,
                              const Tensor& output) {
    const uint64_t seq = next_seq_++;
    const int world = hub_->world_size;
    std::shared_ptr<InProcessSlot> slot;
    bool last = false;
    {
      std::lock_guard<std::mutex> lock(hub_->mu);
      std::shared_ptr<InProcessSlot>& entry = hub_->pending[seq];
      if (!entry) {
        entry = std::make_shared<InProcessSlot>();
        entry->call = call;
        entry->first_rank = rank_;
        entry->inputs.resize(world);
        entry->outputs.resize(world);
        entry->arrived.assign(world, 0);
      }
      slot = entry;
      slot->inputs[rank_] = input;
      slot->outputs[rank_] = output;
      slot->arrived[rank_] = 1;
      ++slot->count;
      if (!(call == slot->call) && slot->error.empty()) {
        int a = std::min(rank_, slot->first_rank), b = std::max(rank_, slot->first_rank);
        const CollectiveCall& call_a = a == rank_ ? call : slot->call;
        const CollectiveCall& call_b = b == rank_ ? call : slot->call;
        slot->error = str("collective #", seq, " mismatch: rank ", a, " called ", call_a.str(),
                          ", rank ", b, " called ", call_b.str(),
                          ": every rank must issue the same collectives in the same order");
        slot->done = true;
        hub_->cv.notify_all();
      }
      if (slot->count == world) {
        hub_->pending.erase(seq);
        last = !slot->done;
      }
    }
    if (last) {
      run_collective(*slot, world);
      std::lock_guard<std::mutex> lock(hub_->mu);
      slot->done = true;
      slot->inputs.clear();
      slot->outputs.clear();
      hub_->cv.notify_all();
    }
    return std::make_unique<InProcessWork>(hub_, std::move(slot), seq);
  }

  std::shared_ptr<InProcessHub> hub_;
  const int rank_;
  uint64_t next_seq_ = 0;
};

}  // namespace

InProcessGroup::InProcessGroup(int world_size) {
  TANDEM_CHECK(world_size >= 1, "in-process group: world_size must be at least 1, got ",
               world_size);
  hub_ = std::make_shared<InProcessHub>(world_size);
}

int InProcessGroup::world_size() const {
  return hub_->world_size;
}

std::unique_ptr<Communicator> InProcessGroup::communicator(int rank, const CommOptions& options) {
  TANDEM_CHECK(rank >= 0 && rank < hub_->world_size, "in-process group: rank ", rank,
               " is out of range 0..", hub_->world_size - 1);
  {
    std::lock_guard<std::mutex> lock(hub_->mu);
    TANDEM_CHECK(!hub_->claimed[rank], "in-process group: the communicator of rank ", rank,
                 " was already created: create each rank's communicator once");
    hub_->claimed[rank] = 1;
  }
  return std::make_unique<InProcessCommunicator>(hub_, rank, options);
}

std::vector<std::unique_ptr<Communicator>> InProcessGroup::create(int world_size,
                                                                  const CommOptions& options) {
  InProcessGroup group(world_size);
  std::vector<std::unique_ptr<Communicator>> comms;
  for (int r = 0; r < world_size; ++r) comms.push_back(group.communicator(r, options));
  return comms;
}

}  // namespace tandem
