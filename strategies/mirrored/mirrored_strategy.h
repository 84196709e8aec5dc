// The mirrored strategy (tf.distribute.MirroredStrategy) on the CPU: one process, N replicas of
// the model, one per worker thread. Each step splits the process's batch into N equal slices; the
// replicas run forward and backward at the same time on the threads of tandem's one OpenMP team
// (inside the parallel region every kernel and GEMM runs single-threaded, so N replicas use N
// cores and never oversubscribe); their gradients are averaged in replica order (deterministic)
// into replica 0, the optimizer updates replica 0, and the new parameters are copied to the other
// replicas -- identical updates everywhere.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "strategies/strategy.h"

namespace tandem {

class MirroredStrategy : public Strategy {
 public:
  // make_replica builds a model of the same architecture (its weights are overwritten).
  MirroredStrategy(int replicas, std::function<std::shared_ptr<Module>()> make_replica);
  std::string name() const override { return "mirrored"; }
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  int replicas() const { return replicas_; }

  void prepare(Module& model, Optimizer& optimizer) override;
  double forward_backward(Module& model, const MicroBatch& micro) override;
  void synchronize(Module& model) override;
  void apply_update(Module& model, Optimizer& optimizer) override;
  std::vector<double> all_reduce_sum(const std::vector<double>& values) override { return values; }

 private:
  void copy_state_to_replicas(Module& model, bool buffers_too);

  int replicas_;
  std::function<std::shared_ptr<Module>()> make_replica_;
  std::vector<std::shared_ptr<Module>> others_;  // replicas 1..N-1; replica 0 is the trainer's
};

}  // namespace tandem
