// Step traces: Chrome trace-event JSON (loads in Perfetto, ui.perfetto.dev, and chrome://tracing)
// of where a training step's time goes, one file per rank, for a window of steps.
//
// The decision: record complete events ("ph": "X") into memory while the window is open and write
// the file once, at the end -- nothing touches the disk during the traced steps, and outside the
// window every call is one relaxed atomic load and a branch (no allocation, no lock).
//
// File format. `trace/rank-R.json` is a JSON object
//   {"traceEvents": [...], "displayTimeUnit": "ms",
//    "otherData": {"format": "tandem-trace-1", "rank": R, "clock_origin_unix_us": T0,
//                  "first_step": S, "num_steps": K, "dropped_events": D}}
// Every event has pid = rank, tid = a lane (below), ts and dur in microseconds since the recorder
// started (T0 on the Unix clock; merge_traces() aligns ranks with it), and optional args. Metadata
// events ("ph": "M") name the process ("rank R") and each lane used.
//
// Lanes (tid): 0 compute (the training thread), 1 communication (collectives, their thread or
// their stream), 2 data (loader threads), 3 io (checkpoints).
//
// Vocabulary -- what `tandem scaling` (launcher/scaling/trace_profile.h) reads. Names are exact;
// times nest: an event recorded during a step lies inside that step's "step" event ("checkpoint"
// and "eval" may lie between steps).
//   name                cat        lane  args
//   "step"              "step"     0     step: the global step number
//   "data"              "data"     0     time the step waited for its batch
//   "forward"           "compute"  0
//   "backward"          "compute"  0
//   "backward/<module>" "compute"  0     one per module with parameters, e.g.
//                                        "backward/layer1.0.conv1": ends when that module's
//                                        parameter gradients are ready (inside "backward")
//   "allreduce"         "comm"     1     bucket: index in launch order; bytes: its gradients'
//                                        bytes (before any compression); backend (string);
//                                        ready_us: when the bucket's last gradient arrived,
//                                        microseconds after the step's start
//   "optimizer"         "compute"  0
//   "allgather"         "comm"     1     bytes, backend: the sharded update's gather
//   "checkpoint"        "io"       3     step
//   "eval"              "compute"  0     epoch
// A module name is a parameter's name without its last component ("layer1.0.conv1.weight" ->
// "layer1.0.conv1"). Readers ignore names they do not know.
//
// Thread-safety: every member function may be called from any thread (the communication thread
// records too); begin_step() is meant for the training thread. A Span is used by one thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tandem {

enum class TraceLane : int { kCompute = 0, kCommunication = 1, kData = 2, kIo = 3 };

inline constexpr const char* kTraceFormat = "tandem-trace-1";

// Up to four arguments of one event, built without allocating: keys are string literals, text
// values are views that must stay valid until the call that takes the TraceArgs returns.
class TraceArgs {
 public:
  static constexpr int kMax = 4;
  TraceArgs& num(const char* key, double value);
  TraceArgs& text(const char* key, std::string_view value);

  struct Arg {
    const char* key = nullptr;
    double number = 0;
    std::string_view text;
    bool is_text = false;
  };
  int size() const { return size_; }
  const Arg& operator[](int i) const { return args_[i]; }

 private:
  Arg args_[kMax];
  int size_ = 0;
};

struct TraceOptions {
  bool enabled = false;
  int rank = 0;
  int64_t first_step = 0;  // the window: steps first_step .. first_step + num_steps - 1
  int64_t num_steps = 0;
  int64_t max_events = 1 << 20;  // beyond this, events are counted as dropped (bounded memory)
};

class TraceRecorder {
 public:
  using Clock = std::chrono::steady_clock;

  explicit TraceRecorder(TraceOptions options);
  TraceRecorder(const TraceRecorder&) = delete;
  TraceRecorder& operator=(const TraceRecorder&) = delete;

  // Opens the window when `step` lies in it, closes it otherwise. Call at the start of each step.
  void begin_step(int64_t step);
  // Whether events are being recorded now: false whenever the recorder is disabled.
  bool in_window() const { return in_window_.load(std::memory_order_relaxed); }

  // Microseconds since the recorder started (the file's time base).
  double now_us() const { return to_us(Clock::now()); }
  double to_us(Clock::time_point t) const;

  // A complete event from start_us lasting dur_us. Dropped (cheaply) outside the window.
  void complete(std::string_view name, std::string_view category, TraceLane lane, double start_us,
                double dur_us, const TraceArgs& args = TraceArgs());

  // Records [construction, destruction) as a complete event, if the window was open at
  // construction. name, category and text args are views: they must outlive the Span (string
  // literals do). Names known only at run time: check in_window() before building them.
  class Span {
   public:
    Span(TraceRecorder& recorder, std::string_view name, std::string_view category, TraceLane lane,
         const TraceArgs& args = TraceArgs());
    ~Span();
    Span(const Span&) = delete;
    Span& operator=(const Span&) = delete;

   private:
    TraceRecorder* recorder_;  // null: not recording
    std::string_view name_, category_;
    TraceLane lane_;
    TraceArgs args_;
    double start_us_ = 0;
  };

  // The trace as JSON text (the file's contents).
  std::string to_json() const;
  // Writes <dir>/rank-R.json atomically (temporary file, fsync, rename); creates dir. Returns the
  // path. Throws IoError.
  std::string write(const std::string& dir) const;

  int64_t num_events() const;
  int64_t dropped_events() const;

 private:
  struct Event {
    std::string name, category;
    TraceLane lane;
    double ts_us, dur_us;
    std::vector<std::pair<std::string, double>> num_args;
    std::vector<std::pair<std::string, std::string>> text_args;
  };

  const TraceOptions options_;
  const Clock::time_point origin_;
  const int64_t origin_unix_us_;
  std::atomic<bool> in_window_{false};
  mutable std::mutex mu_;
  std::vector<Event> events_;  // guarded by mu_
  int64_t dropped_ = 0;        // guarded by mu_
};

// "trace/rank-R.json"'s file name for a rank.
std::string trace_file_name(int rank);

// Merges per-rank trace files into one (e.g. <dir>/all.json): one process row per rank, ordered by
// rank, timestamps shifted onto the earliest rank's clock origin. Two files claiming the same rank
// are an error naming both. Writes atomically; throws IoError naming the file that is unreadable or
// not a tandem trace.
void merge_traces(const std::vector<std::string>& rank_files, const std::string& out_path);

}  // namespace tandem
