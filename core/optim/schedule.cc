// Closed forms of the learning-rate schedules (see schedule.h for the formulas and their torch
// equivalents).
#include "core/optim/schedule.h"

#include <cmath>

#include "core/base/error.h"

namespace tandem {

Schedule::Schedule(Kind kind, const ScheduleOptions& o) : kind_(kind), options_(o) {
  const char* n = name();
  TANDEM_CHECK_T(ConfigError, std::isfinite(o.base_lr) && o.base_lr >= 0.0, "schedule ", n,
                 ": base_lr must be finite and >= 0, got ", o.base_lr);
  TANDEM_CHECK_T(ConfigError, o.warmup_steps >= 0, "schedule ", n,
                 ": warmup_steps must be >= 0, got ", o.warmup_steps);
  TANDEM_CHECK_T(ConfigError, o.warmup_start_factor >= 0.0 && o.warmup_start_factor <= 1.0,
                 "schedule ", n, ": warmup_start_factor must be in [0, 1], got ",
                 o.warmup_start_factor);
  if (kind == Kind::kStep) {
    TANDEM_CHECK_T(ConfigError, o.step_size > 0, "schedule step: step_size must be > 0, got ",
                   o.step_size);
    TANDEM_CHECK_T(ConfigError, std::isfinite(o.gamma) && o.gamma > 0.0,
                   "schedule step: gamma must be finite and > 0, got ", o.gamma);
  }
  if (kind == Kind::kCosine) {
    TANDEM_CHECK_T(ConfigError, o.total_steps > o.warmup_steps,
                   "schedule cosine: total_steps must be greater than warmup_steps (",
                   o.warmup_steps, "), got ", o.total_steps);
    TANDEM_CHECK_T(ConfigError, o.min_lr >= 0.0 && o.min_lr <= o.base_lr,
                   "schedule cosine: min_lr must be in [0, base_lr = ", o.base_lr, "], got ",
                   o.min_lr);
  }
}

const char* Schedule::name() const {
  switch (kind_) {
    case Kind::kConstant:
      return "constant";
    case Kind::kStep:
      return "step";
    case Kind::kCosine:
      return "cosine";
  }
  return "?";
}

double Schedule::lr_at(int64_t step) const {
  TANDEM_CHECK(step >= 0, "schedule ", name(), ": step must be >= 0, got ", step);
  const ScheduleOptions& o = options_;
  const int64_t w = o.warmup_steps;
  if (step < w) {
    const double f = o.warmup_start_factor;
    return o.base_lr * (f + (1.0 - f) * static_cast<double>(step) / static_cast<double>(w));
  }
  const int64_t s = step - w;
  switch (kind_) {
    case Kind::kConstant:
      return o.base_lr;
    case Kind::kStep:
      return o.base_lr * std::pow(o.gamma, static_cast<double>(s / o.step_size));
    case Kind::kCosine: {
      const int64_t t = o.total_steps - w;
      if (s >= t) return o.min_lr;
      const double pi = std::acos(-1.0);
      return o.min_lr + (o.base_lr - o.min_lr) *
                            (1.0 + std::cos(pi * static_cast<double>(s) / static_cast<double>(t))) /
                            2.0;
    }
  }
  return o.base_lr;
}

std::vector<std::string> schedule_names() {
  return {"constant", "step", "cosine"};
}

Schedule make_schedule(const std::string& name, const ScheduleOptions& options) {
  if (name == "constant") return Schedule(Schedule::Kind::kConstant, options);
  if (name == "step") return Schedule(Schedule::Kind::kStep, options);
  if (name == "cosine") return Schedule(Schedule::Kind::kCosine, options);
  std::string valid;
  for (const std::string& n : schedule_names()) valid += (valid.empty() ? "" : ", ") + n;
  throw ConfigError(str("unknown schedule '", name, "' (valid: ", valid, ")"));
}

}  // namespace tandem
