// The intra-op thread pool. tandem uses one OpenMP team for its own kernels and links the OpenMP
// build of OpenBLAS, so GEMMs run on the same threads: at most num_threads() threads ever compute,
// and nothing oversubscribes the cores. The size is a setting (training.threads), by default
// OMP_NUM_THREADS when set -- as PyTorch's; `tandem launch`, torchrun and Slurm scripts give each
// process its share of the cores that way -- else all cores.
#pragma once

#include <cstdint>
#include <functional>

namespace tandem {

void set_num_threads(int n);  // n <= 0: default_threads(). Also sizes OpenBLAS.
int num_threads();            // default_threads() until set
int hardware_threads();
int default_threads();  // OMP_NUM_THREADS when a whole number in [1, 4095], else hardware_threads()

// Calls fn(begin, end) on disjoint chunks covering [begin, end). Runs inline when the range is
// smaller than grain or when already inside a parallel region.
void parallel_for(int64_t begin, int64_t end, int64_t grain,
                  const std::function<void(int64_t, int64_t)>& fn);

}  // namespace tandem
