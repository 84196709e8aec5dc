// A job's left-behind shared-memory segments (collectives/shm/shm_segments.h), found, reported
// and removed by their name prefix, in a directory standing in for /dev/shm.
#include "collectives/shm/shm_segments.h"

#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>

#include "tests/support/test_support.h"

namespace tandem {
namespace {

namespace fs = std::filesystem;

// A file of `bytes` allocated bytes, as a segment reserved with posix_fallocate is.
void make_segment(const std::string& path, int64_t bytes) {
  const int fd = open(path.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0600);
  ASSERT_GE(fd, 0) << path;
  ASSERT_EQ(posix_fallocate(fd, 0, bytes), 0) << path;
  close(fd);
}

TEST(ShmSegments, PrefixesAreUniqueAndNameSegmentsUnderThem) {
  const std::string a = new_shm_prefix(), b = new_shm_prefix();
  EXPECT_NE(a, b);
  EXPECT_EQ(a.size(), std::string("tandem-").size() + 12 + 1) << a;
  EXPECT_TRUE(valid_shm_prefix(a)) << a;
  const std::string name = new_shm_segment_name(a);
  EXPECT_EQ(name.rfind("/" + a, 0), 0u) << name;
  EXPECT_EQ(name.size(), 1 + a.size() + 16) << name;
  EXPECT_TRUE(valid_shm_prefix("tandem-"));
  EXPECT_FALSE(valid_shm_prefix("other-"));
  EXPECT_FALSE(valid_shm_prefix("tandem-../x"));
  EXPECT_FALSE(valid_shm_prefix("tandem-a b"));
}

TEST(ShmSegments, RemovesOnlyTheSegmentsUnderTheJobsPrefix) {
  const std::string dir = testing::temp_dir();
  make_segment(dir + "/tandem-job1-aaaa", 8192);
  make_segment(dir + "/tandem-job1-bbbb", 4096);
  make_segment(dir + "/tandem-job2-cccc", 4096);
  make_segment(dir + "/unrelated", 4096);
  const ShmSegments found = find_shm_segments("tandem-job1-", dir);
  EXPECT_EQ(found.count, 2);
  EXPECT_EQ(found.bytes, 8192 + 4096);
  const ShmSegments removed = remove_shm_segments("tandem-job1-", dir);
  EXPECT_EQ(removed.count, 2);
  EXPECT_EQ(removed.bytes, 8192 + 4096);
  EXPECT_FALSE(fs::exists(dir + "/tandem-job1-aaaa"));
  EXPECT_FALSE(fs::exists(dir + "/tandem-job1-bbbb"));
  EXPECT_TRUE(fs::exists(dir + "/tandem-job2-cccc"));
  EXPECT_TRUE(fs::exists(dir + "/unrelated"));
  EXPECT_EQ(find_shm_segments("tandem-job1-", dir).count, 0);
  EXPECT_EQ(remove_shm_segments("tandem-job1-", dir + "/missing").count, 0);
}

TEST(ShmSegments, AFullShmNamesTheBytesLeftBehindInsteadOfSayingToEnlargeIt) {
  const std::string dir = testing::temp_dir();
  EXPECT_EQ(shm_full_advice("tandem-job1-", dir),
            "enlarge /dev/shm (docker --shm-size) or set strategy.backend=gloo");
  make_segment(dir + "/tandem-job1-aaaa", 3 << 20);
  make_segment(dir + "/tandem-job2-bbbb", 1 << 20);
  EXPECT_EQ(shm_full_advice("tandem-job1-", dir),
            dir + " holds 3.0 MiB in 1 segment(s) of this job (" + dir +
                "/tandem-job1-*) and 1.0 MiB in 1 segment(s) of other tandem jobs (" + dir +
                "/tandem-*), left by killed ranks: remove those no running job uses (`tandem "
                "launch` removes its own after each round), or enlarge /dev/shm or set "
                "strategy.backend=gloo");
}

}  // namespace
}  // namespace tandem
