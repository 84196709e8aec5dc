// Predicts one data-parallel training step on a cluster from a single-process compute profile: an
// event simulation of gradient buckets all-reduced one after another while backward runs, as
// tandem's DDP reducer does (strategies/ddp/reducer.h).
//
// The decision: the simulation keeps exactly the reducer's rules and nothing finer -- a bucket's
// all-reduce starts when its last gradient is ready AND the previous bucket's all-reduce is done
// (one collective at a time, launched in bucket order); the step ends when backward and the last
// all-reduce are both done, plus the optimizer. Everything else is a stated assumption:
//   - compute on G ranks is the single process's, stretched by the slowest rank: every rank's
//     forward, backward and optimizer take (1 + cv * z_G) times the profile's, with cv the
//     step-to-step coefficient of variation of compute and z_G the expected maximum of G standard
//     normal draws (z_1 = 0, z_2 = 0.564, z_8 = 1.42, z_256 = 2.79);
//   - communication does not slow compute down, and compute does not slow communication down;
//   - a collective's time is the alpha-beta cost of collective_cost.h for its bytes;
//   - weak scaling: every rank processes the profile's batch.
// Optionally (cycle_ms > 0) the fusion is Horovod's instead of static buckets: every cycle_ms
// (counted from the start of backward, or from the end of the previous all-reduce when that is
// later), the gradients ready by then are fused, in the order they became ready, into buffers of up
// to bucket_bytes, all-reduced one after another.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor/dtype.h"
#include "launcher/scaling/collective_cost.h"

namespace tandem::scaling {

// One parameter's gradient, in the model's parameter order.
struct GradientTensor {
  std::string name;
  int64_t bytes = 0;
  DType dtype = DType::kF32;
};

// Where one process's step time goes (medians over traced steps, or an estimate), in ms.
struct ComputeProfile {
  double data_ms = 0;  // waiting for the batch (exposed)
  double forward_ms = 0;
  double backward_ms = 0;
  double optimizer_ms = 0;
  // Per gradient tensor (parameter order): when it is ready, ms after backward begins.
  std::vector<double> ready_ms;
  double compute_cv = 0;  // std / mean of forward + backward + optimizer over steps
  int64_t batch_per_gpu = 1;

  double compute_ms() const { return forward_ms + backward_ms + optimizer_ms; }
  double step_ms() const { return data_ms + compute_ms(); }
};

struct FusionPolicy {
  int64_t first_bucket_bytes = 1 << 20;  // PyTorch DDP and tandem: 1 MiB
  int64_t bucket_bytes = 25 << 20;       // 25 MiB
  double cycle_ms = 0;                   // > 0: Horovod's cycle (its default: 5 ms, 64 MiB)
  bool overlap = true;                   // false: every all-reduce waits for the end of backward
  double wire_bytes_per_byte = 1;        // 0.5: gradients sent as bf16/fp16
};

struct StepPrediction {
  int nodes = 1;
  int gpus = 1;
  double step_ms = 0;
  double compute_ms = 0;       // data + forward + backward + optimizer on the slowest rank
  double straggler_ms = 0;     // of which: the slowest rank's extra compute
  double exposed_comm_ms = 0;  // step time not covered by compute: communication in the open
  double comm_ms = 0;          // total all-reduce time, hidden or not
  int collectives = 0;         // all-reduces per step
  double samples_per_s = 0;
  double efficiency = 0;  // the single process's step time / this step time
};

// E[max of n independent standard normal draws]; 0 for n <= 1.
double expected_max_normal(int n);

// Gradients ready uniformly over backward, layer by layer in reverse parameter order: with L
// layers (parameter names grouped by their module, the name without its last component), layer k
// from the end is ready at backward_ms * k / L.
std::vector<double> uniform_layer_ready_ms(const std::vector<GradientTensor>& grads,
                                           double backward_ms);

// The buckets tandem's reducer forms (strategies/ddp/bucket_plan.h) when gradients arrive in the
// order of `ready_ms` (ties: reverse parameter order), as indices into grads.
std::vector<std::vector<int>> plan_reducer_buckets(const std::vector<GradientTensor>& grads,
                                                   const std::vector<double>& ready_ms,
                                                   const FusionPolicy& policy);

StepPrediction predict_step(const ComputeProfile& profile, const std::vector<GradientTensor>& grads,
                            const ClusterSpec& cluster, Algorithm algorithm,
                            const FusionPolicy& policy);

}  // namespace tandem::scaling
