// Watching a validation metric across epochs: Keras' EarlyStopping (stop when the metric has not
// improved by more than min_delta for `patience` epochs) and ModelCheckpoint(save_best_only) (keep
// the checkpoint of the best value so far) are the same record -- the best value, its epoch, and
// the epochs since it -- compared with a direction (val_loss: lower is better; val_accuracy:
// higher is better).
//
// The decision: the trainer feeds it values computed from all-reduced sums, so every rank holds
// the same record and takes the same decision without another collective; the record goes into
// trainer_state.json (to_json / from_json), so a resumed run keeps counting where it stopped.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "configs/schema/enums.h"

namespace tandem {

class MetricWatch {
 public:
  // metric: val_loss | val_accuracy (ConfigError for none); min_delta >= 0; patience >= 0.
  MetricWatch(ValidationMetric metric, double min_delta = 0, int patience = 0);

  // Keras' comparison: val_loss improves when value < best - min_delta, val_accuracy when
  // value > best + min_delta; the first value always improves; NaN never does.
  bool improves(double value) const;
  // Records epoch `epoch`'s value; returns whether it improved (and became the best).
  bool update(double value, int64_t epoch);
  // EarlyStopping's rule: the last epoch did not improve, and neither did the `patience` - 1
  // before it (patience 0: the first epoch without improvement stops).
  bool should_stop() const { return wait_ > 0 && wait_ >= patience_; }

  ValidationMetric metric() const { return metric_; }
  bool has_best() const { return has_best_; }
  double best() const { return best_; }
  int64_t best_epoch() const { return best_epoch_; }  // 1-based, as the trainer prints epochs
  int wait() const { return wait_; }                  // epochs since the best

  nlohmann::json to_json() const;
  // Restores a record written by to_json for the same metric; a record of another metric (the
  // config changed it) or a malformed one is ignored and the watch starts afresh.
  void from_json(const nlohmann::json& j);

 private:
  ValidationMetric metric_;
  double min_delta_;
  int patience_;
  bool has_best_ = false;
  double best_ = 0;
  int64_t best_epoch_ = 0;
  int wait_ = 0;
};

}  // namespace tandem
