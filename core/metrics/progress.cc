// Progress display: pure formatting plus a little state for throttling the live line.
#include "core/metrics/progress.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace tandem {
namespace {

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

std::string step_text(const ProgressStats& s) {
  return s.steps_per_epoch > 0 ? std::to_string(s.step) + "/" + std::to_string(s.steps_per_epoch)
                               : std::to_string(s.step);
}

bool epoch_done(const ProgressStats& s) {
  return s.steps_per_epoch > 0 && s.step >= s.steps_per_epoch;
}

}  // namespace

std::string format_eta(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto total = static_cast<long long>(std::llround(seconds));
  char buf[48];
  std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", total / 3600, total / 60 % 60, total % 60);
  return buf;
}

std::string format_line(const ProgressStats& s) {
  return "epoch " + std::to_string(s.epoch) + " step " + step_text(s) + " loss " +
         fmt("%.4f", s.loss) + " lr " + fmt("%.6f", s.lr) + " samples/s " +
         fmt("%.0f", s.samples_per_s) + " eta " + format_eta(s.eta_s);
}

std::string format_bar(const ProgressStats& s, int bar_width) {
  std::string bar;
  if (s.steps_per_epoch > 0 && bar_width > 0) {
    double frac =
        std::min(1.0, static_cast<double>(s.step) / static_cast<double>(s.steps_per_epoch));
    int filled = static_cast<int>(frac * bar_width);
    bar = "[" + std::string(filled, '#') + std::string(bar_width - filled, '.') + "] ";
  }
  return "epoch " + std::to_string(s.epoch) + " " + bar + step_text(s) + " loss " +
         fmt("%.4f", s.loss) + " lr " + fmt("%.6f", s.lr) + " " + fmt("%.0f", s.samples_per_s) +
         " samples/s eta " + format_eta(s.eta_s);
}

double estimate_eta(double elapsed_s, int64_t steps_done, int64_t steps_total) {
  if (steps_done <= 0 || steps_total <= 0 || !(elapsed_s >= 0)) return -1;
  if (steps_done >= steps_total) return 0;
  return elapsed_s / static_cast<double>(steps_done) *
         static_cast<double>(steps_total - steps_done);
}

ProgressDisplay::ProgressDisplay(std::ostream& out, ProgressOptions options)
    : out_(out), options_(options) {}

ProgressDisplay::~ProgressDisplay() {
  finish();
}

void ProgressDisplay::update(const ProgressStats& s) {
  last_ = s;
  have_last_ = true;
  if (options_.live) {
    const auto now = std::chrono::steady_clock::now();
    if (epoch_done(s) || !line_open_ ||
        std::chrono::duration<double>(now - last_draw_).count() >= options_.min_redraw_s) {
      draw_live(s);
      last_draw_ = now;
    }
    if (epoch_done(s)) finish();
    return;
  }
  if (epoch_done(s) ||
      (options_.print_every_steps > 0 && s.step > 0 && s.step % options_.print_every_steps == 0)) {
    out_ << format_line(s) << '\n';
    out_.flush();
  }
}

void ProgressDisplay::message(const std::string& text) {
  if (line_open_) {
    out_ << "\r\x1b[K" << text << '\n';
    draw_live(last_);
  } else {
    out_ << text << '\n';
  }
  out_.flush();
}

void ProgressDisplay::finish() {
  if (line_open_) {
    out_ << '\n';
    out_.flush();
    line_open_ = false;
  }
}

void ProgressDisplay::draw_live(const ProgressStats& s) {
  // '\r' back to the start, the new line, then erase whatever a longer old line left behind.
  out_ << '\r' << format_bar(s) << "\x1b[K";
  out_.flush();
  line_open_ = true;
}

}  // namespace tandem
