#include "core/tensor/allocator.h"

#include <unistd.h>

#include <cstdlib>
#include <map>
#include <mutex>
#include <new>
#include <vector>

#include "core/base/error.h"

namespace tandem {
namespace {

// Rounds up so that nearby sizes share a bucket: 64 bytes below 4 KiB, then 1/8 of the power of
// two (at most 12.5% waste).
size_t round_size(size_t n) {
  if (n <= 4096) return (n + 63) & ~size_t{63};
  size_t p = 1;
  while (p < n) p <<= 1;
  size_t step = p / 8;
  return (n + step - 1) / step * step;
}

struct Cache {
  std::mutex mu;
  std::map<size_t, std::vector<void*>> free_blocks;  // guarded by mu
  AllocatorStats stats;                              // guarded by mu
};

Cache& cache() {
  static Cache* c = new Cache;  // never destroyed: tensors may outlive static destructors
  return *c;
}

size_t physical_memory_bytes() {
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? static_cast<size_t>(pages) * static_cast<size_t>(page) : SIZE_MAX;
}

}  // namespace

void* cpu_alloc(size_t nbytes) {
  // A tensor larger than the machine's memory cannot be allocated: say so, with its size, instead
  // of a bare std::bad_alloc (a shape read from a file or a graph can ask for anything).
  static const size_t physical = physical_memory_bytes();
  if (nbytes > physical)
    throw ValueError(str("cannot allocate ", nbytes,
                         " bytes for a tensor: more than this machine's memory (", physical,
                         " bytes)"));
  size_t size = round_size(nbytes == 0 ? 1 : nbytes);
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mu);
    auto it = c.free_blocks.find(size);
    if (it != c.free_blocks.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      c.stats.allocated_bytes += size;
      if (c.stats.allocated_bytes > c.stats.peak_allocated_bytes)
        c.stats.peak_allocated_bytes = c.stats.allocated_bytes;
      return p;
    }
  }
  void* p = std::aligned_alloc(64, size);
  if (p == nullptr) {
    cpu_allocator_empty_cache();
    p = std::aligned_alloc(64, size);
  }
  if (p == nullptr) throw std::bad_alloc();
  std::lock_guard<std::mutex> lock(c.mu);
  c.stats.allocated_bytes += size;
  c.stats.reserved_bytes += size;
  c.stats.system_allocs += 1;
  if (c.stats.allocated_bytes > c.stats.peak_allocated_bytes)
    c.stats.peak_allocated_bytes = c.stats.allocated_bytes;
  return p;
}

void cpu_free(void* p, size_t nbytes) {
  if (p == nullptr) return;
  size_t size = round_size(nbytes == 0 ? 1 : nbytes);
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  c.free_blocks[size].push_back(p);
  c.stats.allocated_bytes -= size;
}

AllocatorStats cpu_allocator_stats() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  return c.stats;
}

void cpu_allocator_empty_cache() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  for (auto& [size, blocks] : c.free_blocks) {
    for (void* p : blocks) std::free(p);
    c.stats.reserved_bytes -= static_cast<int64_t>(size * blocks.size());
    blocks.clear();
  }
}

}  // namespace tandem
