// Reads a measured trace (core/metrics/trace.h) into the compute profile `tandem scaling`
// simulates: medians over the traced steps of data, forward, backward and optimizer time, when each
// gradient became ready during backward, and how much compute varied from step to step.
//
// The decision: gradient-ready times come from the finest record the trace has, in this order --
// 1. "backward/<module>" events: a parameter is ready when its module's event ends (any bucket
//    plan can then be simulated, not only the traced one);
// 2. "allreduce" events' ready_us: each bucket of the traced plan is ready then, its tensors spread
//    linearly by bytes back to the previous bucket's time (the plan is recomputed from the traced
//    config and must match the trace's bucket count and bytes);
// 3. neither: ready uniformly over the traced backward, layer by layer (as without a trace).
// The rank read is the lowest in the file: a single-process trace, or rank 0 of a merged one.
#pragma once

#include <string>
#include <vector>

#include "launcher/scaling/step_model.h"

namespace tandem::scaling {

struct TraceProfile {
  ComputeProfile profile;  // ready_ms holds one entry per gradient; batch_per_gpu is left at 1
  std::string path;        // the file read
  int steps = 0;           // traced steps the medians are over
  double step_ms = 0;      // median "step" duration as traced, communication included
  std::string readiness;   // which of the three sources above gave the ready times
};

// `path` is a trace file or a directory holding rank-R.json files (the lowest R is read).
// `grads` is the model's parameter list, `traced` the bucket settings the trace was recorded with.
// Problems with the file (missing, not JSON, not a tandem trace, no complete step, buckets that do
// not match) are ConfigError naming it and what was expected.
TraceProfile read_trace_profile(const std::string& path, const std::vector<GradientTensor>& grads,
                                const FusionPolicy& traced);

}  // namespace tandem::scaling
