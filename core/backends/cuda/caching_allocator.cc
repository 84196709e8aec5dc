#include "core/backends/cuda/caching_allocator.h"

#include <array>
#include <map>
#include <mutex>
#include <vector>

#include "core/backends/cuda/cuda_check.h"
#include "core/backends/cuda/cuda_context.h"

namespace tandem::cuda {
namespace {

constexpr size_t kSmallStep = 512;        // cudaMalloc alignment is 256; 512 as PyTorch rounds
constexpr size_t kSmallLimit = 1u << 20;  // 1 MiB
constexpr int kMaxDevices = 64;

struct DevicePool {
  std::mutex mu;
  std::map<size_t, std::vector<void*>> free_blocks;  // guarded by mu; by size class
  DeviceMemoryStats stats;                           // guarded by mu
};

DevicePool& pool(int device) {
  static auto* pools = new std::array<DevicePool, kMaxDevices>;  // never destroyed (see storage)
  return (*pools)[static_cast<size_t>(device)];
}

void count_alloc(DeviceMemoryStats& s, size_t size) {
  s.allocated_bytes += static_cast<int64_t>(size);
  if (s.allocated_bytes > s.peak_allocated_bytes) s.peak_allocated_bytes = s.allocated_bytes;
}

// Frees every cached block of `p` (caller holds p.mu and has synchronised the device).
void release_cached(DevicePool& p) {
  for (auto& [size, blocks] : p.free_blocks) {
    for (void* b : blocks) {
      (void)cudaFree(b);
      p.stats.reserved_bytes -= static_cast<int64_t>(size);
      p.stats.device_frees += 1;
    }
    blocks.clear();
  }
}

std::string mib(double bytes) {
  return str(static_cast<int64_t>(bytes / 1048576.0 + 0.5), " MiB");
}

}  // namespace

size_t device_size_class(size_t n) {
  if (n == 0) n = 1;
  if (n <= kSmallLimit) return (n + kSmallStep - 1) / kSmallStep * kSmallStep;
  size_t p = 1;
  while (p < n) p <<= 1;
  const size_t step = p / 8;
  return (n + step - 1) / step * step;
}

void* device_alloc(size_t nbytes, int device) {
  check_device(device);
  const size_t size = device_size_class(nbytes);
  DevicePool& p = pool(device);
  std::lock_guard<std::mutex> lock(p.mu);
  auto it = p.free_blocks.find(size);
  if (it != p.free_blocks.end() && !it->second.empty()) {
    void* b = it->second.back();
    it->second.pop_back();
    count_alloc(p.stats, size);
    return b;
  }
  DeviceGuard guard(device);
  void* b = nullptr;
  cudaError_t err = cudaMalloc(&b, size);
  if (err == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();
    TANDEM_CUDA_CHECK(cudaDeviceSynchronize());  // queued kernels may still use cached blocks
    release_cached(p);
    err = cudaMalloc(&b, size);
  }
  if (err == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();
    size_t free_b = 0, total_b = 0;
    (void)cudaMemGetInfo(&free_b, &total_b);
    throw Error(str("CUDA out of memory on cuda:", device, ": tried to allocate ",
                    mib(static_cast<double>(size)), " (", nbytes, " bytes); the device has ",
                    mib(static_cast<double>(free_b)), " free of ",
                    mib(static_cast<double>(total_b)), "; tandem holds ",
                    mib(static_cast<double>(p.stats.allocated_bytes)),
                    " in tensors. Reduce the batch size or use a lower training.precision"));
  }
  TANDEM_CUDA_CHECK(err);
  p.stats.reserved_bytes += static_cast<int64_t>(size);
  if (p.stats.reserved_bytes > p.stats.peak_reserved_bytes)
    p.stats.peak_reserved_bytes = p.stats.reserved_bytes;
  p.stats.device_allocs += 1;
  count_alloc(p.stats, size);
  return b;
}

void device_free(void* b, size_t nbytes, int device) {
  if (b == nullptr) return;
  const size_t size = device_size_class(nbytes);
  DevicePool& p = pool(device);
  std::lock_guard<std::mutex> lock(p.mu);
  p.free_blocks[size].push_back(b);
  p.stats.allocated_bytes -= static_cast<int64_t>(size);
}

DeviceMemoryStats device_memory_stats(int device) {
  check_device(device);
  DevicePool& p = pool(device);
  std::lock_guard<std::mutex> lock(p.mu);
  return p.stats;
}

void reset_peak_device_memory(int device) {
  check_device(device);
  DevicePool& p = pool(device);
  std::lock_guard<std::mutex> lock(p.mu);
  p.stats.peak_allocated_bytes = p.stats.allocated_bytes;
  p.stats.peak_reserved_bytes = p.stats.reserved_bytes;
}

void device_empty_cache(int device) {
  check_device(device);
  DeviceGuard guard(device);
  TANDEM_CUDA_CHECK(cudaDeviceSynchronize());
  DevicePool& p = pool(device);
  std::lock_guard<std::mutex> lock(p.mu);
  release_cached(p);
}

// ------------------------------------------------------------------ pinned host buffers
namespace {

struct PinnedBlock {
  void* ptr;
  cudaEvent_t in_use_until;  // null: free now
};

struct PinnedPool {
  std::mutex mu;
  std::map<size_t, std::vector<PinnedBlock>> free_blocks;  // guarded by mu
};

PinnedPool& pinned_pool() {
  static auto* p = new PinnedPool;
  return *p;
}

}  // namespace

void* pinned_alloc(size_t nbytes) {
  const size_t size = device_size_class(nbytes);
  PinnedPool& p = pinned_pool();
  {
    std::lock_guard<std::mutex> lock(p.mu);
    auto& blocks = p.free_blocks[size];
    for (size_t i = 0; i < blocks.size(); ++i) {
      PinnedBlock b = blocks[i];
      if (b.in_use_until != nullptr) {
        cudaError_t e = cudaEventQuery(b.in_use_until);
        if (e == cudaErrorNotReady) continue;
        TANDEM_CUDA_CHECK(e);
        TANDEM_CUDA_CHECK(cudaEventDestroy(b.in_use_until));
      }
      blocks.erase(blocks.begin() + static_cast<std::ptrdiff_t>(i));
      return b.ptr;
    }
  }
  void* ptr = nullptr;
  TANDEM_CUDA_CHECK(cudaHostAlloc(&ptr, size, cudaHostAllocPortable));
  return ptr;
}

void pinned_free(void* ptr, size_t nbytes, cudaEvent_t in_use_until) {
  if (ptr == nullptr) return;
  PinnedPool& p = pinned_pool();
  std::lock_guard<std::mutex> lock(p.mu);
  p.free_blocks[device_size_class(nbytes)].push_back(PinnedBlock{ptr, in_use_until});
}

}  // namespace tandem::cuda
