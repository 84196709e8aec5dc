// Scratch files and directories for the fuzz targets whose readers take a path: one per process,
// rewritten with each input (in /dev/shm when there is one, so no disk is touched).
#pragma once

#include <stdlib.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

namespace tandem::fuzz {

// Remembers a scratch path, file or directory, to remove when the process exits, so a fuzz run or
// a replay leaves nothing behind.
inline void remove_at_exit(const std::string& path) {
  static std::vector<std::string>* const made = [] {
    auto* paths = new std::vector<std::string>;  // outlives every static that holds a path
    std::atexit([] {
      std::error_code ec;
      for (const std::string& p : *made) std::filesystem::remove_all(p, ec);
    });
    return paths;
  }();
  made->push_back(path);
}

// "/dev/shm/<prefix>-XXXXXX" (else under /tmp), for mkstemp or mkdtemp.
inline std::string scratch_pattern(const std::string& prefix) {
  return (access("/dev/shm", W_OK) == 0 ? "/dev/shm/" : "/tmp/") + prefix + "-XXXXXX";
}

// A new empty file "<prefix>-XXXXXX" in /dev/shm (else /tmp), removed at exit.
inline std::string scratch_file(const std::string& prefix) {
  std::string path = scratch_pattern(prefix);
  const int fd = mkstemp(path.data());
  if (fd < 0) std::abort();
  close(fd);
  remove_at_exit(path);
  return path;
}

// A new empty directory "<prefix>-XXXXXX" in /dev/shm (else /tmp), removed with what it holds at
// exit.
inline std::string scratch_dir(const std::string& prefix) {
  std::string path = scratch_pattern(prefix);
  if (mkdtemp(path.data()) == nullptr) std::abort();
  remove_at_exit(path);
  return path;
}

inline std::string write_data_file(std::string_view bytes) {
  static const std::string path = scratch_file("tandem-fuzz-data");
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return path;
}

}  // namespace tandem::fuzz
