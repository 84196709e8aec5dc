// StepTrace: what a training step records into a TraceRecorder (core/metrics/trace.h) -- the
// trainer's phases, the strategies' forward and backward, the reducer's buckets -- in the
// vocabulary `tandem scaling` reads. The trainer owns it and hands it to the strategy
// (Strategy::set_trace) and to each micro-batch (MicroBatch::trace).
//
// The one decision: per-module backward times come from post-accumulate hooks on the parameters,
// which note when each parameter's gradient is final; at the end of backward, each module with
// parameters gets one event from the start of backward to its last gradient ("backward/layer1.0.
// conv1"), so a reader sees the order and times at which gradients -- and buckets -- become ready.
//
// Thread-safety: begin_step, the backward calls and the hooks run on the training thread (the
// hooks fire inside backward); bucket() may be called from any thread. Everything is a no-op
// outside the recorder's window.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "core/autograd/hook_handle.h"
#include "core/metrics/trace.h"
#include "core/nn/module.h"

namespace tandem {

class StepTrace {
 public:
  using Clock = std::chrono::steady_clock;

  // Hooks on `params` (with their dotted names) note when each gradient is final.
  StepTrace(TraceRecorder& recorder, const NamedTensors& params);
  StepTrace(const StepTrace&) = delete;
  StepTrace& operator=(const StepTrace&) = delete;

  TraceRecorder& recorder() { return recorder_; }
  bool on() const { return recorder_.in_window(); }

  // At the start of every step (opens or closes the window).
  void begin_step(int64_t step);
  // The step's start, microseconds on the recorder's clock (bucket ready times are relative to it).
  double step_start_us() const { return step_start_us_; }

  // Around loss.backward().
  void begin_backward();
  void end_backward();

  // One bucket's all-reduce: `ready` when its last gradient arrived (and it was launched),
  // `done` when it completed.
  void bucket(int index, int64_t bytes, const std::string& backend, Clock::time_point ready,
              Clock::time_point done);

 private:
  TraceRecorder& recorder_;
  std::vector<int> module_of_;             // parameter index -> module index
  std::vector<std::string> module_names_;  // "backward/<module>"
  std::vector<double> module_ready_us_;    // this backward's last gradient per module; -1: none
  std::vector<HookHandle> hooks_;
  double step_start_us_ = 0;
  double backward_start_us_ = -1;
};

}  // namespace tandem
