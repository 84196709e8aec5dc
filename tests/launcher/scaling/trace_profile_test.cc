// Reading a trace written by core/metrics/trace.h into the profile `tandem scaling` simulates:
// medians of hand-placed events, ready times from per-module events or from allreduce ready_us,
// the step-to-step variation, and one-line errors naming the file.
#include "launcher/scaling/trace_profile.h"

#include <gtest/gtest.h>

#include <fstream>

#include "core/base/error.h"
#include "core/metrics/trace.h"
#include "tests/support/test_support.h"

namespace tandem::scaling {
namespace {

TraceOptions one_rank(int64_t steps) {
  TraceOptions o;
  o.enabled = true;
  o.num_steps = steps;
  return o;
}

// Step s starts at 100 ms * s: data 5 ms, forward 20 + s ms, backward 30..70 ms, optimizer
// 3 + s ms; the "fc" module's gradients are ready 10 ms into backward, "conv1"'s at its end.
std::string write_module_trace(const std::string& dir) {
  TraceRecorder t(one_rank(3));
  for (int s = 0; s < 3; ++s) {
    t.begin_step(s);
    const double at = 100'000.0 * s;
    t.complete("step", "step", TraceLane::kCompute, at, 100'000, TraceArgs().num("step", s));
    t.complete("data", "data", TraceLane::kCompute, at, 5'000);
    t.complete("forward", "compute", TraceLane::kCompute, at + 5'000, 20'000 + 1'000.0 * s);
    t.complete("backward", "compute", TraceLane::kCompute, at + 30'000, 40'000);
    t.complete("backward/fc", "compute", TraceLane::kCompute, at + 30'000, 10'000);
    t.complete("backward/conv1", "compute", TraceLane::kCompute, at + 50'000, 20'000);
    t.complete("optimizer", "compute", TraceLane::kCompute, at + 75'000, 3'000 + 1'000.0 * s);
  }
  t.begin_step(3);
  t.complete("eval", "compute", TraceLane::kCompute, 400'000, 1'000);  // outside the window
  return t.write(dir);
}

const std::vector<GradientTensor> kGrads = {
    {"conv1.weight", 1000}, {"fc.weight", 2000}, {"fc.bias", 8}};

TEST(TraceProfile, MediansAndReadyTimesFromModuleEvents) {
  const std::string dir = testing::temp_dir() + "/trace";
  write_module_trace(dir);
  const TraceProfile t = read_trace_profile(dir, kGrads, FusionPolicy());
  EXPECT_EQ(t.path, dir + "/rank-0.json");
  EXPECT_EQ(t.steps, 3);
  EXPECT_EQ(t.readiness, "per-module backward events");
  EXPECT_DOUBLE_EQ(t.profile.data_ms, 5);
  EXPECT_DOUBLE_EQ(t.profile.forward_ms, 21);  // median of 20, 21, 22
  EXPECT_DOUBLE_EQ(t.profile.backward_ms, 40);
  EXPECT_DOUBLE_EQ(t.profile.optimizer_ms, 4);  // median of 3, 4, 5
  EXPECT_DOUBLE_EQ(t.step_ms, 100);             // the step events as traced
  EXPECT_EQ(t.profile.ready_ms, (std::vector<double>{40, 10, 10}));
  // Compute per step 63, 65, 67 ms: mean 65, sample standard deviation 2.
  EXPECT_NEAR(t.profile.compute_cv, 2.0 / 65.0, 1e-12);
}

TEST(TraceProfile, ReadyTimesFromAllreduceEventsSpreadOverTheTracedBuckets) {
  // Traced plan (first 100 bytes, then 1000): l2 (50 bytes) alone, then l1 + l0 (800 bytes).
  const std::vector<GradientTensor> grads = {
      {"l0.weight", 400}, {"l1.weight", 400}, {"l2.weight", 50}};
  FusionPolicy traced;
  traced.first_bucket_bytes = 100;
  traced.bucket_bytes = 1000;
  const std::string dir = testing::temp_dir() + "/trace";
  TraceRecorder t(one_rank(1));
  t.begin_step(0);
  t.complete("step", "step", TraceLane::kCompute, 0, 100'000);
  t.complete("forward", "compute", TraceLane::kCompute, 0, 30'000);
  t.complete("backward", "compute", TraceLane::kCompute, 30'000, 40'000);
  // ready_us counts from the step's start: backward began at 30 ms.
  t.complete("allreduce", "comm", TraceLane::kCommunication, 35'000, 100,
             TraceArgs().num("bucket", 0).num("bytes", 50).num("ready_us", 35'000));
  t.complete("allreduce", "comm", TraceLane::kCommunication, 65'000, 100,
             TraceArgs().num("bucket", 1).num("bytes", 800).num("ready_us", 65'000));
  const std::string file = t.write(dir);
  const TraceProfile p = read_trace_profile(file, grads, traced);
  EXPECT_EQ(p.readiness, "allreduce events' ready_us");
  // Bucket 0 at 5 ms; bucket 1 at 35 ms, its tensors spread by bytes from 5: l1 at 20, l0 at 35.
  EXPECT_EQ(p.profile.ready_ms, (std::vector<double>{35, 20, 5}));
  EXPECT_EQ(p.profile.compute_cv, 0);  // one step: nothing to measure

  // Buckets of other sizes, or another number of them: the config is named as the likely cause.
  std::vector<GradientTensor> bigger = grads;
  bigger[0].bytes = 500;  // bucket 1 would hold 900 bytes
  try {
    read_trace_profile(file, bigger, traced);
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find(file + ": allreduce bucket 1 has 800 bytes, the config "
                                                "plans 900"),
              std::string::npos)
        << e.what();
  }
  FusionPolicy other = traced;
  other.bucket_bytes = 500;  // three buckets
  try {
    read_trace_profile(file, grads, other);
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find(file + ": 2 allreduce buckets, but the config"),
              std::string::npos)
        << e.what();
  }
}

TEST(TraceProfile, WithoutModuleOrBucketEventsReadinessIsUniform) {
  const std::string dir = testing::temp_dir();
  TraceRecorder t(one_rank(1));
  t.begin_step(0);
  t.complete("step", "step", TraceLane::kCompute, 0, 100'000);
  t.complete("forward", "compute", TraceLane::kCompute, 0, 30'000);
  t.complete("backward", "compute", TraceLane::kCompute, 30'000, 40'000);
  const TraceProfile p = read_trace_profile(t.write(dir), kGrads, FusionPolicy());
  // Layers from the end: fc (20 ms), conv1 (40 ms).
  EXPECT_EQ(p.profile.ready_ms, (std::vector<double>{40, 20, 20}));
}

TEST(TraceProfile, ReadsTheLowestRankOfADirectory) {
  const std::string dir = testing::temp_dir() + "/trace";
  write_module_trace(dir);  // rank 0
  TraceOptions o = one_rank(1);
  o.rank = 7;
  TraceRecorder other(o);
  other.write(dir);
  EXPECT_EQ(read_trace_profile(dir, kGrads, FusionPolicy()).path, dir + "/rank-0.json");
}

void expect_config_error(const std::string& path, const std::string& expected) {
  try {
    read_trace_profile(path, kGrads, FusionPolicy());
    FAIL() << "expected ConfigError for " << path;
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()).find("\n"), std::string::npos) << "one line: " << e.what();
    EXPECT_NE(std::string(e.what()).find(expected), std::string::npos) << e.what();
  }
}

TEST(TraceProfile, BadTracesAreOneLineErrorsNamingTheFile) {
  const std::string dir = testing::temp_dir();
  expect_config_error(dir + "/missing", "--trace " + dir + "/missing: no such file or directory");
  expect_config_error(dir, "--trace " + dir + ": no rank-R.json trace file in this directory");
  std::ofstream(dir + "/junk.json") << "not json";
  expect_config_error(dir + "/junk.json", dir + "/junk.json: not a tandem trace");
  TraceRecorder empty(one_rank(1));
  const std::string file = empty.write(dir + "/empty");
  expect_config_error(file, file + ": no \"step\" events");
  TraceRecorder no_backward(one_rank(1));
  no_backward.begin_step(0);
  no_backward.complete("step", "step", TraceLane::kCompute, 0, 10);
  const std::string partial = no_backward.write(dir + "/partial");
  expect_config_error(partial, "1 step(s) but none with both a \"forward\" and a \"backward\"");
}

}  // namespace
}  // namespace tandem::scaling
