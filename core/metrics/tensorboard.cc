// TensorBoard event-file writer: protobuf messages from tensorboard_event.proto, framed by hand.
#include "core/metrics/tensorboard.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "core/base/error.h"
#include "core/io/crc32c.h"
#include "core/metrics/tensorboard_event.pb.h"

namespace tandem {
namespace {

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

void put_u32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

}  // namespace

std::string tfrecord_frame(const std::string& data) {
  std::string out;
  out.reserve(data.size() + 16);
  const uint64_t n = data.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  put_u32(out, masked_crc32c(out.data(), 8));
  out += data;
  put_u32(out, masked_crc32c(data.data(), data.size()));
  return out;
}

TensorBoardWriter::TensorBoardWriter(const std::string& logdir, const std::string& hostname) {
  TANDEM_CHECK(!hostname.empty(), "TensorBoardWriter: hostname is empty");
  std::error_code ec;
  std::filesystem::create_directories(logdir, ec);
  TANDEM_CHECK_T(IoError, std::filesystem::is_directory(logdir), logdir,
                 ": cannot create the TensorBoard log directory (",
                 ec ? ec.message() : "not a directory", ")");
  std::string host = hostname;
  for (char& c : host)
    if (c == '/') c = '_';
  const double now = unix_now();
  char stamp[32];
  std::snprintf(stamp, sizeof stamp, "%010lld", static_cast<long long>(now));
  const std::string base = logdir + "/events.out.tfevents." + stamp + "." + host;
  int fd = -1;
  for (int attempt = 0; fd < 0; ++attempt) {
    path_ = attempt == 0 ? base : base + "." + std::to_string(attempt);
    fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    TANDEM_CHECK_T(IoError, fd >= 0 || (errno == EEXIST && attempt < 1000), path_,
                   ": cannot create the event file (", std::strerror(errno), ")");
  }
  file_ = ::fdopen(fd, "wb");
  if (file_ == nullptr) {
    ::close(fd);
    throw IoError(str(path_, ": fdopen failed (", std::strerror(errno), ")"));
  }
  tensorboard::Event event;
  event.set_wall_time(now);
  event.set_file_version("brain.Event:2");
  write_record(event.SerializeAsString());
  flush();
}

TensorBoardWriter::~TensorBoardWriter() {
  if (file_ != nullptr) std::fclose(file_);  // flushes; errors have nowhere to go here
}

void TensorBoardWriter::add_scalar(const std::string& tag, double value, int64_t step) {
  add_scalar(tag, value, step, unix_now());
}

void TensorBoardWriter::add_scalar(const std::string& tag, double value, int64_t step,
                                   double wall_time) {
  tensorboard::Event event;
  event.set_wall_time(wall_time);
  event.set_step(step);
  tensorboard::Summary::Value* v = event.mutable_summary()->add_value();
  v->set_tag(tag);
  v->set_simple_value(static_cast<float>(value));
  write_record(event.SerializeAsString());
}

void TensorBoardWriter::flush() {
  TANDEM_CHECK_T(IoError, std::fflush(file_) == 0, path_, ": flush failed (", std::strerror(errno),
                 ")");
}

void TensorBoardWriter::write_record(const std::string& data) {
  const std::string record = tfrecord_frame(data);
  TANDEM_CHECK_T(IoError, std::fwrite(record.data(), 1, record.size(), file_) == record.size(),
                 path_, ": write failed (", std::strerror(errno), ")");
}

}  // namespace tandem
