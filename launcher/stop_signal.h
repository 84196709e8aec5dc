// StopSignals: when a second stop signal means "now". `tandem train`, `tandem ps` and the agent of
// `tandem launch` all save (or wait for their workers to save) on the first SIGINT/SIGTERM and
// give up at once on a second one; this is the one rule for what counts as a second one.
//
// The one decision: a SIGTERM that comes within kSameStopRequest of the first SIGTERM is the
// same request, not a second one. A scheduler's preemption reaches every process of a job --
// Slurm's slurmstepd signals every process of a step and srun forwards the signal again, `kill --
// -PGID` reaches a whole process group -- and `tandem launch` forwards what it got to its workers,
// so a worker routinely sees one preemption as two SIGTERMs milliseconds apart. Dying on the second
// lost the checkpoint the first asked for. A SIGINT after the first signal (Ctrl-C again, or the
// agent releasing a parameter server), or a SIGTERM later than the window, still means "now".
//
// Thread-safety: classify() is async-signal-safe (one lock-free atomic and clock_gettime), meant to
// be called from a signal handler, on any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace tandem {

// 5 s: the copies of one preemption arrive within milliseconds (a forward is at most one poll of
// the agent, 200 ms, later); a person who means "now" sends SIGINT, SIGKILL, or waits this long.
constexpr std::chrono::milliseconds kSameStopRequest{5000};

class StopSignals {
 public:
  enum class Meaning {
    kFirst,        // save and stop
    kSameRequest,  // a copy of the first (see above): nothing more to do
    kNow,          // a second request: stop at once
  };

  // `same_request`: the window after a first SIGTERM in which another SIGTERM is a copy of it.
  explicit StopSignals(std::chrono::milliseconds same_request = kSameStopRequest)
      : same_request_us_(
            std::chrono::duration_cast<std::chrono::microseconds>(same_request).count()) {}

  // What `sig` (SIGINT or SIGTERM) means, given the signals classified before it.
  Meaning classify(int sig);
  // As if no signal had come (a process that handles several runs, e.g. tests).
  void reset();

 private:
  // The first signal and when it came: CLOCK_MONOTONIC microseconds << 8 | signal number, set once
  // with one compare-and-swap (0: none yet).
  std::atomic<int64_t> first_{0};
  const int64_t same_request_us_;
};

}  // namespace tandem
