// Checkpoints: bit-identical round trips, retention, and corruption found on load with an error
// that names the file and the tensor. PyTorch (via tests/reference/safetensors_io.py) reads the
// files and a pure-Python CRC-32C agrees with the stored checksums.
#include "core/io/checkpoint.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/io/crc32c.h"
#include "core/io/safetensors.h"
#include "core/random/philox.h"
#include "tests/support/test_support.h"

namespace tandem {
namespace {

namespace fs = std::filesystem;

NamedTensors make_model(uint64_t seed) {
  Generator g(seed);
  NamedTensors m;
  m.emplace_back("fc.weight", randn({16, 8}, g));
  m.emplace_back("fc.bias", randn({16}, g));
  m.emplace_back("bn.running_var", rand({8}, g, DType::kF64));
  m.emplace_back("bn.num_batches_tracked", scalar_tensor(123456789012.0, DType::kI64));
  m.emplace_back("emb.half", randn({4, 4}, g).to(DType::kBF16));
  m.emplace_back("proj.weight", randn({6, 5}, g).t());  // not contiguous
  m.emplace_back("empty", empty({0, 3}));
  return m;
}

NamedTensors make_optimizer(uint64_t seed) {
  Generator g(seed + 1000);
  NamedTensors o;
  o.emplace_back("step", scalar_tensor(42, DType::kI64));
  o.emplace_back("fc.weight.step", scalar_tensor(41, DType::kI64));
  o.emplace_back("fc.weight.exp_avg", randn({16, 8}, g));
  o.emplace_back("fc.weight.exp_avg_sq", rand({16, 8}, g));
  return o;
}

TrainerState make_state(int64_t step) {
  TrainerState s;
  s.step = step;
  s.epoch = 3;
  s.step_in_epoch = 17;
  s.rng["data"] = {1234, 2, 987654321};
  s.rng["dropout"] = {1234, 3, 18446744073709551615ull};  // the full u64 range survives JSON
  s.config_digest = "sha256:0123abcd";
  s.world_size = 4;
  s.elapsed_s = 3600.25;
  s.extra = {{"best_accuracy", 0.9125}, {"schedule", {{"warmup_done", true}}}};
  return s;
}

std::string bytes_of(const Tensor& t) {
  Tensor c = t.contiguous();
  return std::string(static_cast<const char*>(c.raw_data()), c.numel() * dtype_size(c.dtype()));
}

void expect_identical(const NamedTensors& got, const NamedTensors& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(got[i].first, want[i].first);
    EXPECT_EQ(got[i].second.dtype(), want[i].second.dtype()) << want[i].first;
    EXPECT_EQ(got[i].second.shape(), want[i].second.shape()) << want[i].first;
    EXPECT_EQ(bytes_of(got[i].second), bytes_of(want[i].second)) << want[i].first;
  }
}

// Byte range of a tensor's data inside a safetensors file.
std::pair<uint64_t, uint64_t> data_range(const std::string& file_bytes, const std::string& name) {
  uint64_t n = 0;
  std::memcpy(&n, file_bytes.data(), 8);
  auto header = nlohmann::json::parse(file_bytes.substr(8, n));
  auto off = header.at(name).at("data_offsets");
  return {8 + n + off[0].get<uint64_t>(), 8 + n + off[1].get<uint64_t>()};
}

void overwrite(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << bytes;
}

std::string load_error(const std::string& path) {
  try {
    load_checkpoint(path);
  } catch (const IoError& e) {
    return e.what();
  }
  ADD_FAILURE() << "load_checkpoint(" << path << ") did not throw an IoError";
  return "";
}

std::vector<std::string> entries(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

TEST(Checkpoint, RoundTripIsBitIdenticalAndKeepsTheTrainerState) {
  const std::string dir = testing::temp_dir() + "/ckpt";
  NamedTensors model = make_model(1), opt = make_optimizer(1);
  const double before =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  std::string path = save_checkpoint(dir, model, opt, make_state(100));
  EXPECT_EQ(path, dir + "/step-00000100");
  EXPECT_EQ(entries(dir), (std::vector<std::string>{"step-00000100"}));
  EXPECT_EQ(entries(path), (std::vector<std::string>{"model.safetensors", "optimizer.safetensors",
                                                     "trainer_state.json"}));

  LoadedCheckpoint c = load_checkpoint(path);
  EXPECT_EQ(c.path, path);
  expect_identical(c.model, model);
  expect_identical(c.optimizer, opt);
  TrainerState want = make_state(100);
  EXPECT_EQ(c.state.step, 100);
  EXPECT_EQ(c.state.epoch, want.epoch);
  EXPECT_EQ(c.state.step_in_epoch, want.step_in_epoch);
  EXPECT_EQ(c.state.rng, want.rng);
  EXPECT_EQ(c.state.config_digest, want.config_digest);
  EXPECT_EQ(c.state.world_size, 4);
  EXPECT_EQ(c.state.elapsed_s, 3600.25);
  EXPECT_EQ(c.state.extra, want.extra);
  EXPECT_GE(c.state.saved_at, before);
  EXPECT_LE(c.state.saved_at, before + 60);

  // The per-tensor CRCs in the metadata are the CRC-32C of each tensor's bytes.
  SafetensorsFile st = safetensors_load(path + "/model.safetensors");
  EXPECT_EQ(st.metadata.at("format"), "tandem-checkpoint-1");
  char hex[9];
  std::snprintf(hex, sizeof hex, "%08x", crc32c(bytes_of(model[0].second)));
  EXPECT_EQ(st.metadata.at("crc32c.fc.weight"), hex);
}

TEST(Checkpoint, KeepTwoLeavesOnlyTheTwoNewest) {
  const std::string dir = testing::temp_dir();
  for (int64_t step : {100, 200, 300, 400})
    save_checkpoint(dir, make_model(step), make_optimizer(step), make_state(step), /*keep=*/2);
  EXPECT_EQ(entries(dir), (std::vector<std::string>{"step-00000300", "step-00000400"}));
  expect_identical(load_checkpoint(dir + "/step-00000300").model, make_model(300));
  auto list = list_checkpoints(dir);
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0].first, 300);
  EXPECT_EQ(list[1].first, 400);
}

