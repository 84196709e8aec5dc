// Device memory for CUDA tensors: a caching allocator, so a training step that allocates the same
// shapes every step calls cudaMalloc only in its first steps and never cudaFree (both synchronise
// the device). Requests are rounded to size classes (512 B steps up to 1 MiB, then 1/8 of the
// power of two: at most 12.5% waste); a freed block goes back to its class and is handed out again.
//
// Stream order: blocks belong to the device's compute stream (cuda_context.h). A block freed by
// the host while kernels that use it are still queued is safe to hand out again at once, because
// every later user is queued behind them on the same stream. Work on another stream (NCCL) must
// keep its tensors alive until that stream is joined back to the compute stream with an event.
//
// Out of memory: the cache is returned to the driver and the request retried once; then the
// error names the request, the device's free memory and what tandem holds. Thread-safe.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>

#include "core/backends/device_backend.h"

namespace tandem::cuda {

void* device_alloc(size_t nbytes, int device);
void device_free(void* p, size_t nbytes, int device);  // nbytes as passed to device_alloc
DeviceMemoryStats device_memory_stats(int device);
void reset_peak_device_memory(int device);
void device_empty_cache(int device);  // synchronises the device, then frees every cached block

// Page-locked host buffers for copies between host and device (cudaMemcpyAsync is asynchronous
// only from pinned memory). A buffer given back with an event is reused once the event (the copy
// that reads or writes it) has completed.
void* pinned_alloc(size_t nbytes);
void pinned_free(void* p, size_t nbytes, cudaEvent_t in_use_until);  // event may be null

// Rounds a request to its size class (exposed for tests).
size_t device_size_class(size_t nbytes);

}  // namespace tandem::cuda
