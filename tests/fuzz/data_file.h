// A file for the data-set fuzz targets, whose readers take a path: one per process, rewritten with
// each input (in /dev/shm when there is one, so no disk is touched).
#pragma once

#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

namespace tandem::fuzz {

// A new empty file "<prefix>-XXXXXX" in /dev/shm (else /tmp), removed when the process exits, so
// a fuzz run or a replay leaves nothing behind.
inline std::string scratch_file(const std::string& prefix) {
  static std::vector<std::string>* const made = [] {
    auto* files = new std::vector<std::string>;  // outlives every static that holds a path
    std::atexit([] {
      for (const std::string& f : *made) std::remove(f.c_str());
    });
    return files;
  }();
  std::string path = (access("/dev/shm", W_OK) == 0 ? "/dev/shm/" : "/tmp/") + prefix + "-XXXXXX";
  const int fd = mkstemp(path.data());
  if (fd < 0) std::abort();
  close(fd);
  made->push_back(path);
  return path;
}

inline std::string write_data_file(std::string_view bytes) {
  static const std::string path = scratch_file("tandem-fuzz-data");
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return path;
}

}  // namespace tandem::fuzz
