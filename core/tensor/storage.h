// A block of memory on one device, shared by every tensor that views it.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>

#include "core/tensor/device.h"

namespace tandem {

class Storage {
 public:
  // Allocates nbytes on device (uninitialised).
  Storage(size_t nbytes, Device device);
  // Wraps memory somebody else owns (a shared-memory segment, say): `release` runs when the last
  // tensor viewing it goes; it keeps whatever the memory needs alive.
  Storage(void* data, size_t nbytes, Device device, std::function<void()> release);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }

 private:
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  Device device_;
  std::function<void()> release_;  // set: external memory, not ours to free
};

}  // namespace tandem
