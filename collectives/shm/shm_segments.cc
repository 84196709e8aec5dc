// Finding and removing a job's left-behind /dev/shm segments by name prefix (see shm_segments.h).
#include "collectives/shm/shm_segments.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <filesystem>

#include "collectives/store/job_token.h"
#include "core/base/error.h"

namespace tandem {
namespace {

// Visits every regular file in `dir` whose name starts with `prefix`, with its allocated bytes.
template <typename Visit>
void for_each_segment(const std::string& prefix, const std::string& dir, Visit visit) {
  std::error_code ec;
  std::filesystem::directory_iterator it(dir, ec);
  if (ec) return;
  for (const auto& entry : it) {
    const std::string name = entry.path().filename().string();
    if (name.compare(0, prefix.size(), prefix) != 0) continue;
    struct stat st {};
    if (lstat(entry.path().c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    visit(entry.path().string(), static_cast<int64_t>(st.st_blocks) * 512);
  }
}

std::string mib(int64_t bytes) {
  return str(bytes / 1048576, ".", (bytes % 1048576) * 10 / 1048576, " MiB");
}

}  // namespace

std::string new_shm_prefix() {
  return std::string(kDefaultShmPrefix) + generate_job_token().substr(0, 12) + "-";
}

bool valid_shm_prefix(const std::string& prefix) {
  const std::string start = kDefaultShmPrefix;
  if (prefix.size() > 64 || prefix.compare(0, start.size(), start) != 0) return false;
  for (char c : prefix)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') return false;
  return true;
}

std::string new_shm_segment_name(const std::string& prefix) {
  return "/" + prefix + generate_job_token().substr(0, 16);
}

ShmSegments find_shm_segments(const std::string& prefix, const std::string& dir) {
  ShmSegments found;
  for_each_segment(prefix, dir, [&](const std::string&, int64_t bytes) {
    found.count += 1;
    found.bytes += bytes;
  });
  return found;
}

ShmSegments remove_shm_segments(const std::string& prefix, const std::string& dir) {
  ShmSegments removed;
  for_each_segment(prefix, dir, [&](const std::string& path, int64_t bytes) {
    if (unlink(path.c_str()) != 0) return;
    removed.count += 1;
    removed.bytes += bytes;
  });
  return removed;
}

std::string shm_full_advice(const std::string& prefix, const std::string& dir) {
  const ShmSegments mine = find_shm_segments(prefix, dir);
  ShmSegments all = find_shm_segments(kDefaultShmPrefix, dir);
  if (all.count == 0) return "enlarge /dev/shm (docker --shm-size) or set strategy.backend=gloo";
  const ShmSegments others{all.count - mine.count, all.bytes - mine.bytes};
  std::string s = str(dir, " holds ");
  if (mine.count > 0)
    s += str(mib(mine.bytes), " in ", mine.count, " segment(s) of this job (", dir, "/", prefix,
             "*)");
  if (mine.count > 0 && others.count > 0) s += " and ";
  if (others.count > 0)
    s += str(mib(others.bytes), " in ", others.count, " segment(s) of other tandem jobs (", dir,
             "/", kDefaultShmPrefix, "*)");
  return s +
         ", left by killed ranks: remove those no running job uses (`tandem launch` removes "
         "its own after each round), or enlarge /dev/shm or set strategy.backend=gloo";
}

}  // namespace tandem
