// Learning-rate schedules as pure functions of the optimizer step: lr_at(s) is the learning rate
// for update s (0-based), the same value PyTorch's optimizer holds after s calls of
// scheduler.step(). Being pure, a schedule needs no state in checkpoints and resumes anywhere.
//
//   constant:  base_lr
//   step:      base_lr * gamma^floor(s / step_size)                              (StepLR)
//   cosine:    min_lr + (base_lr - min_lr) * (1 + cos(pi * s / T)) / 2, T = total_steps,
//              min_lr from s = T on                               (CosineAnnealingLR, closed form)
//
// Linear warm-up (warmup_steps = W > 0) runs first, as torch's SequentialLR of
// LinearLR(start_factor = f, total_iters = W) and the main schedule with milestone W:
//   s < W:   base_lr * (f + (1 - f) * s / W)
//   s >= W:  the main schedule at s - W; for cosine, T = total_steps - W, so the learning rate
//            still reaches min_lr at total_steps (the length of the whole run).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tandem {

struct ScheduleOptions {
  double base_lr = 0.1;
  int64_t step_size = 30;   // step: decay every step_size steps
  double gamma = 0.1;       // step: decay factor
  int64_t total_steps = 0;  // cosine: steps of the whole run, warm-up included (> warmup_steps)
  double min_lr = 0.0;      // cosine: final learning rate (torch's eta_min)
  int64_t warmup_steps = 0;
  double warmup_start_factor = 1.0 / 3.0;  // torch LinearLR's default; 0 starts from lr 0
};

class Schedule {
 public:
  enum class Kind { kConstant, kStep, kCosine };
  // ConfigError for out-of-range options (negative lr or steps, gamma <= 0, min_lr outside
  // [0, base_lr], cosine without total_steps > warmup_steps, start factor outside [0, 1]).
  Schedule(Kind kind, const ScheduleOptions& options);

  double lr_at(int64_t step) const;  // ValueError for step < 0
  Kind kind() const { return kind_; }
  const char* name() const;  // "constant", "step", "cosine"
  const ScheduleOptions& options() const { return options_; }

 private:
  Kind kind_;
  ScheduleOptions options_;
};

// The schedule called `name` (one of schedule_names()); ConfigError listing them otherwise.
Schedule make_schedule(const std::string& name, const ScheduleOptions& options);
std::vector<std::string> schedule_names();

}  // namespace tandem
