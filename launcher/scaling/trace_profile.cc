#include "launcher/scaling/trace_profile.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "core/base/error.h"
#include "core/io/file_io.h"
#include "core/metrics/trace.h"

namespace tandem::scaling {
namespace {

using nlohmann::json;

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// A directory: its rank-R.json with the lowest R. A file: itself.
std::string trace_file(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(path, ec))
    throw ConfigError(str("--trace ", path,
                          ": no such file or directory (expected a trace "
                          "directory with rank-R.json files, or one such file)"));
  if (!fs::is_directory(path, ec)) return path;
  int best = -1;
  std::string found;
  for (const auto& entry : fs::directory_iterator(path, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("rank-", 0) != 0 || name.size() <= 10 || name.substr(name.size() - 5) != ".json")
      continue;
    const std::string digits = name.substr(5, name.size() - 10);
    if (digits.find_first_not_of("0123456789") != std::string::npos || digits.size() > 6) continue;
    const int rank = std::stoi(digits);
    if (best < 0 || rank < best) {
      best = rank;
      found = entry.path().string();
    }
  }
  if (found.empty())
    throw ConfigError(str("--trace ", path, ": no rank-R.json trace file in this directory"));
  return found;
}

struct Span {
  double begin = 0, end = 0;
};

struct StepEvents {
  Span step;
  double data = 0, forward = 0, backward = 0, optimizer = 0;
  bool has_forward = false, has_backward = false;
  double backward_begin = 0;
  std::map<std::string, double> module_end;  // "backward/<module>" end
  std::map<int, double> bucket_ready_us;     // allreduce: bucket -> ready_us (from step start)
  std::map<int, double> bucket_bytes;
};

ConfigError trace_error(const std::string& path, const std::string& what) {
  return ConfigError(str("--trace ", path, ": ", what));
}

// The trace file's JSON, checked to be a tandem trace.
json load_trace(const std::string& path) {
  std::string text;
  try {
    text = read_file(path);
  } catch (const IoError& e) {
    throw ConfigError(str("--trace ", path, ": cannot read (", e.what(), ")"));
  }
  json doc = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object() || !doc.contains("traceEvents") || !doc["traceEvents"].is_array() ||
      !doc.contains("otherData") || !doc["otherData"].is_object() ||
      doc["otherData"].value("format", "") != kTraceFormat)
    throw trace_error(path, str("not a tandem trace (expected Chrome trace JSON with "
                                "otherData.format '",
                                kTraceFormat, "', as `trace/rank-R.json` files are written)"));
  return doc;
}

// The lowest rank's steps that hold both a forward and a backward event, each with the events
// inside it.
std::vector<StepEvents> complete_steps(const json& doc, const std::string& path) {
  const auto fail = [&](const std::string& what) { return trace_error(path, what); };
  // The lowest rank in the file.
  int pid = -1;
  for (const json& e : doc["traceEvents"])
    if (e.value("ph", "") == "X" && e.contains("pid") && e["pid"].is_number_integer())
      pid = pid < 0 ? e["pid"].get<int>() : std::min(pid, e["pid"].get<int>());
  std::vector<StepEvents> steps;
  for (const json& e : doc["traceEvents"])
    if (e.value("ph", "") == "X" && e.value("pid", -2) == pid && e.value("name", "") == "step" &&
        e.contains("ts") && e.contains("dur")) {
      StepEvents s;
      s.step = {e["ts"].get<double>(), e["ts"].get<double>() + e["dur"].get<double>()};
      steps.push_back(std::move(s));
    }
  if (steps.empty())
    throw fail(
        "no \"step\" events (expected complete events named step, forward, backward, ...; "
        "see core/metrics/trace.h)");
  std::sort(steps.begin(), steps.end(),
            [](const StepEvents& a, const StepEvents& b) { return a.step.begin < b.step.begin; });

  for (const json& e : doc["traceEvents"]) {
    if (e.value("ph", "") != "X" || e.value("pid", -2) != pid || !e.contains("ts") ||
        !e.contains("dur") || !e["ts"].is_number() || !e["dur"].is_number())
      continue;
    const std::string name = e.value("name", "");
    if (name == "step") continue;
    const double ts = e["ts"].get<double>(), dur = e["dur"].get<double>();
    auto it = std::find_if(steps.begin(), steps.end(), [ts](const StepEvents& s) {
      return ts >= s.step.begin && ts <= s.step.end;
    });
    if (it == steps.end()) continue;  // outside every traced step (eval, checkpoint, ...)
    StepEvents& s = *it;
    if (name == "data") s.data += dur;
    if (name == "forward") {
      s.forward += dur;
      s.has_forward = true;
    }
    if (name == "backward") {
      s.backward += dur;
      if (!s.has_backward) s.backward_begin = ts;
      s.has_backward = true;
    }
    if (name == "optimizer") s.optimizer += dur;
    if (name.rfind("backward/", 0) == 0) s.module_end[name.substr(9)] = ts + dur;
    if (name == "allreduce" && e.contains("args") && e["args"].is_object()) {
      const json& a = e["args"];
      if (a.contains("bucket") && a.contains("ready_us") && a["bucket"].is_number() &&
          a["ready_us"].is_number()) {
        s.bucket_ready_us[a["bucket"].get<int>()] = a["ready_us"].get<double>();
        if (a.contains("bytes") && a["bytes"].is_number())
          s.bucket_bytes[a["bucket"].get<int>()] = a["bytes"].get<double>();
      }
    }
  }
  std::vector<StepEvents> complete;
  for (StepEvents& s : steps)
    if (s.has_forward && s.has_backward) complete.push_back(std::move(s));
  if (complete.empty())
    throw fail(str(steps.size(),
                   " step(s) but none with both a \"forward\" and a \"backward\" "
                   "event inside it"));
  return complete;
}

