// TensorBoard event files: scalars written as TensorFlow `Event` protobufs in TFRecord framing,
//   u64 length (LE) | u32 masked_crc32c(length bytes) | data | u32 masked_crc32c(data),
// into `<logdir>/events.out.tfevents.<10-digit unix time>.<hostname>`. The first record is an
// Event with file_version "brain.Event:2", as TensorBoard expects.
//
// Records are buffered by stdio; flush() hands them to the OS (TensorBoard then sees them), and
// the destructor flushes. One writer per file, driven by one thread (rank 0's trainer): not
// thread-safe.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

namespace tandem {

class TensorBoardWriter {
 public:
  // Creates logdir if needed and a new event file in it; a name already taken (two writers in the
  // same second) gets a ".1", ".2", ... suffix. hostname: '/' is replaced by '_'.
  TensorBoardWriter(const std::string& logdir, const std::string& hostname);
  ~TensorBoardWriter();
  TensorBoardWriter(const TensorBoardWriter&) = delete;
  TensorBoardWriter& operator=(const TensorBoardWriter&) = delete;

  // One Event{wall_time, step, summary{value{tag, simple_value}}}. wall_time: unix seconds, now
  // when not given. The value is stored as float, as TensorBoard's simple_value is.
  void add_scalar(const std::string& tag, double value, int64_t step);
  void add_scalar(const std::string& tag, double value, int64_t step, double wall_time);
  void flush();

  const std::string& path() const { return path_; }

 private:
  void write_record(const std::string& data);

  std::string path_;
  std::FILE* file_ = nullptr;
};

// The TFRecord frame around one serialized record (exposed for tests).
std::string tfrecord_frame(const std::string& data);

}  // namespace tandem
