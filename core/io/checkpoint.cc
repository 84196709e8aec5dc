// Checkpoint directories: write into a private .tmp directory, fsync, publish with one rename.
// Verification on load is layered so the error names the most specific culprit: the safetensors
// parser catches format damage, the per-tensor CRC-32C names the tensor, and the whole-file CRC in
// trainer_state.json catches the rest (header or metadata edits).
#include "core/io/checkpoint.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <string_view>

#include "core/base/error.h"
#include "core/io/bounded_json.h"
#include "core/io/crc32c.h"
#include "core/io/file_io.h"
#include "core/io/safetensors.h"

namespace tandem {
namespace fs = std::filesystem;
namespace {

constexpr const char* kModelFile = "model.safetensors";
constexpr const char* kOptimizerFile = "optimizer.safetensors";
constexpr const char* kStateFile = "trainer_state.json";
constexpr const char* kCrcPrefix = "crc32c.";
// trainer_state.json's own checksum: the CRC-32C of the file as written with this field's value
// "00000000"; written last, so it is the last "state_crc32c" of the file.
constexpr const char* kStateCrcKey = "state_crc32c";
// trainer_state.json holds a few counters and RNG states: far below this.
constexpr uint64_t kMaxStateBytes = uint64_t{16} << 20;

std::string hex32(uint32_t v) {
  char buf[9];
  std::snprintf(buf, sizeof buf, "%08x", v);
  return buf;
}

bool parse_hex32(const std::string& s, uint32_t* out) {
  if (s.size() != 8) return false;
  uint32_t v = 0;
  for (char ch : s) {
    int d = (ch >= '0' && ch <= '9')   ? ch - '0'
            : (ch >= 'a' && ch <= 'f') ? ch - 'a' + 10
            : (ch >= 'A' && ch <= 'F') ? ch - 'A' + 10
                                       : -1;
    if (d < 0) return false;
    v = (v << 4) | static_cast<uint32_t>(d);
  }
  *out = v;
  return true;
}

bool all_digits(const std::string& s) {
  return !s.empty() &&
         std::all_of(s.begin(), s.end(), [](unsigned char c) { return c >= '0' && c <= '9'; });
}

uint32_t tensor_crc(const Tensor& t) {
  Tensor c = t.contiguous().to(Device::cpu());
  return crc32c(c.raw_data(), static_cast<size_t>(c.numel()) * dtype_size(c.dtype()));
}

struct FileRecord {
  uint64_t bytes = 0;
  uint32_t crc = 0;
};

// A checkpoint's safetensors file, streamed (SafetensorsWriter), with each tensor's CRC-32C in
// __metadata__; loads go through safetensors_parse, so the tests' round trips and PyTorch's reader
// check that the two agree.
FileRecord write_tensor_file(const std::string& path, const NamedTensors& tensors,
                             const std::string& what) {
  std::vector<std::pair<std::string, std::string>> metadata{{"format", kCheckpointFormat}};
  NamedTensors host;  // contiguous CPU tensors, so the CRCs and the writer read the same bytes
  for (const auto& [name, t] : tensors) {
    TANDEM_CHECK(t.defined(), what, ": tensor '", name, "' is undefined");
    host.emplace_back(name, t.contiguous().to(Device::cpu()));
    metadata.emplace_back(kCrcPrefix + name, hex32(tensor_crc(host.back().second)));
  }
  const SafetensorsWriter writer(host, metadata, what);
  const std::vector<std::string_view> pieces = writer.pieces();
  write_file_synced(path, pieces);
  FileRecord record;
  for (std::string_view piece : pieces) {
    record.crc = crc32c_extend(record.crc, piece.data(), piece.size());
    record.bytes += piece.size();
  }
  return record;
}

// Moves the finished tmp directory to final. An existing final (the same step saved again) is
// swapped out atomically where the file system supports RENAME_EXCHANGE, else moved aside first.
void publish(const std::string& tmp, const std::string& final_path, const std::string& dir,
             const std::string& aside) {
  if (::rename(tmp.c_str(), final_path.c_str()) == 0) return;
  int err = errno;
  TANDEM_CHECK_T(IoError, err == ENOTEMPTY || err == EEXIST, tmp, ": cannot rename to ", final_path,
                 " (", std::strerror(err), ")");
  if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, final_path.c_str(), RENAME_EXCHANGE) == 0) {
    std::error_code ec;
    fs::remove_all(tmp, ec);  // now holds the replaced checkpoint; a leftover is removed later
    return;
  }
  TANDEM_CHECK_T(IoError, ::rename(final_path.c_str(), aside.c_str()) == 0, final_path,
                 ": cannot move the existing checkpoint aside (", std::strerror(errno), ")");
  TANDEM_CHECK_T(IoError, ::rename(tmp.c_str(), final_path.c_str()) == 0, tmp,
                 ": cannot rename to ", final_path, " (", std::strerror(errno), ")");
  std::error_code ec;
  fs::remove_all(aside, ec);
}

