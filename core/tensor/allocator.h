// CPU memory for tensors. A caching allocator: freed blocks go to a free list keyed by their
// rounded size and are handed out again, so a training step that allocates the same shapes every
// step touches the system allocator only in its first step (no page faults, no mmap churn).
// Thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tandem {

struct AllocatorStats {
  int64_t allocated_bytes = 0;  // in blocks handed out now
  int64_t reserved_bytes = 0;   // obtained from the system (handed out + cached)
  int64_t peak_allocated_bytes = 0;
  int64_t system_allocs = 0;  // calls that had to go to the system allocator
};

void* cpu_alloc(size_t nbytes);         // 64-byte aligned; never returns null (throws)
void cpu_free(void* p, size_t nbytes);  // nbytes as passed to cpu_alloc
AllocatorStats cpu_allocator_stats();
void cpu_allocator_empty_cache();  // returns cached blocks to the system

}  // namespace tandem
