// TensorBoard event files read back two ways: a C++ reader here (both CRCs of every record, Events
// parsed with the generated protobuf classes) and tests/reference/tensorboard_reader.py
// (pure-Python CRC-32C and framing, python3-protobuf with a descriptor written from TensorFlow's
// field numbers).
#include "core/metrics/tensorboard.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <regex>

#include "core/io/crc32c.h"
#include "core/io/safetensors.h"
#include "core/metrics/tensorboard_event.pb.h"
#include "tests/support/test_support.h"

namespace tandem {
namespace {

namespace fs = std::filesystem;

uint32_t le32(const std::string& b, size_t at) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i)
    v |= static_cast<uint32_t>(static_cast<unsigned char>(b[at + i])) << (8 * i);
  return v;
}

// Every record of a TFRecord file; fails the test on a bad CRC or a truncated record.
std::vector<std::string> read_records(const std::string& path) {
  const std::string b = read_file(path);
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < b.size()) {
    EXPECT_LE(pos + 12, b.size()) << "truncated header at " << pos;
    if (pos + 12 > b.size()) break;
    uint64_t len = 0;
    for (int i = 0; i < 8; ++i)
      len |= static_cast<uint64_t>(static_cast<unsigned char>(b[pos + i])) << (8 * i);
    EXPECT_EQ(le32(b, pos + 8), crc32c_mask(crc32c(b.data() + pos, 8))) << "length CRC at " << pos;
    EXPECT_LE(pos + 16 + len, b.size()) << "truncated record at " << pos;
    if (pos + 16 + len > b.size()) break;
    std::string data = b.substr(pos + 12, len);
    EXPECT_EQ(le32(b, pos + 12 + len), crc32c_mask(crc32c(data))) << "data CRC at " << pos;
    out.push_back(std::move(data));
    pos += 16 + len;
  }
  return out;
}

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

struct Scalar {
  std::string tag;
  float value;
  int64_t step;
};

// 3 tags over 5 steps, a 0.0 among them (proto3 drops zero fields outside a oneof).
std::vector<Scalar> scalars() {
  std::vector<Scalar> out;
  for (int64_t step = 0; step < 5; ++step) {
    out.push_back({"train/loss", 2.5f / static_cast<float>(step + 1), step * 10});
    out.push_back({"train/lr", step == 4 ? 0.0f : 0.1f * static_cast<float>(step), step * 10});
    out.push_back({"eval/accuracy", 0.5f + 0.1f * static_cast<float>(step), step * 10});
  }
  return out;
}

std::string write_events(const std::string& logdir, double* t0, double* t1) {
  *t0 = unix_now();
  TensorBoardWriter w(logdir, "node/7");
  for (const Scalar& s : scalars()) w.add_scalar(s.tag, s.value, s.step);
  w.flush();
  *t1 = unix_now();
  return w.path();
}

TEST(TensorBoard, EventFileHasTheStandardNameAndVerifiedRecords) {
  const std::string logdir = testing::temp_dir() + "/tb";
  double t0, t1;
  const std::string path = write_events(logdir, &t0, &t1);
  EXPECT_TRUE(std::regex_match(fs::path(path).filename().string(),
                               std::regex(R"(events\.out\.tfevents\.\d{10}\.node_7)")))
      << path;
  EXPECT_EQ(fs::path(path).parent_path(), fs::path(logdir));

  std::vector<std::string> records = read_records(path);
  const std::vector<Scalar> want = scalars();
  ASSERT_EQ(records.size(), 1 + want.size());
  tensorboard::Event first;
  ASSERT_TRUE(first.ParseFromString(records[0]));
  EXPECT_EQ(first.what_case(), tensorboard::Event::kFileVersion);
  EXPECT_EQ(first.file_version(), "brain.Event:2");
  EXPECT_GE(first.wall_time(), std::floor(t0));
  EXPECT_LE(first.wall_time(), t1);
  for (size_t i = 0; i < want.size(); ++i) {
    tensorboard::Event e;
    ASSERT_TRUE(e.ParseFromString(records[i + 1]));
    EXPECT_EQ(e.step(), want[i].step) << i;
    EXPECT_GE(e.wall_time(), t0);
    EXPECT_LE(e.wall_time(), t1);
    ASSERT_EQ(e.what_case(), tensorboard::Event::kSummary) << i;
    ASSERT_EQ(e.summary().value_size(), 1);
    const auto& v = e.summary().value(0);
    EXPECT_EQ(v.tag(), want[i].tag);
    EXPECT_EQ(v.value_case(), tensorboard::Summary::Value::kSimpleValue) << want[i].tag;
    EXPECT_EQ(v.simple_value(), want[i].value) << want[i].tag;
  }
}

TEST(TensorBoard, AnIndependentPythonReaderAgrees) {
  if (std::system("/usr/bin/python3 -c 'import google.protobuf' >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "python3-protobuf is not installed: independent reader skipped";
  const std::string logdir = testing::temp_dir();
  double t0, t1;
  const std::string path = write_events(logdir, &t0, &t1);
  const std::string out = logdir + "/events.json", err = logdir + "/err.txt";
  const std::string cmd = "/usr/bin/python3 " TANDEM_SOURCE_DIR
                          "/tests/reference/tensorboard_reader.py '" +
                          path + "' >" + out + " 2>" + err;
  ASSERT_EQ(std::system(cmd.c_str()), 0) << read_file(err);
  auto events = nlohmann::json::parse(read_file(out));
  const std::vector<Scalar> want = scalars();
  ASSERT_EQ(events.size(), 1 + want.size());
  EXPECT_EQ(events[0]["file_version"], "brain.Event:2");
  EXPECT_GE(events[0]["wall_time"].get<double>(), std::floor(t0));
  for (size_t i = 0; i < want.size(); ++i) {
    const auto& e = events[i + 1];
    EXPECT_EQ(e["step"].get<int64_t>(), want[i].step);
    EXPECT_FALSE(e.contains("file_version"));
    ASSERT_EQ(e["values"].size(), 1u);
    EXPECT_EQ(e["values"][0][0], want[i].tag);
    ASSERT_TRUE(e["values"][0][1].is_number()) << want[i].tag << " has no simple_value";
    EXPECT_EQ(static_cast<float>(e["values"][0][1].get<double>()), want[i].value) << want[i].tag;
  }
}

TEST(TensorBoard, TwoWritersInOneSecondGetDistinctFiles) {
  const std::string logdir = testing::temp_dir();
  TensorBoardWriter a(logdir, "host"), b(logdir, "host");
  EXPECT_NE(a.path(), b.path());
  a.add_scalar("x", 1, 1);
  b.add_scalar("x", 2, 1);
  a.flush();
  b.flush();
  EXPECT_EQ(read_records(a.path()).size(), 2u);
  EXPECT_EQ(read_records(b.path()).size(), 2u);
}

TEST(TensorBoard, FrameOfAnEmptyRecordIsSixteenBytesOfLengthAndCrcs) {
  const std::string f = tfrecord_frame("");
  ASSERT_EQ(f.size(), 16u);
  EXPECT_EQ(f.substr(0, 8), std::string(8, '\0'));
  // Values from tests/reference/tensorboard_reader.py: crc32c(8 zero bytes) = 0x8c28b28a.
  EXPECT_EQ(le32(f, 8), 0x07980329u);
  EXPECT_EQ(le32(f, 12), 0xA282EAD8u);  // the CRC of no bytes is 0; masked, the constant
}

}  // namespace
}  // namespace tandem
