// The DDP gradient reducer (PyTorch DistributedDataParallel's Reducer, reduced to its essentials).
//
// Gradients are packed into buckets in reverse parameter order -- the order backward produces them
// -- with a small first bucket (1 MiB) so communication starts early, then buckets of up to
// bucket_bytes (25 MiB) -- the rule lives in bucket_plan.h, which `tandem scaling` shares. Each
// parameter's .grad is a *view into its bucket*, so autograd accumulates straight into the buffer
// that is all-reduced: no copy in or out; the view is also the parameter's gradient destination, so
// after zero_grad(set_to_none) linear layers compute their weight gradient in the bucket itself,
// and the rest is copied in once by the hook. Buckets come from Communicator::allocate_shared: on
// one host, memory the shm backend reduces in place. A post-accumulate hook on every parameter
// counts down its bucket; when a bucket is complete its all-reduce starts at once, overlapping the
// rest of backward. Buckets are launched strictly in bucket order, so every rank issues the same
// collectives in the same order whatever order its hooks fire in.
// After the first step the buckets are re-planned once from the order in which gradients actually
// arrived (rank 0's order, broadcast, so all ranks agree).
//
// Parameters that got no gradient in a step (a branch one rank skipped, a layer nobody called) are
// handled as PyTorch DDP's find_unused_parameters does, at the end of backward (finalize): each is
// marked ready with the gradient it holds -- zero, or what earlier accumulation micro-batches left
// -- so every bucket completes on every rank and no rank waits for a collective that never comes.
// The averaged gradient is then the one of the global loss, in which that rank's rows did not
// involve the parameter. They are named once, in a warning. Unlike PyTorch, a parameter unused on
// *every* rank gets a zero gradient rather than none (knowing that would cost one more collective
// per step): SGD without weight decay and Adam from fresh state leave it unchanged all the same.
//
// The reducer's hooks capture `this`: the destructor removes them, so a model that outlives its
// reducer (a strategy rebuilt, a failed run) can still run backward.
//
// Thread-safety: hooks run on the thread that calls backward; one step at a time.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "collectives/communicator.h"
#include "configs/schema/enums.h"
#include "core/optim/optimizer.h"

namespace tandem {

class StepTrace;

struct ReducerOptions {
  int64_t first_bucket_bytes = 1 << 20;          // PyTorch DDP: 1 MiB first bucket
  int64_t bucket_bytes = 25 << 20;               // PyTorch DDP: 25 MiB
  Compression compression = Compression::kNone;  // bf16 | fp16: halves the bytes on the wire
  bool rebuild_after_first_step = true;
  // Where warnings go (parameters without a gradient), one line each, already prefixed with the
  // rank; null: standard error.
  std::function<void(const std::string&)> warn;
};

// One entry of the launch log: which bucket started, and how many parameters were still waiting
// for their gradient at that moment (> 0 means the all-reduce overlapped backward).
struct BucketLaunch {
  int bucket = 0;
  int params_pending = 0;
  std::chrono::steady_clock::time_point at;
};

class Reducer {
 public:
  Reducer(NamedTensors params, Communicator& comm, ReducerOptions options);
  ~Reducer();

  // Before a step's first backward. sync=false: this backward only accumulates (gradient
  // accumulation micro-batches); the hooks launch nothing.
  void prepare_for_backward(bool sync);
  // After the last backward: parameters that got no gradient are marked ready (see the note at
  // the top; named in a warning the first time), then waits for every bucket and writes averaged
  // gradients back.
  void finalize();

  int num_buckets() const { return static_cast<int>(buckets_.size()); }
  // Parameter names per bucket, in bucket order (for tests and logs).
  std::vector<std::vector<std::string>> bucket_layout() const;
  const std::vector<BucketLaunch>& launch_log() const { return launch_log_; }
  // Names of the parameters that got no gradient on this rank in the last synchronised step.
  const std::vector<std::string>& unused_last_step() const { return unused_last_step_; }
  // logging.trace: each bucket's all-reduce, from its launch to its completion, goes there.
  void set_trace(StepTrace* trace) { trace_ = trace; }

 private:
  struct Bucket {
    std::vector<int> params;  // indices into params_
    std::vector<int64_t> offsets;
    Tensor buffer;  // flat, contiguous, the params' dtype
    Tensor wire;    // compressed copy (bf16/fp16) when compression is on
    int pending = 0;
    std::unique_ptr<Work> work;
    bool launched = false;
  };

  void plan(const std::vector<int>& order);
  void on_grad_ready(int param_index);
  void launch_ready_buckets();
  void mark_unused_ready();
  void trace_bucket(int index);
  Tensor bucket_view(int param_index) const;

  NamedTensors params_;
  Communicator& comm_;
  ReducerOptions options_;
  std::vector<Bucket> buckets_;
  std::vector<int> bucket_of_;      // param index -> bucket
  std::vector<bool> ready_;         // this step
  std::vector<int> arrival_order_;  // first step's hook order, for the re-plan
  int next_to_launch_ = 0;
  int params_pending_ = 0;
  bool sync_ = true;
  bool rebuilt_ = false;
  int64_t steps_ = 0;
  std::vector<BucketLaunch> launch_log_;
  std::vector<HookHandle> hooks_;
  std::vector<bool> warned_unused_;  // named in a warning already
  std::vector<std::string> unused_last_step_;
  StepTrace* trace_ = nullptr;
};

}  // namespace tandem
