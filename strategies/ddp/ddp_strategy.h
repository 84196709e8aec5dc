// The ddp strategy: one process per device, the same model everywhere, gradients averaged by the
// bucketed Reducer during backward. Parameters and buffers start as rank 0's (broadcast in
// prepare); buffers (batch-norm statistics) are re-broadcast from rank 0 before each step, as
// PyTorch DDP does by default.
#pragma once

#include <memory>

#include "collectives/communicator.h"
#include "strategies/ddp/reducer.h"
#include "strategies/strategy.h"

namespace tandem {

class DdpStrategy : public Strategy {
 public:
  DdpStrategy(std::shared_ptr<Communicator> comm, ReducerOptions options);
  std::string name() const override { return "ddp"; }
  int rank() const override { return comm_->rank(); }
  int world_size() const override { return comm_->world_size(); }
  void prepare(Module& model, Optimizer& optimizer) override;
  double forward_backward(Module& model, const MicroBatch& micro) override;
  void synchronize(Module& model) override;
  std::vector<double> all_reduce_sum(const std::vector<double>& values) override;

  Reducer* reducer() { return reducer_.get(); }
  Communicator& communicator() { return *comm_; }

 private:
  Device device_;  // the model's device (prepare); small reductions travel there for NCCL
  void broadcast_tensors(const NamedTensors& tensors);

  std::shared_ptr<Communicator> comm_;
  ReducerOptions options_;
  std::unique_ptr<Reducer> reducer_;
};

}  // namespace tandem
