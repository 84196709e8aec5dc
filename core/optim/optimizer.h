// Optimizer: the base of SGD, Adam and AdamW. It owns the bookkeeping every algorithm shares
// (named parameters, per-parameter state, step counts, zero_grad, state export/import) and leaves
// one thing to a subclass: the element-wise update, run *fused* over all parameters -- one
// parallel_for over fixed-size chunks of every parameter, each element read and written once.
//
// State is created eagerly at construction (zero buffers of each parameter's shape and dtype, step
// 0), so the set of state keys is known before the first step and load_state_dict can check a
// checkpoint completely. Per-parameter step counts follow PyTorch: a parameter whose grad is
// undefined at step() is skipped and its count does not advance.
//
// Not thread-safe: one thread drives an optimizer (the trainer). Parameters are updated in place,
// so views of them (DDP buckets, modules) see the new values.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "core/backends/device_backend.h"
#include "core/tensor/named_tensors.h"
#include "core/tensor/tensor.h"

namespace tandem {

// One parameter as a fused update sees it: contiguous data pointers (param, grad and the
// algorithm's buffers, in buffer_names() order), all of `dtype`, `numel` elements each.
struct FusedParam {
  void* param = nullptr;
  const void* grad = nullptr;
  std::vector<void*> buffers;
  DType dtype = DType::kF32;
  int64_t numel = 0;
  int64_t step = 0;  // this parameter's step count, already advanced for the current step
  Device device;     // every FusedParam of one update is on the same device
};

// The FusedParams as the device backend's fused-update table (CUDA parameters).
std::vector<FusedTensor> fused_tensors(const std::vector<FusedParam>& params);

// Calls fn(param, begin, end) on chunks of at most chunk_elems elements covering every element of
// every FusedParam, in one parallel_for (inline when there is too little work for threads). Chunk
// boundaries do not depend on the thread count, so per-chunk partial results are reproducible.
void for_each_fused_chunk(const std::vector<FusedParam>& params,
                          const std::function<void(const FusedParam&, int64_t, int64_t)>& fn,
                          int64_t chunk_elems = 1 << 16);

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  virtual const char* name() const = 0;  // "sgd", "adam", "adamw"

  // One update of every parameter whose grad is defined (others are skipped, as in PyTorch).
  // Grads must match their parameter's shape and dtype; everything is checked before anything
  // changes.
  void step();
  // The sharded update of ddp (strategy.shard_optimizer): like step(), but only elements
  // [begin, end) of the listed parameters change, with their state. Every parameter whose grad is
  // defined still advances its step count, so counts -- and bias corrections -- stay those of an
  // unsharded step(). Parameters and grads must be contiguous.
  struct ElementRange {
    size_t param = 0;  // index into params()
    int64_t begin = 0, end = 0;
  };
  void step_ranges(const std::vector<ElementRange>& ranges);
  // Zeroes every defined grad in place, keeping its buffer (the DDP reducer makes grads views into
  // its buckets, so they must never be replaced). set_to_none drops the grads instead.
  void zero_grad(bool set_to_none = false);

  double lr() const { return lr_; }
  void set_lr(double lr);                             // ConfigError unless finite and >= 0
  int64_t step_count() const { return step_count_; }  // calls of step() so far

  const NamedTensors& params() const { return params_; }
  // Per-parameter state names, e.g. {"exp_avg", "exp_avg_sq"}; empty for plain SGD.
  const std::vector<std::string>& buffer_names() const { return buffer_names_; }
  // The live state buffer `buffer` (buffer_names() order) of parameter `param`: contiguous, the
  // parameter's shape and dtype (ddp's sharded update gathers it before a checkpoint).
  const Tensor& state_buffer(size_t param, size_t buffer) const {
    return state_[param].buffers[buffer];
  }

  // A copy of the state: "step" (i64 scalar, step_count()), and for every parameter when the
  // algorithm keeps state: "<param>.step" (i64 scalar, that parameter's count) and
  // "<param>.<buffer>" (the parameter's shape and dtype). Keys follow the parameter order.
  NamedTensors state_dict() const;
  // Replaces the state with `state` (as written by state_dict; float buffers are converted to the
  // parameter's dtype). Every missing, unexpected or mis-shaped key is named in one ValueError,
  // and nothing changes unless all of them fit.
  void load_state_dict(const NamedTensors& state);

 protected:
  // params: unique, non-empty names; defined f32/f64 tensors, each listed once.
  Optimizer(NamedTensors params, double lr, std::vector<std::string> buffer_names);

  // Updates the parameters in `active` (those with a grad), whose step counts are already
  // advanced. Called by step() only when `active` is not empty.
  virtual void update(const std::vector<FusedParam>& active) = 0;

 private:
  void step_impl(const std::vector<ElementRange>* ranges);
  // The parameters that have a gradient, checked against it; *device is theirs.
  std::vector<size_t> params_with_grads(Device* device) const;
  // The update restricted to `ranges` of the active parameters (in place: all contiguous).
  void update_ranges(const std::vector<size_t>& active, const std::vector<ElementRange>& ranges);
  // The update of whole active parameters, through contiguous copies where needed.
  void update_whole(const std::vector<size_t>& active, Device device);

  struct ParamState {
    int64_t step = 0;
    std::vector<Tensor> buffers;  // contiguous, parameter's shape and dtype
  };

  NamedTensors params_;
  std::vector<std::string> buffer_names_;
  std::vector<ParamState> state_;
  double lr_ = 0.0;
  int64_t step_count_ = 0;
};

}  // namespace tandem
