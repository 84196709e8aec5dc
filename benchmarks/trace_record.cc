// What one trace event costs the thread that records it: a TraceRecorder::Span with a bucket's
// arguments, inside the window (recorded) and outside it (one atomic load), in nanoseconds of the
// thread's CPU time (immune to other work on a shared machine). benchmarks/trace_overhead.py
// multiplies it by the events a real step records.
//
//   trace_record [--events N] [--reps R]
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "core/metrics/trace.h"

namespace {

double thread_cpu_ns() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e9 + ts.tv_nsec;
}

// ns per Span over `events` spans, the recorder's window open or not.
double ns_per_span(bool in_window, int events) {
  tandem::TraceOptions o;
  o.enabled = true;
  o.first_step = in_window ? 0 : 1000;
  o.num_steps = 1;
  o.max_events = events + 1;
  tandem::TraceRecorder recorder(o);
  recorder.begin_step(0);
  const double start = thread_cpu_ns();
  for (int i = 0; i < events; ++i) {
    tandem::TraceRecorder::Span span(
        recorder, "allreduce", "comm", tandem::TraceLane::kCommunication,
        tandem::TraceArgs().num("bucket", i).num("bytes", 1 << 20).text("backend", "shm"));
  }
  return (thread_cpu_ns() - start) / events;
}

}  // namespace

int main(int argc, char** argv) {
  int events = 20000, reps = 9;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--events"))
      events = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--reps"))
      reps = std::atoi(argv[i + 1]);
  }
  if (events < 1 || reps < 1) {
    std::fprintf(stderr, "usage: trace_record [--events N>=1] [--reps R>=1]\n");
    return 2;
  }
  std::printf("| window | ns per event (median of %d x %d) |\n|---|---:|\n", reps, events);
  for (bool in_window : {false, true}) {
    std::vector<double> ns;
    for (int r = 0; r < reps; ++r) ns.push_back(ns_per_span(in_window, events));
    std::nth_element(ns.begin(), ns.begin() + reps / 2, ns.end());
    std::printf("| %s | %.1f |\n", in_window ? "open (recorded)" : "closed (not recorded)",
                ns[reps / 2]);
  }
  return 0;
}
