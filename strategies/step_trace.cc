#include "strategies/step_trace.h"

#include <algorithm>

namespace tandem {

StepTrace::StepTrace(TraceRecorder& recorder, const NamedTensors& params) : recorder_(recorder) {
  for (size_t i = 0; i < params.size(); ++i) {
    const std::string& name = params[i].first;
    const size_t dot = name.rfind('.');
    const std::string module =
        "backward/" + (dot == std::string::npos ? name : name.substr(0, dot));
    auto it = std::find(module_names_.begin(), module_names_.end(), module);
    module_of_.push_back(static_cast<int>(it - module_names_.begin()));
    if (it == module_names_.end()) module_names_.push_back(module);
    hooks_.push_back(params[i].second.register_post_accumulate_grad_hook([this, i](const Tensor&) {
      if (backward_start_us_ < 0 || !on()) return;
      double& ready = module_ready_us_[module_of_[i]];
      ready = std::max(ready, recorder_.now_us());
    }));
  }
  module_ready_us_.assign(module_names_.size(), -1);
}

void StepTrace::begin_step(int64_t step) {
  recorder_.begin_step(step);
  step_start_us_ = recorder_.now_us();
}

void StepTrace::begin_backward() {
  if (!on()) return;
  std::fill(module_ready_us_.begin(), module_ready_us_.end(), -1.0);
  backward_start_us_ = recorder_.now_us();
}

void StepTrace::end_backward() {
  if (backward_start_us_ < 0) return;
  const double end = recorder_.now_us();
  recorder_.complete("backward", "compute", TraceLane::kCompute, backward_start_us_,
                     end - backward_start_us_);
  for (size_t m = 0; m < module_names_.size(); ++m)
    if (module_ready_us_[m] >= 0)
      recorder_.complete(module_names_[m], "compute", TraceLane::kCompute, backward_start_us_,
                         module_ready_us_[m] - backward_start_us_);
  backward_start_us_ = -1;
}

void StepTrace::bucket(int index, int64_t bytes, const std::string& backend,
                       Clock::time_point ready, Clock::time_point done) {
  if (!on()) return;
  const double start = recorder_.to_us(ready), end = recorder_.to_us(done);
  recorder_.complete("allreduce", "comm", TraceLane::kCommunication, start,
                     std::max(0.0, end - start),
                     TraceArgs()
                         .num("bucket", index)
                         .num("bytes", static_cast<double>(bytes))
                         .text("backend", backend)
                         .num("ready_us", start - step_start_us_));
}

}  // namespace tandem
