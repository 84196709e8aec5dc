// OpenBLAS 0.3.21 (Debian 12) chooses its kernels once, when the library loads, from the CPU
// models it knows. Recent AVX-512 CPUs (AMD Zen 4/5 among them) are unknown to it and get the
// Haswell AVX2 kernels at about half the GEMM throughput (measured here: ~100 vs ~170-200
// GFLOP/s per core). The choice can only be changed through OPENBLAS_CORETYPE before the library
// loads, so a program that wants the right kernels re-executes itself once with the variable set.
// The user's own OPENBLAS_CORETYPE always wins. Used by `tandem` and the benchmark programs; only
// programs (never library code) touch the environment.
#pragma once

#include <unistd.h>

#include <cstdlib>

namespace tandem {

inline void select_openblas_kernels(char** argv) {
  if (std::getenv("OPENBLAS_CORETYPE") != nullptr) return;
  __builtin_cpu_init();
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
  if (!avx512) return;  // OpenBLAS's own choice stands
  // "SkylakeX": OpenBLAS's AVX-512 kernel set. The re-executed process finds it set and goes on.
  setenv("OPENBLAS_CORETYPE", "SkylakeX", 1);
  execv("/proc/self/exe", argv);  // returns only on failure: keep going with the default kernels
}

}  // namespace tandem
