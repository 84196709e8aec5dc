// Rank 0's progress display. On a terminal: one live line redrawn in place with '\r' (epoch, a
// bar, step/total, loss, lr, samples/s, ETA), at most every min_redraw_s. Elsewhere (a log file,
// a batch job): plain lines every print_every_steps steps and at the end of each epoch,
//   epoch 1 step 100/937 loss 0.4123 lr 0.001000 samples/s 5123 eta 0:01:23
// The caller decides which (isatty is its business, not the library's) and owns the stream.
// The format_* functions are pure, for tests. Not thread-safe: one thread drives a display.
#pragma once

#include <chrono>
#include <cstdint>
#include <ostream>
#include <string>

namespace tandem {

struct ProgressStats {
  int64_t epoch = 0;            // as shown (the trainer decides whether it counts from 0 or 1)
  int64_t step = 0;             // steps done in this epoch
  int64_t steps_per_epoch = 0;  // 0 when unknown
  double loss = 0;
  double lr = 0;
  double samples_per_s = 0;
  double eta_s = -1;  // seconds left in the run; negative or non-finite when unknown
};

// "1:02:03" (hours unbounded, minutes and seconds two digits); "?" when unknown.
std::string format_eta(double seconds);
// The plain line, without a newline.
std::string format_line(const ProgressStats& s);
// The terminal line: "epoch 1 [######......] 100/937 loss 0.4123 lr 0.001000 5123 samples/s
// eta 0:01:23" with a bar of bar_width cells.
std::string format_bar(const ProgressStats& s, int bar_width = 20);
// Seconds left when steps_done of steps_total took elapsed_s at a steady rate; -1 when unknown.
double estimate_eta(double elapsed_s, int64_t steps_done, int64_t steps_total);

struct ProgressOptions {
  bool live = false;                // a terminal: redraw one line
  double min_redraw_s = 0.1;        // live mode: at most 10 redraws a second
  int64_t print_every_steps = 100;  // plain mode
};

class ProgressDisplay {
 public:
  ProgressDisplay(std::ostream& out, ProgressOptions options);
  ~ProgressDisplay();  // ends a live line with a newline

  // Called after every step; decides itself whether to draw. The last step of an epoch is always
  // shown, and in live mode ends its line.
  void update(const ProgressStats& s);
  // A line of its own (an evaluation result, a checkpoint saved); the live line is redrawn below.
  void message(const std::string& text);
  // Ends the live line, if one is showing.
  void finish();

 private:
  void draw_live(const ProgressStats& s);

  std::ostream& out_;
  ProgressOptions options_;
  bool line_open_ = false;  // live mode: a bar is on screen without its newline
  ProgressStats last_;
  bool have_last_ = false;
  std::chrono::steady_clock::time_point last_draw_{};
};

}  // namespace tandem
