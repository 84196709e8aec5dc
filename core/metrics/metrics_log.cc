// metrics.jsonl writer: an O_APPEND file descriptor and one write() per line.
#include "core/metrics/metrics_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/base/error.h"

namespace tandem {
namespace {

void write_all(int fd, const std::string& data, const std::string& path) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t w = ::write(fd, data.data() + done, data.size() - done);
    if (w < 0 && errno == EINTR) continue;
    TANDEM_CHECK_T(IoError, w >= 0, path, ": write failed (", std::strerror(errno), ")");
    done += static_cast<size_t>(w);
  }
}

}  // namespace

std::string format_metrics_line(int64_t step, int64_t epoch, double time,
                                const MetricValues& values) {
  nlohmann::ordered_json j;
  j["step"] = step;
  j["epoch"] = epoch;
  j["time"] = time;
  for (const auto& [tag, value] : values) {
    TANDEM_CHECK(tag != "step" && tag != "epoch" && tag != "time" && !j.contains(tag),
                 "metrics: tag '", tag, "' is reserved or given twice");
    j[tag] = value;  // NaN and infinities dump as null
  }
  return j.dump();
}

MetricsLog::MetricsLog(const std::string& path) : path_(path) {
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(parent, ec);
  }
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  TANDEM_CHECK_T(IoError, fd_ >= 0, path, ": cannot open for appending (", std::strerror(errno),
                 ")");
  struct stat st {};
  char last = '\n';
  if (::fstat(fd_, &st) == 0 && st.st_size > 0 && ::pread(fd_, &last, 1, st.st_size - 1) == 1 &&
      last != '\n')
    write_all(fd_, "\n", path_);
}

MetricsLog::~MetricsLog() {
  if (fd_ >= 0) ::close(fd_);
}

void MetricsLog::log(int64_t step, int64_t epoch, const MetricValues& values) {
  log(step, epoch,
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count(),
      values);
}

void MetricsLog::log(int64_t step, int64_t epoch, double time, const MetricValues& values) {
  write_all(fd_, format_metrics_line(step, epoch, time, values) + "\n", path_);
}

}  // namespace tandem
