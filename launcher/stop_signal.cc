// StopSignals: the first signal and its time in one lock-free atomic (see stop_signal.h).
#include "launcher/stop_signal.h"

#include <csignal>
#include <ctime>

namespace tandem {
namespace {

static_assert(std::atomic<int64_t>::is_always_lock_free, "classify() runs in signal handlers");

int64_t monotonic_us() {
  timespec t{};
  clock_gettime(CLOCK_MONOTONIC, &t);  // async-signal-safe (POSIX.1-2008)
  return static_cast<int64_t>(t.tv_sec) * 1'000'000 + t.tv_nsec / 1000;
}

}  // namespace

StopSignals::Meaning StopSignals::classify(int sig) {
  const int64_t now_us = monotonic_us();
  int64_t first = 0;
  if (first_.compare_exchange_strong(first, (now_us << 8) | (sig & 0xff))) return Meaning::kFirst;
  const int first_sig = static_cast<int>(first & 0xff);
  const int64_t since_us = now_us - (first >> 8);
  if (sig == SIGTERM && first_sig == SIGTERM && since_us < same_request_us_)
    return Meaning::kSameRequest;
  return Meaning::kNow;
}

void StopSignals::reset() {
  first_.store(0);
}

}  // namespace tandem
