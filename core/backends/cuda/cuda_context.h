// Devices and streams of the CUDA backend. Key decision: nothing touches the driver until a CUDA
// tensor or query needs it, and a missing driver or device reads as zero devices, so a binary
// built with CUDA runs its CPU work on machines without either.
//
// Each device has one compute stream (non-blocking, created on first use) on which every kernel
// and copy of the backend is enqueued; the caching allocator orders reuse on that stream. Other
// streams (NCCL's) synchronise with it through events, never through the host.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace tandem::cuda {

int device_count();                       // lazily probed once; 0 on any driver error
void check_device(int device);            // throws naming the device and how many exist
cudaStream_t compute_stream(int device);  // also makes `device` current on this thread

// Makes a device current for a scope and restores the previous one.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = -1;
};

// An event to order work across streams without a host wait.
class Event {
 public:
  Event();  // timing disabled (cheaper to record)
  ~Event();
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  void record(cudaStream_t stream);
  void wait_on(cudaStream_t stream) const;  // `stream` waits for this event
  bool query() const;                       // true when completed
  void synchronize() const;
  cudaEvent_t get() const { return event_; }

 private:
  cudaEvent_t event_ = nullptr;
};

}  // namespace tandem::cuda
