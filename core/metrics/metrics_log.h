// metrics.jsonl: one JSON object per line, {"step": 100, "epoch": 1, "time": 1732371234.5,
// "train/loss": 0.41, "train/lr": 0.001, ...}, for plotting and for tests that compare runs. Each
// line goes to the OS in one write() before log() returns, so a crash never leaves a line
// half-written by a completed call, and a reader tailing the file sees whole lines. Non-finite
// values are written as null (JSON has no NaN).
//
// The file is opened for appending, so a resumed run continues it. One writer per file, driven by
// one thread: not thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace tandem {

using MetricValues = std::vector<std::pair<std::string, double>>;

class MetricsLog {
 public:
  // Creates the parent directory if needed. A last line cut short by an earlier crash is ended
  // with a newline first, so it cannot swallow the next record.
  explicit MetricsLog(const std::string& path);
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;

  // time: unix seconds, now when not given. Tags must not be "step", "epoch" or "time".
  void log(int64_t step, int64_t epoch, const MetricValues& values);
  void log(int64_t step, int64_t epoch, double time, const MetricValues& values);

  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
};

// The line log() writes, without its newline.
std::string format_metrics_line(int64_t step, int64_t epoch, double time,
                                const MetricValues& values);

}  // namespace tandem
