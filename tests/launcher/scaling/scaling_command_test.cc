// `tandem scaling` end to end: the report's script-readable lines, the bucket count it plans for a
// real config, and usage errors -- one line naming the flag, exit code 2 from the binary.
#include "launcher/scaling_command.h"

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <regex>
#include <sstream>

#include "core/base/error.h"
#include "core/metrics/trace.h"
#include "tests/support/test_support.h"

namespace tandem {
namespace {

std::string run(const ScalingCommand& c) {
  std::ostringstream out;
  EXPECT_EQ(cmd_scaling(c, out), 0);
  return out.str();
}

// The value of key=... on the `nodes=N ...` line of a report.
double value_on_line(const std::string& report, int nodes, const std::string& key) {
  std::smatch m;
  const std::regex line("(^|\\n)(nodes=" + std::to_string(nodes) + " [^\\n]*)");
  if (!std::regex_search(report, m, line)) {
    ADD_FAILURE() << "no line for nodes=" << nodes << " in\n" << report;
    return -1;
  }
  const std::string text = m[2];
  std::smatch v;
  if (!std::regex_search(text, v, std::regex(key + "=([0-9.]+)"))) {
    ADD_FAILURE() << "no " << key << " in " << text;
    return -1;
  }
  return std::stod(v[1]);
}

TEST(ScalingCommand, OneGpuIsTheBaselineAndLinesAreScriptReadable) {
  ScalingCommand c;
  c.model = "vgg16";
  c.samples_per_s = 154;
  c.batch_per_gpu = 64;
  c.nodes = "1,32";
  c.procs_per_node = 1;
  c.inter_gbps = 25;
  const std::string report = run(c);
  // One GPU: no communication, no slower rank -- the published step, 64 / 154 s.
  EXPECT_NEAR(value_on_line(report, 1, "step_ms"), 64e3 / 154, 1e-3);
  EXPECT_DOUBLE_EQ(value_on_line(report, 1, "efficiency"), 1.0);
  EXPECT_DOUBLE_EQ(value_on_line(report, 1, "exposed_comm_ms"), 0.0);
  // 32 nodes of one GPU over 25 Gbit/s: VGG-16's 528 MiB cannot hide under backward.
  EXPECT_LT(value_on_line(report, 32, "efficiency"), 0.9);
  EXPECT_GT(value_on_line(report, 32, "exposed_comm_ms"), 50);
  EXPECT_NE(report.find("vgg16, 32 gradient tensors, 138.36 M parameters, 527.8 MiB"),
            std::string::npos)
      << report;
  EXPECT_NE(report.find("nodes=32 gpus=32 step_ms="), std::string::npos) << report;
}

TEST(ScalingCommand, PlansTheConfigsBucketsForItsModel) {
  ScalingCommand c;
  c.config_path = std::string(TANDEM_SOURCE_DIR) + "/configs/resnet50_synthetic.yaml";
  c.overrides = {"training.device=cpu"};
  c.step_ms = 100;
  c.nodes = "1";
  const std::string report = run(c);
  // resnet50, 1 + 25 MiB buckets (the config's): 6 all-reduces (step_model_test checks the plan
  // against the reducer's), and the config's global batch of 256 per process.
  EXPECT_NE(report.find("then 25.0 MiB -> 6 all-reduces per step"), std::string::npos) << report;
  EXPECT_NE(report.find("batch 256 per GPU"), std::string::npos) << report;
  EXPECT_NEAR(value_on_line(report, 1, "samples_per_s"),
              8 * 256 * 1000.0 / value_on_line(report, 1, "step_ms"), 0.1);
}

TEST(ScalingCommand, ReadsATraceOfTheConfig) {
  const std::string dir = testing::temp_dir() + "/trace";
  TraceOptions o;
  o.enabled = true;
  o.num_steps = 1;
  TraceRecorder t(o);
  t.begin_step(0);
  t.complete("step", "step", TraceLane::kCompute, 0, 100'000);
  t.complete("forward", "compute", TraceLane::kCompute, 0, 30'000);
  t.complete("backward", "compute", TraceLane::kCompute, 30'000, 60'000);
  t.write(dir);
  ScalingCommand c;
  c.config_path = std::string(TANDEM_SOURCE_DIR) + "/configs/resnet50_synthetic.yaml";
  c.overrides = {"training.device=cpu", "model.name=mlp", "data.synthetic_shape=[1,28,28]"};
  c.trace = dir;
  c.nodes = "1";
  c.procs_per_node = 1;
  const std::string report = run(c);
  EXPECT_NE(report.find("forward 30.00 ms, backward 60.00 ms"), std::string::npos) << report;
  EXPECT_NE(report.find("the traced step itself: 100.00 ms"), std::string::npos) << report;
  EXPECT_NEAR(value_on_line(report, 1, "step_ms"), 90, 1e-9);
}

void expect_usage_error(const ScalingCommand& c, const std::string& message) {
  std::ostringstream out;
  try {
    cmd_scaling(c, out);
    FAIL() << "expected ConfigError: " << message;
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()), message);
  }
}

TEST(ScalingCommand, BadFlagsNameTheFlagAndWhatWasExpected) {
  ScalingCommand c;
  c.params = 25e6;
  c.step_ms = 100;
  c.nodes = "1,0,4";
  expect_usage_error(c,
                     "--nodes: expected a comma-separated list of node counts >= 1, e.g. "
                     "1,2,4,8, got '1,0,4'");
  c.nodes = "1";
  c.algorithm = "butterfly";
  expect_usage_error(c, "--algorithm: expected ring, tree or hierarchical, got 'butterfly'");
  c.algorithm = "ring";
  c.compression = "int8";
  expect_usage_error(c, "--compression: expected none, bf16 or fp16, got 'int8'");
  c.compression = "";
  c.model = "alexnet";
  c.params = 0;
  expect_usage_error(c,
                     "--model: expected vgg16, inception_v3, resnet101 (torchvision's shapes) "
                     "or resnet18, resnet50 (tandem's models), got 'alexnet'");
  ScalingCommand none;
  none.params = 1e6;
  expect_usage_error(none,
                     "no step time: give --trace DIR (a measured trace of CONFIG) or "
                     "--step-ms MS / --samples-per-s N (a published per-GPU figure)");
  ScalingCommand trace_only;
  trace_only.trace = "runs/x/trace";
  expect_usage_error(
      trace_only, "--trace needs CONFIG, the experiment it traced (its model names the modules)");
}

// Runs the tandem binary; returns (exit code, stdout + stderr).
std::pair<int, std::string> tandem(const std::string& args) {
  const std::string cmd = std::string(TANDEM_BINARY) + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof(buf), p)) out.append(buf, n);
  const int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

TEST(ScalingCommand, BinaryExitsTwoWithOneLineOnUsageErrors) {
  auto [code, out] = tandem("scaling --params 25e6 --step-ms 100 --nodes 2,x");
  EXPECT_EQ(code, 2);
  EXPECT_EQ(out,
            "tandem: error: --nodes: expected a comma-separated list of node counts >= 1, "
            "e.g. 1,2,4,8, got '2,x'\n");
  std::tie(code, out) = tandem(
      "scaling --params 25e6 --step-ms 100 --trace /nonexistent/trace "
      "--nodes 1");
  EXPECT_EQ(code, 2);
  std::tie(code, out) =
      tandem("scaling --params 25e6 --step-ms 100 --nodes 1,2 --procs-per-node 4");
  EXPECT_EQ(code, 0) << out;
  EXPECT_NE(out.rfind("\nnodes=2 gpus=8 step_ms="), std::string::npos) << out;
  std::tie(code, out) = tandem("scaling --help");
  EXPECT_EQ(code, 0);
  EXPECT_NE(out.find("Communication and compute do not slow each other down"), std::string::npos)
      << out;
}

}  // namespace
}  // namespace tandem