TEST(Checkpoint, KeepNeverRemovesTheCheckpointJustWritten) {
  const std::string dir = testing::temp_dir();
  save_checkpoint(dir, make_model(1), make_optimizer(1), make_state(500), 1);
  save_checkpoint(dir, make_model(1), make_optimizer(1), make_state(50), 1);  // an older step
  EXPECT_EQ(entries(dir), (std::vector<std::string>{"step-00000050"}));
}

TEST(Checkpoint, SavingTheSameStepAgainReplacesItWhole) {
  const std::string dir = testing::temp_dir();
  save_checkpoint(dir, make_model(1), make_optimizer(1), make_state(100));
  save_checkpoint(dir, make_model(2), make_optimizer(2), make_state(100));
  EXPECT_EQ(entries(dir), (std::vector<std::string>{"step-00000100"}));
  LoadedCheckpoint c = load_checkpoint(dir + "/step-00000100");
  expect_identical(c.model, make_model(2));
  expect_identical(c.optimizer, make_optimizer(2));
}

TEST(Checkpoint, AFlippedBitInModelDataNamesTheTensorAndTheCrc) {
  const std::string dir = testing::temp_dir();
  std::string path = save_checkpoint(dir, make_model(1), make_optimizer(1), make_state(100));
  const std::string file = path + "/model.safetensors";
  std::string bytes = read_file(file);
  auto [begin, end] = data_range(bytes, "fc.weight");
  ASSERT_GT(end, begin + 10);
  bytes[begin + 10] ^= 0x04;
  overwrite(file, bytes);
  std::string err = load_error(path);
  EXPECT_NE(err.find(file), std::string::npos) << err;
  EXPECT_NE(err.find("tensor 'fc.weight' fails its CRC32C check"), std::string::npos) << err;
}

TEST(Checkpoint, ATruncatedOptimizerFileIsAnIoErrorNamingTheFile) {
  const std::string dir = testing::temp_dir();
  std::string path = save_checkpoint(dir, make_model(1), make_optimizer(1), make_state(100));
  const std::string file = path + "/optimizer.safetensors";
  std::string bytes = read_file(file);
  overwrite(file, bytes.substr(0, bytes.size() - 100));
  std::string err = load_error(path);
  EXPECT_EQ(err.rfind(file + ":", 0), 0u) << err;
}

TEST(Checkpoint, AMissingTrainerStateIsAnIoError) {
  const std::string dir = testing::temp_dir();
  std::string path = save_checkpoint(dir, make_model(1), make_optimizer(1), make_state(100));
  fs::remove(path + "/trainer_state.json");
  std::string err = load_error(path);
  EXPECT_NE(err.find(path + "/trainer_state.json: missing"), std::string::npos) << err;
}

