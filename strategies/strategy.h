// Strategy: how replicas share one optimisation step. The trainer (trainer/trainer.h) owns the
// loop -- data, schedule, clipping, evaluation, checkpoints -- and asks the strategy for exactly
// the parts that differ between single, mirrored, ddp and parameter_server:
//
//   prepare()            once, after the model and optimizer exist and any checkpoint is loaded
//                        (ddp: broadcast rank 0's parameters and buffers, plan gradient buckets)
//   forward_backward()   per micro-batch: loss of this process's share, gradients accumulated
//                        into the parameters' .grad (ddp: bucket all-reduces start during backward)
//   synchronize()        after the last micro-batch of a step: gradients become the average over
//                        all replicas (ddp: wait for the buckets; mirrored: sum replica grads)
//   apply_update()       the optimizer step (parameter_server: push gradients, pull parameters)
//   all_reduce_sum()     sums a few doubles over replicas (losses, correct counts)
//   mean_loss_and_stop() the step's loss as shown and checked for NaN/Inf (default: the average
//                        over replicas), and whether any replica was asked to stop
//   mean_loss()          the loss alone (default: the average
//                        over replicas; parameter_server async: the worker's own, no barrier)
//   before_checkpoint()  on every rank before the chief saves: bring the model and optimizer
//                        state up to date (ddp with a sharded optimizer: gather the optimizer
//                        state; parameter_server: the chief fetches it from the servers)
//   finish()             after the last step of a run, completed or stopped (after the stop's
//                        checkpoint): parameter_server tells the servers this worker is done
//
// A strategy instance belongs to one process and is driven from one thread.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "core/data/loader.h"
#include "core/nn/module.h"
#include "core/optim/optimizer.h"

namespace tandem {

class StepTrace;  // strategies/step_trace.h

struct MicroBatch {
  const Batch* batch = nullptr;  // this process's rows
  int64_t step = 0;              // the optimizer step this micro-batch belongs to
  int micro_index = 0;           // 0 .. micro_count-1 (training.accumulate_steps)
  int micro_count = 1;
  uint64_t seed = 0;           // keys dropout with (step, global sample position)
  double loss_scale = 1.0;     // fp16: the loss scaler's factor on the loss before backward
  StepTrace* trace = nullptr;  // logging.trace: where forward and backward are recorded
};

class Strategy {
 public:
  virtual ~Strategy() = default;
  virtual std::string name() const = 0;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  bool is_chief() const { return rank() == 0; }

  // The optimizer step this process starts at: 0, or the step of the checkpoint it resumed.
  // Called before prepare().
  virtual void set_start_step(int64_t step) {}
  virtual void prepare(Module& model, Optimizer& optimizer) = 0;
  // Returns this process's mean loss over its rows (before division by micro_count). The
  // gradient accumulated is that of loss * (rows / global rows) / micro_count, so that after
  // synchronize() the gradient is the one of the global mean loss.
  virtual double forward_backward(Module& model, const MicroBatch& micro) = 0;
  virtual void synchronize(Module& model) = 0;
  virtual void apply_update(Module& model, Optimizer& optimizer) { optimizer.step(); }
  virtual std::vector<double> all_reduce_sum(const std::vector<double>& values) = 0;
  virtual double mean_loss(double local_loss) {
    return all_reduce_sum({local_loss})[0] / world_size();
  }
  // mean_loss, and whether any rank asked to stop (SIGTERM reaching one rank must stop all at the
  // same step: the flag travels in the same all-reduce). Strategies without a per-step collective
  // (parameter_server async) return this rank's own flag.
  virtual std::pair<double, bool> mean_loss_and_stop(double local_loss, bool stop) {
    const std::vector<double> sums = all_reduce_sum({local_loss, stop ? 1.0 : 0.0});
    return {sums[0] / world_size(), sums[1] > 0};
  }
  virtual void before_checkpoint(Module& model, Optimizer& optimizer) {}
  virtual void finish() {}
  // A line for the chief to print after the final line ("" for none), e.g. communication times.
  virtual std::string report() const { return ""; }
  // logging.trace: where the strategy records its communication (ddp: each bucket's all-reduce,
  // the sharded update's all-gather). Null: nothing. Called before prepare().
  virtual void set_trace(StepTrace* trace) {}
};

}  // namespace tandem
