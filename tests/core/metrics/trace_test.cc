// Step traces: the file is Chrome trace-event JSON (parsed back with nlohmann), a step's events lie
// inside it, the step window holds, merging keeps one row per rank, two threads may record at once.
#include "core/metrics/trace.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "core/base/error.h"
#include "core/io/safetensors.h"
#include "tests/support/test_support.h"

namespace tandem {
namespace {

using nlohmann::json;

TraceOptions window(int rank, int64_t first, int64_t steps) {
  TraceOptions o;
  o.enabled = true;
  o.rank = rank;
  o.first_step = first;
  o.num_steps = steps;
  return o;
}

std::vector<json> complete_events(const json& doc, const std::string& name = "") {
  std::vector<json> out;
  for (const json& e : doc["traceEvents"])
    if (e["ph"] == "X" && (name.empty() || e["name"] == name)) out.push_back(e);
  return out;
}

void busy_wait_us(double us) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double, std::micro>(us);
  while (std::chrono::steady_clock::now() < end) {
  }
}

TEST(Trace, WritesChromeTraceEventsWithMetadataAndArgs) {
  TraceRecorder trace(window(/*rank=*/3, 0, 1));
  trace.begin_step(0);
  trace.complete("allreduce", "comm", TraceLane::kCommunication, 10.0, 2.5,
                 TraceArgs()
                     .num("bucket", 1)
                     .num("bytes", 4096)
                     .text("backend", "nccl")
                     .num("ready_us", 7.25));
  const json doc = json::parse(trace.to_json());
  EXPECT_EQ(doc["displayTimeUnit"], "ms");
  EXPECT_EQ(doc["otherData"]["format"], kTraceFormat);
  EXPECT_EQ(doc["otherData"]["rank"], 3);
  int process_names = 0, lane_names = 0;
  for (const json& e : doc["traceEvents"]) {
    EXPECT_EQ(e["pid"], 3);
    if (e["ph"] == "M" && e["name"] == "process_name") {
      ++process_names;
      EXPECT_EQ(e["args"]["name"], "rank 3");
    }
    if (e["ph"] == "M" && e["name"] == "thread_name") {
      ++lane_names;  // only the lane used
      EXPECT_EQ(e["tid"], 1);
      EXPECT_EQ(e["args"]["name"], "communication");
    }
  }
  EXPECT_EQ(process_names, 1);
  EXPECT_EQ(lane_names, 1);
  const std::vector<json> x = complete_events(doc);
  ASSERT_EQ(x.size(), 1u);
  EXPECT_EQ(x[0]["name"], "allreduce");
  EXPECT_EQ(x[0]["cat"], "comm");
  EXPECT_EQ(x[0]["tid"], 1);
  EXPECT_DOUBLE_EQ(x[0]["ts"].get<double>(), 10.0);
  EXPECT_DOUBLE_EQ(x[0]["dur"].get<double>(), 2.5);
  EXPECT_EQ(x[0]["args"]["bucket"], 1);
  EXPECT_EQ(x[0]["args"]["bytes"], 4096);
  EXPECT_EQ(x[0]["args"]["backend"], "nccl");
  EXPECT_DOUBLE_EQ(x[0]["args"]["ready_us"].get<double>(), 7.25);
}

TEST(Trace, ChildEventsLieInsideTheirStep) {
  TraceRecorder trace(window(0, 0, 1));
  trace.begin_step(0);
  {
    TraceRecorder::Span step(trace, "step", "step", TraceLane::kCompute,
                             TraceArgs().num("step", 0));
    {
      TraceRecorder::Span s(trace, "data", "data", TraceLane::kCompute);
      busy_wait_us(50);
    }
    {
      TraceRecorder::Span s(trace, "forward", "compute", TraceLane::kCompute);
      busy_wait_us(50);
    }
    {
      TraceRecorder::Span s(trace, "backward", "compute", TraceLane::kCompute);
      const double start = trace.now_us();
      {
        TraceRecorder::Span m(trace, "backward/fc", "compute", TraceLane::kCompute);
        busy_wait_us(50);
      }
      trace.complete("allreduce", "comm", TraceLane::kCommunication, trace.now_us(), 20,
                     TraceArgs().num("bucket", 0).num("ready_us", trace.now_us() - start));
      busy_wait_us(50);
    }
    {
      TraceRecorder::Span s(trace, "optimizer", "compute", TraceLane::kCompute);
      busy_wait_us(50);
    }
  }
  const json doc = json::parse(trace.to_json());
  const std::vector<json> steps = complete_events(doc, "step");
  ASSERT_EQ(steps.size(), 1u);
  const double step_begin = steps[0]["ts"], step_end = step_begin + steps[0]["dur"].get<double>();
  std::set<std::string> seen;
  double previous_end = step_begin;
  for (const json& e : complete_events(doc)) {
    if (e["name"] == "step") continue;
    seen.insert(e["name"]);
    const double b = e["ts"], end = b + e["dur"].get<double>();
    EXPECT_GE(b, step_begin) << e.dump();
    EXPECT_LE(end, step_end) << e.dump();
    EXPECT_GE(e["dur"].get<double>(), e["name"] == "allreduce" ? 20.0 : 50.0) << e.dump();
    if (e["name"] == "data" || e["name"] == "forward" || e["name"] == "optimizer") {
      EXPECT_GE(b, previous_end) << "phases of one lane follow each other: " << e.dump();
      previous_end = end;
    }
  }
  EXPECT_EQ(seen, (std::set<std::string>{"data", "forward", "backward", "backward/fc", "allreduce",
                                         "optimizer"}));
  // backward/fc inside backward.
  const json bw = complete_events(doc, "backward")[0], fc = complete_events(doc, "backward/fc")[0];
  EXPECT_GE(fc["ts"].get<double>(), bw["ts"].get<double>());
  EXPECT_LE(fc["ts"].get<double>() + fc["dur"].get<double>(),
            bw["ts"].get<double>() + bw["dur"].get<double>());
}

TEST(Trace, RecordsOnlyTheStepsOfItsWindow) {
  TraceRecorder trace(window(0, /*first=*/2, /*steps=*/2));
  std::vector<bool> open;
  for (int64_t step = 0; step < 6; ++step) {
    trace.begin_step(step);
    open.push_back(trace.in_window());
    TraceRecorder::Span s(trace, "step", "step", TraceLane::kCompute,
                          TraceArgs().num("step", step));
    trace.complete("data", "data", TraceLane::kCompute, trace.now_us(), 1);
  }
  EXPECT_EQ(open, (std::vector<bool>{false, false, true, true, false, false}));
  const json doc = json::parse(trace.to_json());
  std::vector<int64_t> steps;
  for (const json& e : complete_events(doc, "step")) steps.push_back(e["args"]["step"]);
  EXPECT_EQ(steps, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(complete_events(doc, "data").size(), 2u);
  EXPECT_EQ(trace.num_events(), 4);
}

TEST(Trace, DisabledRecorderRecordsNothing) {
  TraceOptions o = window(0, 0, 100);
  o.enabled = false;
  TraceRecorder trace(o);
  trace.begin_step(0);
  EXPECT_FALSE(trace.in_window());
  { TraceRecorder::Span s(trace, "step", "step", TraceLane::kCompute); }
  trace.complete("data", "data", TraceLane::kCompute, 0, 1);
  EXPECT_EQ(trace.num_events(), 0);
  EXPECT_TRUE(complete_events(json::parse(trace.to_json())).empty());
}

TEST(Trace, EventsBeyondTheCapAreCountedAsDropped) {
  TraceOptions o = window(0, 0, 1);
  o.max_events = 5;
  TraceRecorder trace(o);
  trace.begin_step(0);
  for (int i = 0; i < 8; ++i) trace.complete("data", "data", TraceLane::kData, i, 1);
  EXPECT_EQ(trace.num_events(), 5);
  EXPECT_EQ(trace.dropped_events(), 3);
  EXPECT_EQ(json::parse(trace.to_json())["otherData"]["dropped_events"], 3);
}

TEST(Trace, TwoThreadsMayRecordAtOnce) {
  TraceRecorder trace(window(0, 0, 1));
  trace.begin_step(0);
  constexpr int kPerThread = 20000;
  auto record = [&](TraceLane lane, const char* name) {
    for (int i = 0; i < kPerThread; ++i)
      trace.complete(name, "x", lane, i, 1, TraceArgs().num("i", i));
  };
  std::thread compute(record, TraceLane::kCompute, "forward");
  std::thread comm(record, TraceLane::kCommunication, "allreduce");
  compute.join();
  comm.join();
  const json doc = json::parse(trace.to_json());
  for (const char* name : {"forward", "allreduce"}) {
    std::set<int> seen;
    for (const json& e : complete_events(doc, name)) seen.insert(e["args"]["i"].get<int>());
    EXPECT_EQ(seen.size(), static_cast<size_t>(kPerThread)) << name;
  }
  EXPECT_EQ(trace.num_events(), 2 * kPerThread);
}

TEST(Trace, WritesRankFileAtomically) {
  const std::string dir = testing::temp_dir() + "/run/trace";
  TraceRecorder trace(window(5, 0, 1));
  trace.begin_step(0);
  trace.complete("step", "step", TraceLane::kCompute, 0, 3);
  const std::string path = trace.write(dir);
  EXPECT_EQ(path, dir + "/rank-5.json");
  EXPECT_EQ(complete_events(json::parse(read_file(path))).size(), 1u);
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    ++files;
    EXPECT_EQ(entry.path().filename(), "rank-5.json");  // no temporary file left behind
  }
  EXPECT_EQ(files, 1);
}

TEST(Trace, MergeKeepsOneRowPerRankOnACommonClock) {
  const std::string dir = testing::temp_dir() + "/trace";
  std::vector<std::string> files;
  for (int rank : {1, 0}) {
    TraceRecorder trace(window(rank, 0, 1));
    trace.begin_step(0);
    trace.complete("step", "step", TraceLane::kCompute, 100, 10);
    trace.complete("allreduce", "comm", TraceLane::kCommunication, 102, 3);
    files.push_back(trace.write(dir));
  }
  // Rank 1's recorder started first: its clock origin is the earliest.
  const int64_t origin1 = json::parse(read_file(files[0]))["otherData"]["clock_origin_unix_us"];
  const int64_t origin0 = json::parse(read_file(files[1]))["otherData"]["clock_origin_unix_us"];
  ASSERT_LE(origin1, origin0);
  merge_traces(files, dir + "/all.json");
  const json doc = json::parse(read_file(dir + "/all.json"));
  EXPECT_EQ(doc["otherData"]["ranks"], json::array({0, 1}));
  std::map<int, int> rows, names;
  std::map<int, double> step_ts;
  for (const json& e : doc["traceEvents"]) {
    if (e["ph"] == "X") ++rows[e["pid"].get<int>()];
    if (e["ph"] == "M" && e["name"] == "process_name") {
      ++names[e["pid"].get<int>()];
      EXPECT_EQ(e["args"]["name"], str("rank ", e["pid"].get<int>()));
    }
    if (e["ph"] == "X" && e["name"] == "step") step_ts[e["pid"].get<int>()] = e["ts"];
  }
  EXPECT_EQ(rows, (std::map<int, int>{{0, 2}, {1, 2}}));
  EXPECT_EQ(names, (std::map<int, int>{{0, 1}, {1, 1}}));
  EXPECT_DOUBLE_EQ(step_ts[1], 100.0);
  EXPECT_DOUBLE_EQ(step_ts[0], 100.0 + static_cast<double>(origin0 - origin1));
}

TEST(Trace, MergeRefusesTwoFilesOfOneRankAndFilesThatAreNotTraces) {
  const std::string dir = testing::temp_dir();
  TraceRecorder a(window(0, 0, 1));
  const std::string first = a.write(dir + "/a"), second = a.write(dir + "/b");
  try {
    merge_traces({first, second}, dir + "/all.json");
    FAIL() << "expected IoError";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find(second), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(first), std::string::npos) << e.what();
  }
  std::ofstream(dir + "/junk.json") << "{\"traceEvents\": []}";
  try {
    merge_traces({dir + "/junk.json"}, dir + "/all.json");
    FAIL() << "expected IoError";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("junk.json: not a tandem trace"), std::string::npos)
        << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(dir + "/all.json"));
}

}  // namespace
}  // namespace tandem
