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

namespace tandem::fuzz {

inline std::string write_data_file(std::string_view bytes) {
  static const std::string path = [] {
    std::string base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    std::string pattern = base + "/tandem-fuzz-data-XXXXXX";
    const int fd = mkstemp(pattern.data());
    if (fd < 0) std::abort();
    close(fd);
    static const std::string* const made = new std::string(pattern);  // outlives `path`
    std::atexit([] { std::remove(made->c_str()); });                  // the run leaves nothing
    return pattern;
  }();
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return path;
}

}  // namespace tandem::fuzz
