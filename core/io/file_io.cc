// Whole-file reads and synced, atomic writes (see file_io.h). Plain POSIX calls: one read into a
// buffer of the file's size, and write loops that retry on EINTR.
#include "core/io/file_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/base/error.h"

namespace tandem {

std::string read_file(const std::string& path, const char* kind, uint64_t max_bytes) {
  // One read into a buffer of the file's size: no stream copies (a 200 MB checkpoint loads in a
  // fraction of the time an ostringstream takes).
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  TANDEM_CHECK_T(IoError, fd >= 0, path, ": cannot open (", std::strerror(errno), ")");
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    throw IoError(str(path, ": cannot stat (", std::strerror(err), ")"));
  }
  // A device or pipe has no size to check and may not end (/dev/zero would fill memory).
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw IoError(str(path, ": not a regular file (a device, pipe or socket); expected ", kind));
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  const uint64_t memory = static_cast<uint64_t>(::sysconf(_SC_PHYS_PAGES)) *
                          static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  if (size > (max_bytes ? max_bytes : memory)) {
    ::close(fd);
    if (max_bytes)
      throw IoError(
          str(path, ": ", size, " bytes, more than the ", max_bytes, " bytes ", kind, " may have"));
    throw IoError(str(path, ": ", size, " bytes, more than this machine's memory (", memory,
                      " bytes); expected ", kind));
  }
  std::string out(static_cast<size_t>(size), '\0');
  size_t done = 0;
  while (done < out.size()) {
    ssize_t r = ::read(fd, out.data() + done, out.size() - done);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      int err = r < 0 ? errno : 0;
      ::close(fd);
      throw IoError(str(path, ": read failed after ", done, " of ", out.size(), " bytes (",
                        err ? std::strerror(err) : "the file shrank while it was read", ")"));
    }
    done += static_cast<size_t>(r);
  }
  ::close(fd);
  return out;
}

void write_file_synced(const std::string& path, const std::vector<std::string_view>& pieces,
                       mode_t mode) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  TANDEM_CHECK_T(IoError, fd >= 0, path, ": cannot create (", std::strerror(errno), ")");
  auto fail = [&](const std::string& what) {
    int err = errno;
    ::close(fd);
    throw IoError(str(path, ": ", what, " (", std::strerror(err), ")"));
  };
  if ((mode & 077) == 0 && ::fchmod(fd, mode) != 0) fail("cannot set its mode");
  uint64_t total = 0;
  for (std::string_view piece : pieces) {
    size_t done = 0;
    while (done < piece.size()) {
      ssize_t w = ::write(fd, piece.data() + done, piece.size() - done);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) fail(str("write failed after ", total + done, " bytes"));
      done += static_cast<size_t>(w);
    }
    total += done;
  }
  if (::fsync(fd) != 0) fail("fsync failed");
  TANDEM_CHECK_T(IoError, ::close(fd) == 0, path, ": close failed (", std::strerror(errno), ")");
}

void fsync_dir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  TANDEM_CHECK_T(IoError, fd >= 0, dir, ": cannot open directory to fsync (", std::strerror(errno),
                 ")");
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  TANDEM_CHECK_T(IoError, rc == 0, dir, ": fsync of the directory failed (", std::strerror(err),
                 ")");
}

void write_file_atomic(const std::string& path, const std::vector<std::string_view>& pieces,
                       mode_t mode) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  ::unlink(tmp.c_str());  // left by an earlier failed write of a process with this pid
  try {
    write_file_synced(tmp, pieces, mode);
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    throw IoError(str(path, ": rename failed (", std::strerror(err), ")"));
  }
  const size_t slash = path.rfind('/');
  fsync_dir(slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash));
}

}  // namespace tandem
