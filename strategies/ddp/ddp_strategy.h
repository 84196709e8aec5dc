// The ddp strategy: one process per device, the same model everywhere, gradients averaged by the
// bucketed Reducer during backward. Parameters and buffers start as rank 0's (broadcast in
// prepare); buffers (batch-norm statistics) are re-broadcast from rank 0 before each step, as
// PyTorch DDP does by default.
//
// With shard_optimizer (ZeRO stage 1's idea, on top of the all-reduce): the elements of all
// parameters, in the optimizer's order, are split into world-size equal blocks; each rank updates
// only its block (Optimizer::step_ranges) -- the optimizer's memory traffic, a fixed cost per step
// that does not shrink with the per-rank batch, is divided by the world size -- then the blocks are
// all-gathered into every rank's parameters (which live in one flat buffer for that: an in-place
// all_gather, zero-copy through shared memory on one host). Gradients are still all-reduced in
// full, so clipping and the non-finite check see what they see without sharding, and results are
// bit-identical to the full update. Each rank's optimizer state is current only in its block:
// before_checkpoint gathers it, so checkpoints hold full tensors and resume at any world size.
#pragma once

#include <memory>

#include "collectives/communicator.h"
#include "strategies/ddp/reducer.h"
#include "strategies/strategy.h"

namespace tandem {

class DdpStrategy : public Strategy {
 public:
  DdpStrategy(std::shared_ptr<Communicator> comm, ReducerOptions options,
              bool shard_optimizer = false);
  std::string name() const override { return "ddp"; }
  int rank() const override { return comm_->rank(); }
  int world_size() const override { return comm_->world_size(); }
  void prepare(Module& model, Optimizer& optimizer) override;
  double forward_backward(Module& model, const MicroBatch& micro) override;
  void synchronize(Module& model) override;
  std::vector<double> all_reduce_sum(const std::vector<double>& values) override;
  void apply_update(Module& model, Optimizer& optimizer) override;
  void set_trace(StepTrace* trace) override { trace_ = trace; }
  void before_checkpoint(Module& model, Optimizer& optimizer) override;

  Reducer* reducer() { return reducer_.get(); }
  Communicator& communicator() { return *comm_; }

 private:
  Device device_;  // the model's device (prepare); small reductions travel there for NCCL
  void broadcast_tensors(const NamedTensors& tensors);
  void plan_shards(const Optimizer& optimizer);
  // Every rank's block of `tensors` (the optimizer's parameter order) into every rank's tensors.
  void gather_blocks(const std::vector<Tensor>& tensors);

  std::shared_ptr<Communicator> comm_;
  ReducerOptions options_;
  std::unique_ptr<Reducer> reducer_;
  StepTrace* trace_ = nullptr;
  bool shard_optimizer_ = false;
  int64_t block_ = 0;                               // elements per rank's block
  std::vector<int64_t> offsets_;                    // flat offset of each parameter
  std::vector<Optimizer::ElementRange> my_ranges_;  // this rank's block, per parameter
  Tensor send_, receive_;  // [block_], [world x block_]: staging for the optimizer state
  Tensor flat_params_;     // [world x block_]: every parameter is a view into it
};

}  // namespace tandem
