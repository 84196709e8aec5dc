// metrics.jsonl: every line parses as JSON with the logged values; reopening appends; a line cut
// short by a crash does not swallow the next record.
#include "core/metrics/metrics_log.h"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/io/safetensors.h"
#include "tests/support/test_support.h"

namespace tandem {
namespace {

std::vector<std::string> lines_of(const std::string& path) {
  std::istringstream in(read_file(path));
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

TEST(MetricsLog, EachLineIsAJsonObjectWithTheLoggedValues) {
  const std::string path = testing::temp_dir() + "/run/metrics.jsonl";  // parent created
  {
    MetricsLog log(path);
    log.log(100, 1, 1700000000.25, {{"loss", 0.4123}, {"lr", 0.001}});
    log.log(200, 1, 1700000010.5, {{"loss", 0.3}, {"samples_per_s", 5123}});
    // Written before the next call: a reader sees it while the log is still open.
    EXPECT_EQ(lines_of(path).size(), 2u);
    log.log(300, 2, {{"loss", std::nan("")}, {"eval/accuracy", 0.875}});
  }
  auto lines = lines_of(path);
  ASSERT_EQ(lines.size(), 3u);
  auto a = nlohmann::json::parse(lines[0]);
  EXPECT_EQ(a["step"], 100);
  EXPECT_EQ(a["epoch"], 1);
  EXPECT_EQ(a["time"].get<double>(), 1700000000.25);
  EXPECT_EQ(a["loss"].get<double>(), 0.4123);
  EXPECT_EQ(a["lr"].get<double>(), 0.001);
  EXPECT_EQ(a.size(), 5u);
  auto b = nlohmann::json::parse(lines[1]);
  EXPECT_EQ(b["samples_per_s"].get<double>(), 5123);
  auto c = nlohmann::json::parse(lines[2]);
  EXPECT_EQ(c["step"], 300);
  EXPECT_EQ(c["epoch"], 2);
  EXPECT_TRUE(c["loss"].is_null());  // NaN has no JSON spelling
  EXPECT_EQ(c["eval/accuracy"].get<double>(), 0.875);
  EXPECT_GT(c["time"].get<double>(), 1.7e9);
  EXPECT_EQ(lines[0], R"({"step":100,"epoch":1,"time":1700000000.25,"loss":0.4123,"lr":0.001})");
}

TEST(MetricsLog, ReopeningAppendsAndEndsACutShortLine) {
  const std::string path = testing::temp_dir() + "/metrics.jsonl";
  {
    MetricsLog log(path);
    log.log(1, 0, 10.0, {{"loss", 1.0}});
  }
  {
    std::ofstream f(path, std::ios::app);
    f << R"({"step":2,"epoch":0,"ti)";  // a crash mid-line
  }
  {
    MetricsLog log(path);
    log.log(3, 0, 30.0, {{"loss", 0.5}});
  }
  auto lines = lines_of(path);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(nlohmann::json::parse(lines[0])["step"], 1);
  EXPECT_THROW(nlohmann::json::parse(lines[1]), nlohmann::json::exception);
  EXPECT_EQ(nlohmann::json::parse(lines[2])["step"], 3);
}

TEST(MetricsLog, ReservedOrRepeatedTagsAreRefused) {
  EXPECT_THROW(format_metrics_line(1, 0, 0, {{"step", 1}}), ValueError);
  EXPECT_THROW(format_metrics_line(1, 0, 0, {{"loss", 1}, {"loss", 2}}), ValueError);
}

}  // namespace
}  // namespace tandem
