// The DDP gradient reducer (PyTorch DistributedDataParallel's Reducer, reduced to its essentials).
//
// Gradients are packed into buckets in reverse parameter order -- the order backward produces
// them -- with a small first bucket (1 MiB) so communication starts early, then buckets of up to
// bucket_bytes (25 MiB). Each parameter's .grad is a *view into its bucket*, so autograd
// accumulates straight into the buffer that is all-reduced: no copy in or out. A post-accumulate
// hook on every parameter counts down its bucket; when a bucket is complete its all-reduce starts
// at once, overlapping the rest of backward. Buckets are launched strictly in bucket order, so
// every rank issues the same collectives in the same order whatever order its hooks fire in.
// After the first step the buckets are re-planned once from the order in which gradients actually
// arrived (rank 0's order, broadcast, so all ranks agree).
//
// Thread-safety: hooks run on the thread that calls backward; one step at a time.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "collectives/communicator.h"
#include "core/optim/optimizer.h"

namespace tandem {

struct ReducerOptions {
  int64_t first_bucket_bytes = 1 << 20;   // PyTorch DDP: 1 MiB first bucket
  int64_t bucket_bytes = 25 << 20;        // PyTorch DDP: 25 MiB
  std::string compression = "none";       // none | bf16 | fp16: halves the bytes on the wire
  bool rebuild_after_first_step = true;
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
  // After the last backward: waits for every bucket, writes averaged gradients back, checks that
  // every parameter received a gradient (names those that did not).
  void finalize();

  int num_buckets() const { return static_cast<int>(buckets_.size()); }
  // Parameter names per bucket, in bucket order (for tests and logs).
  std::vector<std::vector<std::string>> bucket_layout() const;
  const std::vector<BucketLaunch>& launch_log() const { return launch_log_; }

 private:
  struct Bucket {
    std::vector<int> params;    // indices into params_
    std::vector<int64_t> offsets;
    Tensor buffer;              // flat, contiguous, the params' dtype
    Tensor wire;                // compressed copy (bf16/fp16) when compression is on
    int pending = 0;
    std::unique_ptr<Work> work;
    bool launched = false;
  };

  void plan(const std::vector<int>& order);
  void on_grad_ready(int param_index);
  void launch_ready_buckets();

  NamedTensors params_;
  Communicator& comm_;
  ReducerOptions options_;
  std::vector<Bucket> buckets_;
  std::vector<int> bucket_of_;       // param index -> bucket
  std::vector<bool> ready_;          // this step
  std::vector<int> arrival_order_;   // first step's hook order, for the re-plan
  int next_to_launch_ = 0;
  int params_pending_ = 0;
  bool sync_ = true;
  bool rebuilt_ = false;
  int64_t steps_ = 0;
  std::vector<BucketLaunch> launch_log_;
};

}  // namespace tandem