TEST(Checkpoint, AnEditedHeaderFailsTheWholeFileCrc) {
  // F32 -> I32 keeps every size and every tensor CRC valid: only the file's CRC can tell.
  const std::string dir = testing::temp_dir();
  std::string path = save_checkpoint(dir, make_model(1), make_optimizer(1), make_state(100));
  const std::string file = path + "/model.safetensors";
  std::string bytes = read_file(file);
  const std::string from = "\"fc.bias\":{\"dtype\":\"F32\"";
  size_t at = bytes.find(from);
  ASSERT_NE(at, std::string::npos);
  bytes.replace(at, from.size(), "\"fc.bias\":{\"dtype\":\"I32\"");
  overwrite(file, bytes);
  std::string err = load_error(path);
  EXPECT_NE(err.find(file + ": the file's CRC32C is"), std::string::npos) << err;
}

TEST(Checkpoint, BadTrainerStateFieldsAreNamed) {
  const std::string dir = testing::temp_dir();
  std::string path = save_checkpoint(dir, make_model(1), make_optimizer(1), make_state(100));
  const std::string file = path + "/trainer_state.json";
  auto j = nlohmann::json::parse(read_file(file));
  j["epoch"] = "three";
  overwrite(file, j.dump());
  EXPECT_NE(load_error(path).find(file + ": field 'epoch' must be a non-negative integer"),
            std::string::npos);
  j.erase("epoch");
  overwrite(file, j.dump());
  EXPECT_NE(load_error(path).find(file + ": field 'epoch' is missing"), std::string::npos);
  overwrite(file, "{\"step\": 100,");
  EXPECT_NE(load_error(path).find(file + ": not valid JSON"), std::string::npos);
}

TEST(Checkpoint, FindLatestSkipsACorruptedNewestWithAWarning) {
  const std::string dir = testing::temp_dir();
  save_checkpoint(dir, make_model(1), make_optimizer(1), make_state(100));
  std::string newest = save_checkpoint(dir, make_model(2), make_optimizer(2), make_state(200));
  std::vector<std::string> warnings;
  EXPECT_EQ(find_latest_checkpoint(dir, &warnings), newest);
  EXPECT_TRUE(warnings.empty());

  std::string bytes = read_file(newest + "/model.safetensors");
  auto [begin, end] = data_range(bytes, "fc.bias");
  bytes[begin] ^= 0x01;
  overwrite(newest + "/model.safetensors", bytes);
  EXPECT_EQ(find_latest_checkpoint(dir, &warnings), dir + "/step-00000100");
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("step-00000200"), std::string::npos) << warnings[0];
  EXPECT_NE(warnings[0].find("'fc.bias' fails its CRC32C check"), std::string::npos) << warnings[0];
}

// Printing a bad field used to recurse through it: a "step" nested 200,000 deep crashed the
// loader, and with it the search for an older checkpoint that would load.
TEST(Checkpoint, DeeplyNestedTrainerStateIsAnIoErrorAndFindLatestSkipsIt) {
  const std::string dir = testing::temp_dir();
  save_checkpoint(dir, make_model(1), make_optimizer(1), make_state(100));
  std::string newest = save_checkpoint(dir, make_model(2), make_optimizer(2), make_state(200));
  const int depth = 200000;
  overwrite(newest + "/trainer_state.json",
            "{\"format\": \"tandem-checkpoint-1\", \"step\": " + std::string(depth, '[') +
                std::string(depth, ']') + "}");
  EXPECT_EQ(load_error(newest),
            newest + "/trainer_state.json: not valid JSON (nesting deeper than 64 levels)");
  std::vector<std::string> warnings;
  EXPECT_EQ(find_latest_checkpoint(dir, &warnings), dir + "/step-00000100");
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("nesting deeper than 64 levels"), std::string::npos) << warnings[0];
}

// A changed value that is still well-formed (epoch 3 -> 4) passed every check before the state
// file had a checksum of its own.
TEST(Checkpoint, TrainerStateChecksumCatchesAnEditedValue) {
  const std::string dir = testing::temp_dir();
  std::string path = save_checkpoint(dir, make_model(1), make_optimizer(1), make_state(100));
  const std::string file = path + "/trainer_state.json";
  std::string text = read_file(file);
  const size_t at = text.find("\"epoch\": 3,");
  ASSERT_NE(at, std::string::npos) << text;
  text[at + 9] = '4';
  overwrite(file, text);
  const std::string err = load_error(path);
  EXPECT_EQ(err.rfind(file + ": its CRC32C is ", 0), 0) << err;
  EXPECT_NE(err.find(" but it records "), std::string::npos) << err;
}

