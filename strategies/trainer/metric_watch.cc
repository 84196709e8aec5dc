// MetricWatch: Keras' EarlyStopping arithmetic (keras/callbacks.py: monitor_op(current -
// min_delta, best), min_delta's sign flipped for a metric that decreases).
#include "strategies/trainer/metric_watch.h"

#include <cmath>

#include "core/base/error.h"

namespace tandem {

MetricWatch::MetricWatch(ValidationMetric metric, double min_delta, int patience)
    : metric_(metric), min_delta_(min_delta), patience_(patience) {
  TANDEM_CHECK_T(ConfigError, metric_ != ValidationMetric::kNone, "metric '", metric_,
                 "': expected val_loss or val_accuracy");
  TANDEM_CHECK_T(ConfigError, min_delta_ >= 0 && patience_ >= 0,
                 "min_delta and patience must be >= 0");
}

bool MetricWatch::improves(double value) const {
  if (std::isnan(value)) return false;
  if (!has_best_) return true;
  return metric_ == ValidationMetric::kValLoss ? value < best_ - min_delta_
                                               : value > best_ + min_delta_;
}

bool MetricWatch::update(double value, int64_t epoch) {
  if (improves(value)) {
    has_best_ = true;
    best_ = value;
    best_epoch_ = epoch;
    wait_ = 0;
    return true;
  }
  ++wait_;
  return false;
}

nlohmann::json MetricWatch::to_json() const {
  nlohmann::json j = {{"metric", to_string(metric_)}, {"wait", wait_}};
  if (has_best_) {
    j["best"] = best_;
    j["best_epoch"] = best_epoch_;
  }
  return j;
}

void MetricWatch::from_json(const nlohmann::json& j) {
  if (!j.is_object() || enum_from_name<ValidationMetric>(j.value("metric", "")) != metric_) return;
  auto wait = j.find("wait");
  if (wait == j.end() || !wait->is_number_integer() || wait->get<int64_t>() < 0) return;
  wait_ = static_cast<int>(wait->get<int64_t>());
  auto best = j.find("best");
  auto epoch = j.find("best_epoch");
  if (best != j.end() && best->is_number() && epoch != j.end() && epoch->is_number_integer()) {
    has_best_ = true;
    best_ = best->get<double>();
    best_epoch_ = epoch->get<int64_t>();
  }
}

}  // namespace tandem