// A .tmp-* directory is stale unless it ends in the pid of another live process on this host.
bool tmp_is_stale(const std::string& name) {
  size_t dash = name.rfind('-');
  if (dash == std::string::npos || dash + 1 == name.size()) return true;
  const std::string digits = name.substr(dash + 1);
  if (digits.size() > 9 || !all_digits(digits)) return true;
  pid_t pid = static_cast<pid_t>(std::stol(digits));
  if (pid == ::getpid()) return true;
  return ::kill(pid, 0) != 0 && errno == ESRCH;
}

void prune(const std::string& dir, const std::string& keep_path, int keep) {
  const std::string pid = std::to_string(::getpid());
  if (keep > 0) {
    auto list = list_checkpoints(dir);
    int others_to_keep = keep - 1;  // the checkpoint just written counts as one
    for (auto it = list.rbegin(); it != list.rend(); ++it) {
      if (it->second == keep_path) continue;
      if (others_to_keep > 0) {
        --others_to_keep;
        continue;
      }
      // Renamed first: a crash during remove_all then leaves only a .tmp-* directory.
      std::string doomed =
          dir + "/.tmp-delete-" + fs::path(it->second).filename().string() + "-" + pid;
      TANDEM_CHECK_T(IoError, ::rename(it->second.c_str(), doomed.c_str()) == 0, "checkpoint ",
                     keep_path, " was saved, but removing the old checkpoint ", it->second,
                     " failed (", std::strerror(errno), ")");
      std::error_code ec;
      fs::remove_all(doomed, ec);  // a leftover .tmp-* is removed by the next save
    }
  }
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(".tmp-", 0) == 0 && entry.is_directory(ec) && tmp_is_stale(name))
      fs::remove_all(entry.path(), ec);
  }
}

// ---- trainer_state.json

nlohmann::ordered_json state_to_json(const TrainerState& s, const nlohmann::ordered_json& files) {
  nlohmann::ordered_json j;
  j["format"] = kCheckpointFormat;
  j["step"] = s.step;
  j["epoch"] = s.epoch;
  j["step_in_epoch"] = s.step_in_epoch;
  j["rng"] = nlohmann::ordered_json::object();
  for (const auto& [name, words] : s.rng) j["rng"][name] = words;
  j["config_digest"] = s.config_digest;
  j["world_size"] = s.world_size;
  j["elapsed_s"] = s.elapsed_s;
  j["saved_at"] = s.saved_at;
  j["files"] = files;
  j["extra"] = s.extra;
  return j;
}

class StateReader {
 public:
  StateReader(const nlohmann::json& j, const std::string& what) : j_(j), what_(what) {}

