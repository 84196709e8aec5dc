#include "core/metrics/trace.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>

#include "core/base/error.h"
#include "core/io/file_io.h"

namespace tandem {
namespace {

const char* lane_name(int lane) {
  switch (lane) {
    case 0:
      return "compute";
    case 1:
      return "communication";
    case 2:
      return "data";
    case 3:
      return "io";
  }
  return "other";
}

// Microseconds with nanosecond resolution; keeps the files short and the values exact enough.
double round_us(double us) {
  return std::round(us * 1000.0) / 1000.0;
}

void make_dirs(const std::string& dir) {
  std::string partial;
  size_t pos = 0;
  while (pos != std::string::npos) {
    pos = dir.find('/', pos + 1);
    partial = dir.substr(0, pos);
    if (partial.empty()) continue;
    if (::mkdir(partial.c_str(), 0755) != 0 && errno != EEXIST)
      throw IoError(
          str(partial, ": cannot create the trace directory (", std::strerror(errno), ")"));
  }
}

nlohmann::json metadata_event(const char* name, int pid, int tid, nlohmann::json args) {
  nlohmann::json e = {{"ph", "M"}, {"name", name}, {"pid", pid}, {"args", std::move(args)}};
  if (tid >= 0) e["tid"] = tid;
  return e;
}

}  // namespace

TraceArgs& TraceArgs::num(const char* key, double value) {
  if (size_ < kMax) args_[size_++] = Arg{key, value, {}, false};
  return *this;
}

TraceArgs& TraceArgs::text(const char* key, std::string_view value) {
  if (size_ < kMax) args_[size_++] = Arg{key, 0, value, true};
  return *this;
}

TraceRecorder::TraceRecorder(TraceOptions options)
    : options_(options),
      origin_(Clock::now()),
      origin_unix_us_(std::chrono::duration_cast<std::chrono::microseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count()) {}

void TraceRecorder::begin_step(int64_t step) {
  const bool open = options_.enabled && step >= options_.first_step &&
                    step < options_.first_step + options_.num_steps;
  in_window_.store(open, std::memory_order_relaxed);
}

double TraceRecorder::to_us(Clock::time_point t) const {
  return std::chrono::duration<double, std::micro>(t - origin_).count();
}

void TraceRecorder::complete(std::string_view name, std::string_view category, TraceLane lane,
                             double start_us, double dur_us, const TraceArgs& args) {
  if (!in_window()) return;
  Event e{std::string(name), std::string(category), lane, start_us, dur_us, {}, {}};
  for (int i = 0; i < args.size(); ++i) {
    if (args[i].is_text)
      e.text_args.emplace_back(args[i].key, std::string(args[i].text));
    else
      e.num_args.emplace_back(args[i].key, args[i].number);
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (static_cast<int64_t>(events_.size()) >= options_.max_events) {
    ++dropped_;
    return;
  }
  events_.push_back(std::move(e));
}

TraceRecorder::Span::Span(TraceRecorder& recorder, std::string_view name, std::string_view category,
                          TraceLane lane, const TraceArgs& args)
    : recorder_(recorder.in_window() ? &recorder : nullptr),
      name_(name),
      category_(category),
      lane_(lane),
      args_(args) {
  if (recorder_ != nullptr) start_us_ = recorder_->now_us();
}

TraceRecorder::Span::~Span() {
  if (recorder_ == nullptr) return;
  const double end_us = recorder_->now_us();
  // Recorded even if the window closed meanwhile: the span began inside it.
  Event e{std::string(name_), std::string(category_), lane_, start_us_, end_us - start_us_, {}, {}};
  for (int i = 0; i < args_.size(); ++i) {
    if (args_[i].is_text)
      e.text_args.emplace_back(args_[i].key, std::string(args_[i].text));
    else
      e.num_args.emplace_back(args_[i].key, args_[i].number);
  }
  std::lock_guard<std::mutex> lock(recorder_->mu_);
  if (static_cast<int64_t>(recorder_->events_.size()) >= recorder_->options_.max_events) {
    ++recorder_->dropped_;
    return;
  }
  recorder_->events_.push_back(std::move(e));
}

int64_t TraceRecorder::num_events() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int64_t>(events_.size());
}

int64_t TraceRecorder::dropped_events() const {
  std::lock_guard<std::mutex> lock(mu_);
  return dropped_;
}

std::string TraceRecorder::to_json() const {
  const int pid = options_.rank;
  nlohmann::json events = nlohmann::json::array();
  events.push_back(metadata_event("process_name", pid, -1, {{"name", str("rank ", pid)}}));
  events.push_back(metadata_event("process_sort_index", pid, -1, {{"sort_index", pid}}));
  std::lock_guard<std::mutex> lock(mu_);
  bool lane_used[4] = {false, false, false, false};
  for (const Event& e : events_) {
    const int lane = static_cast<int>(e.lane);
    if (lane >= 0 && lane < 4) lane_used[lane] = true;
  }
  for (int lane = 0; lane < 4; ++lane)
    if (lane_used[lane])
      events.push_back(metadata_event("thread_name", pid, lane, {{"name", lane_name(lane)}}));
  for (const Event& e : events_) {
    nlohmann::json j = {{"ph", "X"},
                        {"name", e.name},
                        {"cat", e.category},
                        {"pid", pid},
                        {"tid", static_cast<int>(e.lane)},
                        {"ts", round_us(e.ts_us)},
                        {"dur", round_us(std::max(0.0, e.dur_us))}};
    if (!e.num_args.empty() || !e.text_args.empty()) {
      nlohmann::json args = nlohmann::json::object();
      for (const auto& [k, v] : e.num_args) args[k] = v;
      for (const auto& [k, v] : e.text_args) args[k] = v;
      j["args"] = std::move(args);
    }
    events.push_back(std::move(j));
  }
  nlohmann::json doc = {{"traceEvents", std::move(events)},
                        {"displayTimeUnit", "ms"},
                        {"otherData",
                         {{"format", kTraceFormat},
                          {"rank", pid},
                          {"clock_origin_unix_us", origin_unix_us_},
                          {"first_step", options_.first_step},
                          {"num_steps", options_.num_steps},
                          {"dropped_events", dropped_}}}};
  return doc.dump();
}

std::string trace_file_name(int rank) {
  return str("rank-", rank, ".json");
}

std::string TraceRecorder::write(const std::string& dir) const {
  make_dirs(dir);
  const std::string path = dir + "/" + trace_file_name(options_.rank);
  write_file_atomic(path, to_json());
  return path;
}

void merge_traces(const std::vector<std::string>& rank_files, const std::string& out_path) {
  TANDEM_CHECK_T(IoError, !rank_files.empty(), out_path, ": no rank traces to merge");
  struct RankTrace {
    std::string path;
    nlohmann::json doc;
    int64_t origin_us;
  };
  std::map<int, RankTrace> by_rank;  // ordered by rank: one process row each, in rank order
  for (const std::string& path : rank_files) {
    nlohmann::json doc =
        nlohmann::json::parse(read_file(path), nullptr, /*allow_exceptions=*/false);
    TANDEM_CHECK_T(
        IoError,
        doc.is_object() && doc.contains("traceEvents") && doc["traceEvents"].is_array() &&
            doc.contains("otherData") && doc["otherData"].is_object() &&
            doc["otherData"].value("format", "") == kTraceFormat &&
            doc["otherData"].contains("rank") && doc["otherData"]["rank"].is_number_integer() &&
            doc["otherData"].contains("clock_origin_unix_us") &&
            doc["otherData"]["clock_origin_unix_us"].is_number(),
        path, ": not a tandem trace (expected JSON with traceEvents and otherData.format '",
        kTraceFormat, "', rank and clock_origin_unix_us)");
    const int rank = doc["otherData"]["rank"].get<int>();
    auto [it, inserted] = by_rank.try_emplace(rank);
    TANDEM_CHECK_T(IoError, inserted, path, ": rank ", rank, " is also the rank of ",
                   it->second.path, "; merge one file per rank");
    it->second = {path, std::move(doc), 0};
    it->second.origin_us = it->second.doc["otherData"]["clock_origin_unix_us"].get<int64_t>();
  }
  int64_t earliest = by_rank.begin()->second.origin_us;
  for (const auto& [rank, t] : by_rank) earliest = std::min(earliest, t.origin_us);
  nlohmann::json events = nlohmann::json::array();
  nlohmann::json ranks = nlohmann::json::array();
  for (auto& [rank, t] : by_rank) {
    ranks.push_back(rank);
    const double shift_us = static_cast<double>(t.origin_us - earliest);
    for (nlohmann::json& e : t.doc["traceEvents"]) {
      e["pid"] = rank;  // one row per rank, whatever the file said
      if (e.contains("ts") && e["ts"].is_number())
        e["ts"] = round_us(e["ts"].get<double>() + shift_us);
      events.push_back(std::move(e));
    }
  }
  nlohmann::json doc = {{"traceEvents", std::move(events)},
                        {"displayTimeUnit", "ms"},
                        {"otherData",
                         {{"format", kTraceFormat},
                          {"ranks", std::move(ranks)},
                          {"clock_origin_unix_us", earliest}}}};
  write_file_atomic(out_path, doc.dump());
}

}  // namespace tandem
