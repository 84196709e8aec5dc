// Early stopping and the best-checkpoint watch on hand-computed metric sequences (Keras'
// EarlyStopping: improvement means beyond min_delta; `patience` epochs without it stop).
#include "strategies/trainer/metric_watch.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/base/error.h"

namespace tandem {
namespace {

// The first epoch (1-based) after which the watch says stop; 0 when it never does.
int64_t stop_epoch(MetricWatch w, const std::vector<double>& values) {
  for (size_t i = 0; i < values.size(); ++i) {
    w.update(values[i], static_cast<int64_t>(i) + 1);
    if (w.should_stop()) return static_cast<int64_t>(i) + 1;
  }
  return 0;
}

TEST(MetricWatch, ValLossStopsAfterPatienceEpochsWithoutImprovementBeyondMinDelta) {
  // best 1.0 (epoch 1); 0.95 improves by 0.05 > 0.01 (epoch 2, best 0.95); 0.945 improves by
  // only 0.005: wait 1; 0.96: wait 2; 0.942: 0.008 < 0.01, wait 3 -> stop after epoch 5.
  EXPECT_EQ(stop_epoch(MetricWatch(ValidationMetric::kValLoss, 0.01, 3),
                       {1.0, 0.95, 0.945, 0.96, 0.942, 0.5}),
            5);
  // Without min_delta, 0.945 improves (epoch 3) and 0.942 too (epoch 5): never 3 in a row.
  EXPECT_EQ(stop_epoch(MetricWatch(ValidationMetric::kValLoss, 0.0, 3),
                       {1.0, 0.95, 0.945, 0.96, 0.942, 0.5}),
            0);
}

TEST(MetricWatch, ValAccuracyImprovesUpwardsAndPatienceZeroStopsAtTheFirstMiss) {
  EXPECT_EQ(stop_epoch(MetricWatch(ValidationMetric::kValAccuracy, 0.0, 0), {0.5, 0.6, 0.6, 0.9}),
            3);
  // patience 2: 0.6 (wait 1), 0.7 improves (wait 0), 0.7, 0.69 -> stop after epoch 5.
  EXPECT_EQ(stop_epoch(MetricWatch(ValidationMetric::kValAccuracy, 0.0, 2),
                       {0.5, 0.6, 0.6, 0.7, 0.7, 0.69}),
            6);
  MetricWatch w(ValidationMetric::kValAccuracy, 0.05, 1);
  EXPECT_TRUE(w.update(0.50, 1));
  EXPECT_FALSE(w.update(0.54, 2));  // +0.04 is not more than min_delta
  EXPECT_TRUE(w.should_stop());
  EXPECT_DOUBLE_EQ(w.best(), 0.50);
  EXPECT_EQ(w.best_epoch(), 1);
}

TEST(MetricWatch, NanNeverImprovesAndTheRecordSurvivesJson) {
  MetricWatch w(ValidationMetric::kValLoss, 0.0, 2);
  EXPECT_FALSE(w.update(NAN, 1));
  EXPECT_FALSE(w.should_stop());
  EXPECT_TRUE(w.update(0.8, 2));
  EXPECT_FALSE(w.update(0.9, 3));
  // The record spells the metric as the config does (trainer_state.json of older runs too).
  EXPECT_EQ(w.to_json()["metric"], "val_loss");
  MetricWatch restored(ValidationMetric::kValLoss, 0.0, 2);
  restored.from_json(w.to_json());
  EXPECT_DOUBLE_EQ(restored.best(), 0.8);
  EXPECT_EQ(restored.best_epoch(), 2);
  EXPECT_EQ(restored.wait(), 1);
  EXPECT_FALSE(restored.update(0.85, 4));
  EXPECT_TRUE(restored.should_stop());
  // A record of another metric is ignored: the watch starts afresh.
  MetricWatch other(ValidationMetric::kValAccuracy, 0.0, 2);
  other.from_json(w.to_json());
  EXPECT_FALSE(other.has_best());
  EXPECT_EQ(other.wait(), 0);
}

TEST(MetricWatch, WatchingNoMetricIsAConfigError) {
  try {
    MetricWatch w(ValidationMetric::kNone);
    FAIL() << "none is not a metric to watch";
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(), "metric 'none': expected val_loss or val_accuracy");
  }
}

}  // namespace
}  // namespace tandem