  const nlohmann::json& field(const char* key) const {
    TANDEM_CHECK_T(IoError, j_.contains(key), what_, ": field '", key, "' is missing");
    return j_[key];
  }
  int64_t count(const char* key) const {
    const auto& v = field(key);
    TANDEM_CHECK_T(IoError, v.is_number_integer() && v.get<int64_t>() >= 0, what_, ": field '", key,
                   "' must be a non-negative integer, got ", json_excerpt(v));
    return v.get<int64_t>();
  }
  double number(const char* key) const {
    const auto& v = field(key);
    TANDEM_CHECK_T(IoError, v.is_number(), what_, ": field '", key, "' must be a number, got ",
                   json_excerpt(v));
    return v.get<double>();
  }
  std::string string(const char* key) const {
    const auto& v = field(key);
    TANDEM_CHECK_T(IoError, v.is_string(), what_, ": field '", key, "' must be a string, got ",
                   json_excerpt(v));
    return v.get<std::string>();
  }
  FileRecord file(const char* name) const {
    const auto& files = field("files");
    TANDEM_CHECK_T(IoError, files.is_object() && files.contains(name), what_,
                   ": 'files' has no entry for ", name);
    const auto& f = files[name];
    FileRecord r;
    TANDEM_CHECK_T(IoError,
                   f.is_object() && f.contains("bytes") && f["bytes"].is_number_unsigned() &&
                       f.contains("crc32c") && f["crc32c"].is_string() &&
                       parse_hex32(f["crc32c"].get<std::string>(), &r.crc),
                   what_, ": files.", name,
                   " must be {\"bytes\": N, \"crc32c\": \"8 hex digits\"}, got ", json_excerpt(f));
    r.bytes = f["bytes"].get<uint64_t>();
    return r;
  }

 private:
  const nlohmann::json& j_;
  const std::string& what_;
};

TrainerState state_from_json(const nlohmann::json& j, const std::string& what) {
  TANDEM_CHECK_T(IoError, j.is_object(), what, ": expected a JSON object");
  StateReader r(j, what);
  std::string format = r.string("format");
  TANDEM_CHECK_T(IoError, format == kCheckpointFormat, what, ": format is '", name_excerpt(format),
                 "', this build reads '", kCheckpointFormat, "'");
  TrainerState s;
  s.step = r.count("step");
  s.epoch = r.count("epoch");
  s.step_in_epoch = r.count("step_in_epoch");
  const auto& rng = r.field("rng");
  TANDEM_CHECK_T(IoError, rng.is_object(), what, ": field 'rng' must be an object of number lists");
  for (auto it = rng.begin(); it != rng.end(); ++it) {
    TANDEM_CHECK_T(IoError, it->is_array(), what, ": rng.", name_excerpt(it.key()),
                   " must be a list of numbers");
    std::vector<uint64_t> words;
    for (const auto& w : *it) {
      TANDEM_CHECK_T(IoError, w.is_number_unsigned(), what, ": rng.", name_excerpt(it.key()),
                     " must hold non-negative integers, got ", json_excerpt(w));
      words.push_back(w.get<uint64_t>());
    }
    s.rng[it.key()] = std::move(words);
  }
  s.config_digest = r.string("config_digest");
  s.world_size = r.count("world_size");
  TANDEM_CHECK_T(IoError, s.world_size >= 1, what, ": field 'world_size' must be at least 1");
  s.elapsed_s = r.number("elapsed_s");
  s.saved_at = r.number("saved_at");
  s.extra = r.field("extra");
  return s;
}

// The text of trainer_state.json with its checksum as the last field.
std::string state_text(nlohmann::ordered_json j) {
  j[kStateCrcKey] = "00000000";
  std::string text = j.dump(2) + "\n";
  const size_t at = text.rfind("\"00000000\"");
  TANDEM_ASSERT(at != std::string::npos, "state_crc32c placeholder not written");
  text.replace(at + 1, 8, hex32(crc32c(text)));
  return text;
}

// Checks trainer_state.json's text against its own checksum. One written before the checksum
// existed has no state_crc32c and passes: its fields were checked one by one, and the CRCs it
// records still cover the safetensors files.
void check_state_crc(const std::string& text, const nlohmann::json& j, const std::string& what) {
  if (!j.contains(kStateCrcKey)) return;
  const auto& v = j[kStateCrcKey];
  uint32_t stored = 0;
  TANDEM_CHECK_T(IoError, v.is_string() && parse_hex32(v.get<std::string>(), &stored), what,
                 ": field '", kStateCrcKey, "' must be 8 hex digits, got ", json_excerpt(v));
  const size_t key = text.rfind(std::string("\"") + kStateCrcKey + "\"");
  const size_t at = key == std::string::npos
                        ? std::string::npos
                        : text.find("\"" + v.get<std::string>() + "\"", key + 2);
  TANDEM_CHECK_T(IoError, at != std::string::npos, what, ": cannot find the value of '",
                 kStateCrcKey, "' in the text");
  std::string zeroed = text;
  zeroed.replace(at + 1, 8, "00000000");
  const uint32_t computed = crc32c(zeroed);
  TANDEM_CHECK_T(IoError, computed == stored, what, ": its CRC32C is ", hex32(computed),
                 " but it records ", hex32(stored),
                 " in state_crc32c (the file was edited or corrupted)");
}