// Median phase times (ms) and the step-to-step variation of compute.
void phase_medians(const std::vector<StepEvents>& complete, TraceProfile& out) {
  // Medians, in milliseconds.
  std::vector<double> data, forward, backward, optimizer, compute, step;
  for (const StepEvents& s : complete) {
    step.push_back((s.step.end - s.step.begin) / 1e3);
    data.push_back(s.data / 1e3);
    forward.push_back(s.forward / 1e3);
    backward.push_back(s.backward / 1e3);
    optimizer.push_back(s.optimizer / 1e3);
    compute.push_back((s.forward + s.backward + s.optimizer) / 1e3);
  }
  out.step_ms = median(step);
  ComputeProfile& p = out.profile;
  p.data_ms = median(data);
  p.forward_ms = median(forward);
  p.backward_ms = median(backward);
  p.optimizer_ms = median(optimizer);
  if (compute.size() >= 2) {
    double mean = 0, var = 0;
    for (double c : compute) mean += c;
    mean /= static_cast<double>(compute.size());
    for (double c : compute) var += (c - mean) * (c - mean);
    var /= static_cast<double>(compute.size() - 1);
    p.compute_cv = mean > 0 ? std::sqrt(var) / mean : 0;
  }
}

// Gradient-ready times (ms after backward begins), finest source first: per-module backward
// events, else the allreduce buckets' ready times spread over the planned buckets, else uniform.
void ready_times(const std::vector<StepEvents>& complete, const std::vector<GradientTensor>& grads,
                 const FusionPolicy& traced, TraceProfile& out) {
  const auto fail = [&](const std::string& what) { return trace_error(out.path, what); };
  ComputeProfile& p = out.profile;
  std::map<std::string, std::vector<double>> module_ready;
  std::map<int, std::vector<double>> bucket_ready;
  std::map<int, double> bucket_bytes;
  for (const StepEvents& s : complete) {
    for (const auto& [module, end] : s.module_end)
      module_ready[module].push_back((end - s.backward_begin) / 1e3);
    for (const auto& [bucket, ready_us] : s.bucket_ready_us)
      bucket_ready[bucket].push_back((ready_us - (s.backward_begin - s.step.begin)) / 1e3);
    for (const auto& [bucket, bytes] : s.bucket_bytes) bucket_bytes[bucket] = bytes;
  }
  p.ready_ms.assign(grads.size(), p.backward_ms);
  if (!module_ready.empty()) {
    out.readiness = "per-module backward events";
    int unmatched = 0;
    for (size_t i = 0; i < grads.size(); ++i) {
      const std::string& name = grads[i].name;
      const size_t dot = name.rfind('.');
      auto it = module_ready.find(dot == std::string::npos ? name : name.substr(0, dot));
      if (it == module_ready.end()) {
        ++unmatched;  // ready at the end of backward: the conservative choice
        continue;
      }
      p.ready_ms[i] = std::clamp(median(it->second), 0.0, p.backward_ms);
    }
    if (unmatched > 0)
      out.readiness += str(" (", unmatched, " of ", grads.size(),
                           " parameters without one: ready at the end of backward)");
  } else if (!bucket_ready.empty()) {
    out.readiness = "allreduce events' ready_us";
    const std::vector<double> uniform = uniform_layer_ready_ms(grads, p.backward_ms);
    const std::vector<std::vector<int>> plan = plan_reducer_buckets(grads, uniform, traced);
    if (bucket_ready.size() != plan.size())
      throw fail(str(bucket_ready.size(),
                     " allreduce buckets, but the config's model and "
                     "strategy.bucket_mb/first_bucket_mb plan ",
                     plan.size(), "; pass the CONFIG and overrides the trace was recorded with"));
    double previous = 0;
    for (size_t k = 0; k < plan.size(); ++k) {
      const int bucket = static_cast<int>(k);
      if (!bucket_ready.count(bucket))
        throw fail(str("no allreduce event for bucket ", bucket, " (expected buckets 0 to ",
                       plan.size() - 1, ")"));
      double planned = 0;
      for (int i : plan[k]) planned += static_cast<double>(grads[i].bytes);
      if (bucket_bytes.count(bucket) && std::abs(bucket_bytes[bucket] - planned) > 0.5)
        throw fail(str("allreduce bucket ", bucket, " has ", bucket_bytes[bucket],
                       " bytes, the config plans ", planned,
                       "; pass the CONFIG and overrides the trace was recorded with"));
      const double ready = std::clamp(median(bucket_ready[bucket]), previous, p.backward_ms);
      double done = 0;
      for (int i : plan[k]) {
        done += static_cast<double>(grads[i].bytes);
        p.ready_ms[i] = previous + (ready - previous) * (planned > 0 ? done / planned : 1.0);
      }
      previous = ready;
    }
  } else {
    out.readiness = "uniform over the traced backward (no backward/<module> or allreduce events)";
    p.ready_ms = uniform_layer_ready_ms(grads, p.backward_ms);
  }
}

}  // namespace

TraceProfile read_trace_profile(const std::string& path, const std::vector<GradientTensor>& grads,
                                const FusionPolicy& traced) {
  TraceProfile out;
  out.path = trace_file(path);
  const std::vector<StepEvents> complete = complete_steps(load_trace(out.path), out.path);
  out.steps = static_cast<int>(complete.size());
  phase_medians(complete, out);
  ready_times(complete, grads, traced, out);
  return out;
}

}  // namespace tandem::scaling
