// Whole-file reads and atomic writes: the bytes, the modes, what is left behind, and the errors.
#include "core/io/file_io.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>

#include "core/base/error.h"
#include "tests/support/test_support.h"

namespace tandem {
namespace {

std::vector<std::string> names_in(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const IoError& e) {
    return e.what();
  }
  return "no IoError";
}

TEST(FileIo, AtomicWriteReplacesTheFileAndLeavesNoTemporary) {
  const std::string dir = testing::temp_dir() + "/atomic";
  std::filesystem::create_directory(dir);
  const std::string path = dir + "/state.json";
  write_file_atomic(path, "first, longer content");
  write_file_atomic(path, std::string("se\0cond", 7));
  EXPECT_EQ(read_file(path), std::string("se\0cond", 7));
  EXPECT_EQ(names_in(dir), std::vector<std::string>{"state.json"});
}

TEST(FileIo, PrivateFilesAreOwnerOnlyWhateverTheUmask) {
  const std::string path = testing::temp_dir() + "/token";
  const mode_t old = ::umask(0);
  write_file_atomic(path, "secret\n", 0600);
  write_file_atomic(path + ".public", "x");
  ::umask(old);
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat((path + ".public").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
  EXPECT_EQ(read_file(path), "secret\n");
}

TEST(FileIo, SyncedWriteConcatenatesPiecesAndRefusesAnExistingFile) {
  const std::string path = testing::temp_dir() + "/pieces";
  write_file_synced(path, {"ab", "", "cd"});
  EXPECT_EQ(read_file(path), "abcd");
  EXPECT_EQ(error_of([&] { write_file_synced(path, {"x"}); }),
            path + ": cannot create (File exists)");
  EXPECT_EQ(read_file(path), "abcd");
}

TEST(FileIo, AtomicWriteIntoAMissingDirectoryNamesTheTemporaryFile) {
  const std::string path = testing::temp_dir() + "/no/such/dir/f";
  const std::string got = error_of([&] { write_file_atomic(path, "x"); });
  EXPECT_EQ(got.rfind(path + ".tmp.", 0), 0u) << got;
  EXPECT_NE(got.find(": cannot create (No such file or directory)"), std::string::npos) << got;
}

TEST(FileIo, ReadRefusesFilesOverTheCapAndWhatIsNotARegularFile) {
  const std::string path = testing::temp_dir() + "/ten";
  { std::ofstream(path) << "0123456789"; }
  EXPECT_EQ(read_file(path, "a config", 10), "0123456789");
  EXPECT_EQ(error_of([&] { read_file(path, "a config", 4); }),
            path + ": 10 bytes, more than the 4 bytes a config may have");
  const std::string dir = testing::temp_dir();
  EXPECT_EQ(error_of([&] { read_file(dir, "a config"); }),
            dir + ": not a regular file (a device, pipe or socket); expected a config");
  EXPECT_EQ(error_of([&] { read_file(dir + "/absent"); }),
            dir + "/absent: cannot open (No such file or directory)");
}

}  // namespace
}  // namespace tandem