// Reads one safetensors file of a checkpoint and checks it against its CRCs.
NamedTensors load_verified(const std::string& path, const FileRecord& record) {
  const std::string bytes = read_file(path, "a safetensors file");
  SafetensorsFile st = safetensors_parse(bytes, path);
  auto fmt = st.metadata.find("format");
  TANDEM_CHECK_T(IoError, fmt != st.metadata.end() && fmt->second == kCheckpointFormat, path,
                 ": __metadata__ has no \"format\": \"", kCheckpointFormat,
                 "\"; not written by save_checkpoint");
  for (const auto& [name, t] : st.tensors) {
    auto it = st.metadata.find(kCrcPrefix + name);
    TANDEM_CHECK_T(IoError, it != st.metadata.end(), path, ": tensor '", name,
                   "' has no CRC32C in __metadata__");
    uint32_t stored = 0;
    TANDEM_CHECK_T(IoError, parse_hex32(it->second, &stored), path, ": tensor '", name,
                   "' has a malformed CRC32C '", it->second, "' in __metadata__");
    uint32_t computed = tensor_crc(t);
    TANDEM_CHECK_T(IoError, stored == computed, path, ": tensor '", name,
                   "' fails its CRC32C check (stored ", hex32(stored), ", computed ",
                   hex32(computed), "): the file is corrupted");
  }
  for (const auto& [key, value] : st.metadata) {
    if (key.rfind(kCrcPrefix, 0) != 0) continue;
    std::string name = key.substr(std::strlen(kCrcPrefix));
    TANDEM_CHECK_T(IoError, st.find(name) != nullptr, path, ": tensor '", name,
                   "' has a CRC32C in __metadata__ but is missing from the file");
  }
  TANDEM_CHECK_T(IoError, bytes.size() == record.bytes, path, ": ", bytes.size(),
                 " bytes, but trainer_state.json recorded ", record.bytes);
  uint32_t whole = crc32c(bytes);
  TANDEM_CHECK_T(IoError, whole == record.crc, path, ": the file's CRC32C is ", hex32(whole),
                 " but trainer_state.json recorded ", hex32(record.crc),
                 " (the file was modified or corrupted)");
  return std::move(st.tensors);
}

bool parse_step_name(const std::string& name, int64_t* step) {
  if (name.rfind("step-", 0) != 0) return false;
  std::string digits = name.substr(5);
  if (digits.size() > 18 || !all_digits(digits)) return false;
  *step = std::stoll(digits);
  return true;
}

}  // namespace

std::string checkpoint_dir_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step-%08lld", static_cast<long long>(step));
  return buf;
}