// Checkpoints written before trainer_state.json carried state_crc32c still resume: their
// safetensors files are covered by the CRCs the state file records, as they were.
TEST(Checkpoint, TrainerStateWithoutAChecksumStillLoads) {
  const std::string dir = testing::temp_dir();
  std::string path = save_checkpoint(dir, make_model(1), make_optimizer(1), make_state(100));
  const std::string file = path + "/trainer_state.json";
  auto j = nlohmann::ordered_json::parse(read_file(file));
  ASSERT_TRUE(j.contains("state_crc32c")) << j.dump();
  j.erase("state_crc32c");
  overwrite(file, j.dump(2) + "\n");
  LoadedCheckpoint c = load_checkpoint(path);
  EXPECT_EQ(c.state.step, 100);
  EXPECT_EQ(c.state.epoch, 3);
  EXPECT_EQ(c.state.rng.at("dropout")[2], 18446744073709551615ull);
}

TEST(Checkpoint, FindLatestOfAnEmptyOrMissingDirectoryIsNone) {
  const std::string dir = testing::temp_dir();
  EXPECT_FALSE(find_latest_checkpoint(dir).has_value());
  EXPECT_FALSE(find_latest_checkpoint(dir + "/nope").has_value());
  fs::create_directories(dir + "/step-00000007");  // no files: skipped with a warning
  std::vector<std::string> warnings;
  EXPECT_FALSE(find_latest_checkpoint(dir, &warnings).has_value());
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("missing"), std::string::npos) << warnings[0];
}

TEST(Checkpoint, SaveRemovesStaleTempDirectoriesButNotALiveProcesssOnes) {
  const std::string dir = testing::temp_dir();
  fs::create_directories(dir + "/.tmp-step-00000050-999999999");  // no such pid
  fs::create_directories(dir + "/.tmp-step-00000060-1");          // pid 1 is alive
  save_checkpoint(dir, make_model(1), make_optimizer(1), make_state(100), 3);
  EXPECT_EQ(entries(dir), (std::vector<std::string>{".tmp-step-00000060-1", "step-00000100"}));
}

TEST(Checkpoint, TensorsOffTheCpuOrUndefinedAreRefusedBeforeAnythingIsWritten) {
  const std::string dir = testing::temp_dir();
  NamedTensors bad = make_model(1);
  bad.emplace_back("ghost", Tensor());
  EXPECT_THROW(save_checkpoint(dir, bad, make_optimizer(1), make_state(100)), ValueError);
  EXPECT_TRUE(entries(dir).empty());
}

TEST(Checkpoint, PyTorchReadsTheFilesAndAnIndependentCrcAgrees) {
  TANDEM_SKIP_WITHOUT_TORCH();
  const std::string dir = testing::temp_dir();
  NamedTensors model = make_model(3), opt = make_optimizer(3);
  std::string path = save_checkpoint(dir, model, opt, make_state(100));
  const std::string script = dir + "/check.py", out = dir + "/merged.safetensors";
  {
    std::ofstream f(script);
    f << "import json, struct, sys\n"
         "sys.path.insert(0, '" TANDEM_SOURCE_DIR
         "/tests/reference')\n"
         "import safetensors_io, tensorboard_reader\n"
         "ckpt, out = sys.argv[1], sys.argv[2]\n"
         "state = json.load(open(ckpt + '/trainer_state.json'))\n"
         "merged = {}\n"
         "for fname, prefix in (('model.safetensors', 'model/'), ('optimizer.safetensors', "
         "'optimizer/')):\n"
         "    path = ckpt + '/' + fname\n"
         "    data = open(path, 'rb').read()\n"
         "    assert state['files'][fname]['crc32c'] == '%08x' % tensorboard_reader.crc32c(data), "
         "fname\n"
         "    (n,) = struct.unpack('<Q', data[:8])\n"
         "    header = json.loads(data[8:8 + n])\n"
         "    md = safetensors_io.metadata(path)\n"
         "    assert md['format'] == 'tandem-checkpoint-1', md\n"
         "    for name, t in safetensors_io.load(path).items():\n"
         "        b, e = header[name]['data_offsets']\n"
         "        crc = '%08x' % tensorboard_reader.crc32c(data[8 + n + b:8 + n + e])\n"
         "        assert md['crc32c.' + name] == crc, (name, md['crc32c.' + name], crc)\n"
         "        merged[prefix + name] = t\n"
         "safetensors_io.save(out, merged)\n";
  }
  std::string cmd =
      "/usr/bin/python3 " + script + " " + path + " " + out + " 2>" + dir + "/err.txt";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << read_file(dir + "/err.txt");
  SafetensorsFile merged = safetensors_load(out);
  NamedTensors got_model, got_opt;
  for (const auto& [name, t] : merged.tensors) {
    if (name.rfind("model/", 0) == 0) got_model.emplace_back(name.substr(6), t);
    if (name.rfind("optimizer/", 0) == 0) got_opt.emplace_back(name.substr(10), t);
  }
  expect_identical(got_model, model);
  expect_identical(got_opt, opt);
}

}  // namespace
}  // namespace tandem
