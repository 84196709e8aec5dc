// Progress display: the formatting functions exactly, and what each mode writes to its stream.
#include "core/metrics/progress.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <sstream>

namespace tandem {
namespace {

ProgressStats stats(int64_t step, int64_t total = 937) {
  ProgressStats s;
  s.epoch = 1;
  s.step = step;
  s.steps_per_epoch = total;
  s.loss = 0.41234;
  s.lr = 0.001;
  s.samples_per_s = 5123.4;
  s.eta_s = 83;
  return s;
}

TEST(Progress, EtaIsHoursMinutesSeconds) {
  EXPECT_EQ(format_eta(3723), "1:02:03");
  EXPECT_EQ(format_eta(83), "0:01:23");
  EXPECT_EQ(format_eta(0), "0:00:00");
  EXPECT_EQ(format_eta(59.6), "0:01:00");  // rounded to the nearest second
  EXPECT_EQ(format_eta(100 * 3600 + 5), "100:00:05");
  EXPECT_EQ(format_eta(-1), "?");
  EXPECT_EQ(format_eta(std::nan("")), "?");
  EXPECT_EQ(format_eta(INFINITY), "?");
}

TEST(Progress, PlainLineHasEveryField) {
  EXPECT_EQ(format_line(stats(100)),
            "epoch 1 step 100/937 loss 0.4123 lr 0.001000 samples/s 5123 eta 0:01:23");
  ProgressStats unknown = stats(7, 0);
  unknown.eta_s = -1;
  EXPECT_EQ(format_line(unknown), "epoch 1 step 7 loss 0.4123 lr 0.001000 samples/s 5123 eta ?");
}

TEST(Progress, BarFillsWithTheEpoch) {
  EXPECT_EQ(format_bar(stats(50, 100), 10),
            "epoch 1 [#####.....] 50/100 loss 0.4123 lr 0.001000 5123 samples/s eta 0:01:23");
  EXPECT_EQ(format_bar(stats(0, 100), 4).substr(0, 15), "epoch 1 [....] ");
  EXPECT_EQ(format_bar(stats(100, 100), 4).substr(0, 15), "epoch 1 [####] ");
}

TEST(Progress, EtaEstimateAssumesASteadyRate) {
  EXPECT_DOUBLE_EQ(estimate_eta(10, 100, 1000), 90);
  EXPECT_EQ(estimate_eta(10, 0, 1000), -1);
  EXPECT_EQ(estimate_eta(10, 1000, 1000), 0);
}

TEST(Progress, PlainModePrintsEveryNStepsAndTheEpochsEnd) {
  std::ostringstream out;
  {
    ProgressDisplay d(out, ProgressOptions{.live = false, .print_every_steps = 100});
    for (int64_t step = 1; step <= 250; ++step) d.update(stats(step, 250));
    d.message("checkpoint saved");
  }
  EXPECT_EQ(out.str(),
            "epoch 1 step 100/250 loss 0.4123 lr 0.001000 samples/s 5123 eta 0:01:23\n"
            "epoch 1 step 200/250 loss 0.4123 lr 0.001000 samples/s 5123 eta 0:01:23\n"
            "epoch 1 step 250/250 loss 0.4123 lr 0.001000 samples/s 5123 eta 0:01:23\n"
            "checkpoint saved\n");
  EXPECT_EQ(out.str().find('\r'), std::string::npos);
}

TEST(Progress, LiveModeRedrawsOneLineAndEndsItWithTheEpoch) {
  std::ostringstream out;
  ProgressDisplay d(out, ProgressOptions{.live = true, .min_redraw_s = 0});
  d.update(stats(1, 4));
  d.update(stats(2, 4));
  EXPECT_EQ(out.str().find('\n'), std::string::npos);  // still one line
  d.message("eval accuracy 0.91");
  d.update(stats(3, 4));
  d.update(stats(4, 4));
  const std::string s = out.str();
  EXPECT_EQ(std::count(s.begin(), s.end(), '\n'), 2);  // the message's and the epoch's end
  EXPECT_NE(s.find("\r\x1b[Keval accuracy 0.91\n"), std::string::npos) << s;
  EXPECT_NE(s.find("\repoch 1 [##########..........] 2/4 "), std::string::npos) << s;
  EXPECT_EQ(s.substr(s.size() - 1), "\n");
  EXPECT_NE(s.rfind("[####################] 4/4"), std::string::npos);
  const size_t redraws = std::count(s.begin(), s.end(), '\r');
  EXPECT_EQ(redraws, 6u);  // 4 updates, the message, the bar redrawn after it
}

TEST(Progress, LiveModeThrottlesRedraws) {
  std::ostringstream out;
  ProgressDisplay d(out, ProgressOptions{.live = true, .min_redraw_s = 3600});
  for (int64_t step = 1; step <= 1000; ++step) d.update(stats(step, 1000));
  const std::string s = out.str();
  EXPECT_EQ(std::count(s.begin(), s.end(), '\r'), 2);  // the first step and the epoch's last
  EXPECT_NE(s.find("1000/1000"), std::string::npos);
}

}  // namespace
}  // namespace tandem