namespace {

// Writes the three files into <dir>/.tmp-<name>-<pid>, fsyncs them and publishes the directory
// as <dir>/<name> with one rename. Returns <dir>/<name>.
std::string write_checkpoint_as(const std::string& dir, const std::string& name,
                                const NamedTensors& model, const NamedTensors& optimizer,
                                const TrainerState& state) {
  TANDEM_CHECK(state.step >= 0, "save_checkpoint: step must be non-negative, got ", state.step);
  std::error_code ec;
  fs::create_directories(dir, ec);
  TANDEM_CHECK_T(IoError, fs::is_directory(dir), dir, ": cannot create checkpoint directory (",
                 ec ? ec.message() : "not a directory", ")");
  const std::string pid = std::to_string(::getpid());
  const std::string final_path = dir + "/" + name;
  const std::string tmp = dir + "/.tmp-" + name + "-" + pid;
  fs::remove_all(tmp, ec);  // left by an earlier failed save of this process
  TANDEM_CHECK_T(IoError, ::mkdir(tmp.c_str(), 0755) == 0, tmp, ": cannot create (",
                 std::strerror(errno), ")");
  try {
    nlohmann::ordered_json files = nlohmann::ordered_json::object();
    for (const auto& [file, tensors] :
         {std::pair{kModelFile, &model}, std::pair{kOptimizerFile, &optimizer}}) {
      FileRecord r = write_tensor_file(tmp + "/" + file, *tensors, dir + "/" + name + "/" + file);
      files[file] = {{"bytes", r.bytes}, {"crc32c", hex32(r.crc)}};
    }
    TrainerState s = state;
    s.saved_at =
        std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    write_file_synced(tmp + "/" + kStateFile, {state_text(state_to_json(s, files))});
    fsync_dir(tmp);
    publish(tmp, final_path, dir, dir + "/.tmp-replaced-" + name + "-" + pid);
    fsync_dir(dir);
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
  return final_path;
}

}  // namespace

std::string save_checkpoint(const std::string& dir, const NamedTensors& model,
                            const NamedTensors& optimizer, const TrainerState& state, int keep) {
  const std::string final_path =
      write_checkpoint_as(dir, checkpoint_dir_name(state.step), model, optimizer, state);
  prune(dir, final_path, keep);
  return final_path;
}

std::string save_named_checkpoint(const std::string& dir, const std::string& name,
                                  const NamedTensors& model, const NamedTensors& optimizer,
                                  const TrainerState& state) {
  TANDEM_CHECK(!name.empty() && name.rfind("step-", 0) != 0 && name[0] != '.' &&
                   name.find('/') == std::string::npos,
               "save_named_checkpoint: '", name, "' is not a plain name outside step-*");
  return write_checkpoint_as(dir, name, model, optimizer, state);
}

LoadedCheckpoint load_checkpoint(const std::string& path) {
  TANDEM_CHECK_T(IoError, fs::is_directory(path), path, ": not a checkpoint directory (",
                 fs::exists(path) ? "not a directory" : "does not exist", ")");
  for (const char* f : {kModelFile, kOptimizerFile, kStateFile})
    TANDEM_CHECK_T(IoError, fs::is_regular_file(path + "/" + f), path, "/", f,
                   ": missing; the checkpoint is incomplete or was not written by tandem");
  const std::string state_path = path + "/" + kStateFile;
  const std::string text = read_file(state_path, "a trainer_state.json", kMaxStateBytes);
  nlohmann::json j;
  std::string problem;
  TANDEM_CHECK_T(IoError, parse_json_bounded(text, &j, &problem), state_path, ": not valid JSON (",
                 problem, ")");
  LoadedCheckpoint out;
  out.path = path;
  // Fields first, so that a malformed one is named; then the checksum catches well-formed edits.
  out.state = state_from_json(j, state_path);
  check_state_crc(text, j, state_path);
  int64_t dir_step = 0;
  if (parse_step_name(fs::path(path).filename().string(), &dir_step))
    TANDEM_CHECK_T(IoError, dir_step == out.state.step, state_path, ": step is ", out.state.step,
                   " but the directory is named for step ", dir_step);
  StateReader r(j, state_path);
  out.model = load_verified(path + "/" + kModelFile, r.file(kModelFile));
  out.optimizer = load_verified(path + "/" + kOptimizerFile, r.file(kOptimizerFile));
  return out;
}

std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& dir) {
  std::vector<std::pair<int64_t, std::string>> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    int64_t step = 0;
    if (parse_step_name(entry.path().filename().string(), &step) && entry.is_directory(ec))
      out.emplace_back(step, entry.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::optional<std::string> find_latest_checkpoint(const std::string& dir,
                                                  std::vector<std::string>* warnings) {
  auto list = list_checkpoints(dir);
  for (auto it = list.rbegin(); it != list.rend(); ++it) {
    try {
      load_checkpoint(it->second);
      return it->second;
    } catch (const Error& e) {
      if (warnings) warnings->push_back(str("skipping checkpoint ", it->second, ": ", e.what()));
    }
  }
  return std::nullopt;
}

}  // namespace tandem
