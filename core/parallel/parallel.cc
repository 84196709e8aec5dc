#include "core/parallel/parallel.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <mutex>
#include <thread>

extern "C" void openblas_set_num_threads(int);

namespace tandem {
namespace {
std::atomic<int> g_threads{0};  // 0 = not yet set
std::mutex g_set_mu;            // serialises set_num_threads (OpenMP/OpenBLAS settings)
}  // namespace

int hardware_threads() {
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

int default_threads() {
  if (const char* omp = std::getenv("OMP_NUM_THREADS")) {
    char* end = nullptr;
    const long n = std::strtol(omp, &end, 10);
    if (end != omp && *end == '\0' && n > 0 && n < 4096) return static_cast<int>(n);
  }
  return hardware_threads();
}

void set_num_threads(int n) {
  if (n <= 0) n = default_threads();
  std::lock_guard<std::mutex> lock(g_set_mu);
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
  g_threads.store(n);
}

int num_threads() {
  int n = g_threads.load();
  if (n != 0) return n;
  {
    std::lock_guard<std::mutex> lock(g_set_mu);
    n = g_threads.load();
    if (n != 0) return n;
    n = default_threads();
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
    g_threads.store(n);
  }
  return n;
}

void parallel_for(int64_t begin, int64_t end, int64_t grain,
                  const std::function<void(int64_t, int64_t)>& fn) {
  int64_t n = end - begin;
  if (n <= 0) return;
  int threads = num_threads();
  if (threads <= 1 || n <= grain || omp_in_parallel()) {
    fn(begin, end);
    return;
  }
  int64_t chunks = std::min<int64_t>(threads, (n + grain - 1) / std::max<int64_t>(grain, 1));
#pragma omp parallel num_threads(static_cast <int>(chunks))
  {
    int64_t t = omp_get_thread_num();
    int64_t nt = omp_get_num_threads();
    int64_t per = (n + nt - 1) / nt;
    int64_t b = begin + t * per;
    int64_t e = std::min(end, b + per);
    if (b < e) fn(b, e);
  }
}

}  // namespace tandem
