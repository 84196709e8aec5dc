// Reading a fuzzer's input as a sequence of fields: bytes, little-endian integers, and
// length-prefixed strings. Every read succeeds: past the end it yields zeros and empty strings,
// so any input is some valid sequence and the fuzzer explores what the fields mean.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace tandem::fuzz {

class FuzzInput {
 public:
  FuzzInput(const uint8_t* data, size_t size) : data_(reinterpret_cast<const char*>(data), size) {}

  bool empty() const { return pos_ >= data_.size(); }

  uint8_t byte() { return empty() ? 0 : static_cast<uint8_t>(data_[pos_++]); }

  uint32_t u32() {
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(byte()) << (8 * i);
    return v;
  }

  // A u32 length (cut to what is left and to `max`), then that many bytes.
  std::string_view bytes(size_t max = SIZE_MAX) {
    const size_t n = std::min<size_t>({u32(), data_.size() - std::min(pos_, data_.size()), max});
    std::string_view out = data_.substr(std::min(pos_, data_.size()), n);
    pos_ += n;
    return out;
  }

  // Everything not read yet.
  std::string_view rest() {
    std::string_view out = data_.substr(std::min(pos_, data_.size()));
    pos_ = data_.size();
    return out;
  }

 private:
  std::string_view data_;
  size_t pos_ = 0;
};

}  // namespace tandem::fuzz
