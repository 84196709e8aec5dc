// read_maybe_gzip: one read(2) loop into a buffer of the file's size, one inflate pass per gzip
// member into a buffer that grows only when the trailer's size hint was wrong, never past the cap
// the caller's SizeLimit sets.
#include "core/data/compressed_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>

#include "core/base/error.h"

namespace tandem {
namespace {

std::vector<uint8_t> read_raw(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  TANDEM_CHECK_T(IoError, fd >= 0, path, ": cannot open (", std::strerror(errno), ")");
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    throw IoError(str(path, ": cannot stat (", std::strerror(err), ")"));
  }
  if (!S_ISREG(st.st_mode)) {  // a device or pipe has no size and may never end
    ::close(fd);
    throw IoError(str(path, ": not a regular file (a device, pipe or socket)"));
  }
  std::vector<uint8_t> bytes(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::read(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = n < 0 ? errno : 0;
      ::close(fd);
      throw IoError(str(path, ": read failed after ", done, " of ", bytes.size(), " bytes",
                        err ? str(" (", std::strerror(err), ")") : std::string(" (file shrank)")));
    }
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  return bytes;
}

bool is_gzip_at(const std::vector<uint8_t>& bytes, size_t pos) {
  return bytes.size() >= pos + 2 && bytes[pos] == 0x1f && bytes[pos + 1] == 0x8b;
}

// One gzip member's zlib state, ended on every path out (errors included).
struct Inflater {
  z_stream zs;
  explicit Inflater(const std::string& what) {
    std::memset(&zs, 0, sizeof zs);
    TANDEM_CHECK_T(IoError, inflateInit2(&zs, 15 + 16) == Z_OK, what,
                   ": zlib initialisation failed");
  }
  ~Inflater() { inflateEnd(&zs); }
  Inflater(const Inflater&) = delete;
  Inflater& operator=(const Inflater&) = delete;
};

}  // namespace

std::vector<uint8_t> gunzip(const std::vector<uint8_t>& in, const std::string& what,
                            const SizeLimit& limit, size_t input_chunk) {
  TANDEM_ASSERT(input_chunk > 0 && input_chunk <= UINT32_MAX, "bad input chunk ", input_chunk);
  // The last 4 bytes hold the uncompressed size mod 2^32 (of the last member): a first guess,
  // trusted up to 8x the compressed size (images compress 2-5x) since a truncated or corrupt file
  // ends in arbitrary bytes; the buffer doubles from there if the guess was short, up to the cap.
  uint32_t isize = 0;
  if (in.size() >= 18)
    for (int i = 0; i < 4; ++i) isize |= static_cast<uint32_t>(in[in.size() - 4 + i]) << (8 * i);
  std::vector<uint8_t> out(std::max<size_t>(std::min<size_t>(isize, 8 * in.size()), 1 << 16));
  size_t written = 0, pos = 0;
  SizeCap cap;  // none until the first limit.header_bytes bytes are out
  bool capped = !limit.cap;
  while (pos < in.size()) {
    Inflater z(what);
    size_t fed = pos;  // input handed to zlib so far
    int rc = Z_OK;
    while (rc != Z_STREAM_END) {
      if (z.zs.avail_in == 0 && fed < in.size()) {
        z.zs.next_in = const_cast<Bytef*>(in.data() + fed);
        z.zs.avail_in = static_cast<uInt>(std::min(in.size() - fed, input_chunk));
        fed += z.zs.avail_in;
      }
      if (written == out.size()) {
        // One byte past the cap is room enough to see that the data goes past it.
        size_t grown = out.size() * 2;
        if (cap.bytes < grown) grown = static_cast<size_t>(cap.bytes) + 1;
        out.resize(grown);
      }
      z.zs.next_out = out.data() + written;
      z.zs.avail_out = static_cast<uInt>(std::min<size_t>(out.size() - written, 1u << 30));
      const uInt before = z.zs.avail_out;
      rc = inflate(&z.zs, Z_NO_FLUSH);
      written += before - z.zs.avail_out;
      if (!capped && written >= limit.header_bytes) {
        cap = limit.cap(out.data(), written);
        capped = true;
      }
      TANDEM_CHECK_T(IoError, written <= cap.bytes, what, ": gzip data decompresses to more than ",
                     cap.bytes, " bytes; ", cap.reason, ": the file is corrupt");
      if (rc == Z_OK || rc == Z_STREAM_END) continue;
      if (rc == Z_BUF_ERROR && fed < in.size()) continue;  // it wants the next piece of input
      if (rc == Z_BUF_ERROR)  // no progress with room to write: the input ran out
        throw IoError(str(what, ": truncated gzip stream: expected more compressed data after ",
                          in.size(), " bytes (re-download the file)"));
      const std::string msg = z.zs.msg ? z.zs.msg : "zlib error " + std::to_string(rc);
      throw IoError(str(what, ": corrupt gzip data at byte ", fed - z.zs.avail_in, ": ", msg,
                        " (re-download the file)"));
    }
    pos = fed - z.zs.avail_in;
    // Anything after a member must be another member; zero padding (some tools add it) is ignored.
    if (pos < in.size() && !is_gzip_at(in, pos)) {
      for (size_t i = pos; i < in.size(); ++i)
        TANDEM_CHECK_T(IoError, in[i] == 0, what, ": ", in.size() - pos,
                       " bytes of garbage after the gzip stream at byte ", pos);
      break;
    }
  }
  out.resize(written);
  return out;
}

std::vector<uint8_t> read_maybe_gzip(const std::string& path, const SizeLimit& limit) {
  std::vector<uint8_t> bytes = read_raw(path);
  return is_gzip_at(bytes, 0) ? gunzip(bytes, path, limit) : bytes;
}

}  // namespace tandem
