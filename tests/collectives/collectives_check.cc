// collectives_check: every collective of one backend on real processes, results checked bit for
// bit. Inputs are small integers times per-rank factors, so every sum, average and maximum is
// exactly representable in f32, f64 and bf16 and the expected tensor is known without a reference
// run: element i of rank r is (r + 1) * (i % 7 - 3).
//
//   mpirun -np N collectives_check --backend mpi [--only NAME]
//   collectives_check --backend gloo --spawn N [--only NAME]   (hosts a Store, starts N ranks)
//   collectives_check --backend gloo [--only NAME]             (one rank: RANK, WORLD_SIZE,
//                                                  MASTER_ADDR, MASTER_PORT, TANDEM_JOB_TOKEN)
//   tandem launch --nproc-per-node N --exec -- collectives_check --backend gloo|shm
// shm: the shared-memory transport over Gloo, as `tandem launch` trains with on one host.
// --pause-before-shm RANK:MS: that rank sleeps MS between Gloo's setup and the shm segment's, so
// rank 0 waits in the setup barrier with the segment created (tests/multiprocess/shm_cleanup.sh).
// NAME: values, nan_max, barrier, order, timeout, errors, overlap (default: all). Each rank prints
// "[rank r] N passed, M failed"; the exit status is 1 when a check failed, 2 on bad usage.
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "collectives/communicator.h"
#include "collectives/gloo/gloo_communicator.h"
#include "collectives/mpi/mpi_communicator.h"
#include "collectives/shm/shm_communicator.h"
#include "collectives/store/store_client.h"
#include "tests/collectives/local_spawner.h"

namespace tandem {
namespace {

using Clock = std::chrono::steady_clock;
constexpr std::chrono::milliseconds kWait{120'000};

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

class Checker {
 public:
  Checker(Communicator& comm) : comm_(comm), rank_(comm.rank()), world_(comm.world_size()) {}

  void expect(bool ok, const std::string& what) {
    if (ok) {
      ++passed_;
    } else {
      ++failed_;
      std::fprintf(stderr, "[rank %d] FAILED: %s\n", rank_, what.c_str());
    }
  }
  int passed() const { return passed_; }
  int failed() const { return failed_; }

  // Every Work must carry the next sequence number.
  std::unique_ptr<Work> track(std::unique_ptr<Work> work) {
    if (work->sequence_number() != next_seq_) {
      expect(false, str("sequence number ", work->sequence_number(), ", expected ", next_seq_));
    }
    next_seq_ = work->sequence_number() + 1;
    return work;
  }
  uint64_t next_seq() const { return next_seq_; }

  void values();
  void nan_max();
  void barrier();
  void order();
  void timeout();
  void errors();
  void overlap();

 private:
  void check_equal(const Tensor& got, const Tensor& want, const std::string& what);

  Communicator& comm_;
  int rank_, world_;
  int passed_ = 0, failed_ = 0;
  uint64_t next_seq_ = 0;
};

Tensor make(DType dtype, int64_t n, const std::function<double(int64_t)>& f) {
  Tensor t = empty({n}, dtype);
  char* p = static_cast<char*>(t.raw_data());
  const size_t elem = dtype_size(dtype);
  for (int64_t i = 0; i < n; ++i) store_from_double(p + i * elem, dtype, f(i));
  return t;
}

double k(int64_t i) {
  return static_cast<double>(i % 7) - 3.0;
}  // -3 .. 3

void Checker::check_equal(const Tensor& got, const Tensor& want, const std::string& what) {
  const size_t bytes = want.numel() * dtype_size(want.dtype());
  bool same = got.numel() == want.numel() && got.dtype() == want.dtype() &&
              (bytes == 0 || std::memcmp(got.raw_data(), want.raw_data(), bytes) == 0);
  if (same) return expect(true, what);
  const size_t elem = dtype_size(want.dtype());
  const char* g = static_cast<const char*>(got.raw_data());
  const char* w = static_cast<const char*>(want.raw_data());
  for (int64_t i = 0; i < want.numel(); ++i) {
    if (std::memcmp(g + i * elem, w + i * elem, elem) != 0) {
      return expect(false,
                    str(what, ": element ", i, " is ", load_as_double(g + i * elem, got.dtype()),
                        ", expected ", load_as_double(w + i * elem, want.dtype())));
    }
  }
  expect(false, str(what, ": got ", got.str(), ", expected ", want.str()));
}

// all_reduce (sum, avg, max), broadcast (root 0 and W-1), all_gather (out of place and in place),
// reduce_scatter (sum, avg, max), for every dtype and size.
void Checker::values() {
  const double W = world_;
  const double r1 = rank_ + 1;
  const double tri = W * (W + 1) / 2;  // sum over ranks of (r + 1)
  auto reduced = [&](ReduceOp op, double kk) {
    switch (op) {
      case ReduceOp::kSum:
        return tri * kk;
      case ReduceOp::kAvg:
        return tri * kk / W;
      case ReduceOp::kMax:
        return kk >= 0 ? W * kk : kk;
    }
    return 0.0;
  };
  const ReduceOp ops[] = {ReduceOp::kSum, ReduceOp::kAvg, ReduceOp::kMax};
  for (DType dtype : {DType::kF32, DType::kF64, DType::kBF16}) {
    for (int64_t n : {int64_t{0}, int64_t{1}, int64_t{7}, int64_t{1'000'003}}) {
      const std::string tag = str(dtype_name(dtype), " n=", n);
      for (ReduceOp op : ops) {
        Tensor x = make(dtype, n, [&](int64_t i) { return r1 * k(i); });
        track(comm_.all_reduce(x, op))->wait(kWait);
        check_equal(x, make(dtype, n, [&](int64_t i) { return reduced(op, k(i)); }),
                    str("all_reduce ", reduce_op_name(op), " ", tag));
      }
      for (int root : {0, world_ - 1}) {
        // Values differ per rank (and stay exact in bf16: at most 8 * 32 + 6 for 31 ranks).
        Tensor x = make(dtype, n, [&](int64_t i) { return r1 * 8 + (i % 7); });
        track(comm_.broadcast(x, root))->wait(kWait);
        check_equal(x, make(dtype, n, [&](int64_t i) { return (root + 1) * 8.0 + (i % 7); }),
                    str("broadcast root ", root, " ", tag));
      }
      Tensor gathered_want = make(dtype, n * world_, [&](int64_t j) {
        return (j / std::max<int64_t>(n, 1) + 1) * k(j % std::max<int64_t>(n, 1));
      });
      {
        Tensor in = make(dtype, n, [&](int64_t i) { return r1 * k(i); });
        Tensor out = full({n * world_}, -100.0, dtype);
        track(comm_.all_gather(in, out))->wait(kWait);
        check_equal(out, gathered_want, str("all_gather ", tag));
      }
      if (n > 0) {
        Tensor out = full({n * world_}, -100.0, dtype);
        Tensor own = out.slice(0, rank_ * n, (rank_ + 1) * n);
        own.copy_(make(dtype, n, [&](int64_t i) { return r1 * k(i); }));
        track(comm_.all_gather(own, out))->wait(kWait);
        check_equal(out, gathered_want, str("all_gather in place ", tag));
      }
      for (ReduceOp op : ops) {
        // Block b of rank r: (r + 1) * k(i + b), so each rank's result block differs.
        Tensor in = make(dtype, n * world_, [&](int64_t j) {
          const int64_t b = j / std::max<int64_t>(n, 1), i = j % std::max<int64_t>(n, 1);
          return r1 * k(i + b);
        });
        Tensor out = full({n}, -100.0, dtype);
        track(comm_.reduce_scatter(in, out, op))->wait(kWait);
        check_equal(out, make(dtype, n, [&](int64_t i) { return reduced(op, k(i + rank_)); }),
                    str("reduce_scatter ", reduce_op_name(op), " ", tag));
      }
    }
  }
}

// max propagates NaN on every backend and dtype: rank r holds NaN at elements r and n-1-r (the
// latter in another chunk of a large tensor), so every rank must see NaN at the first and last W
// elements whichever rank's operand the backend compares first; every other element is the max.
void Checker::nan_max() {
  const double r1 = rank_ + 1;
  for (DType dtype : {DType::kF32, DType::kF64, DType::kBF16}) {
    for (int64_t n : {int64_t{7} * world_, int64_t{1'000'003}}) {
      Tensor x = make(dtype, n, [&](int64_t i) {
        return i == rank_ || i == n - 1 - rank_ ? std::nan("") : r1 * k(i);
      });
      track(comm_.all_reduce(x, ReduceOp::kMax))->wait(kWait);
      const char* p = static_cast<const char*>(x.raw_data());
      const size_t elem = dtype_size(dtype);
      std::string wrong;
      for (int64_t i = 0; i < n && wrong.empty(); ++i) {
        const double got = load_as_double(p + i * elem, dtype);
        const bool want_nan = i < world_ || i >= n - world_;
        const double want = k(i) >= 0 ? world_ * k(i) : k(i);
        if (want_nan ? !std::isnan(got) : got != want)
          wrong = str(": element ", i, " is ", got, ", expected ", want_nan ? "nan" : str(want));
      }
      expect(wrong.empty(), str("all_reduce max with NaN ", dtype_name(dtype), " n=", n, wrong));
    }
  }
}

// A barrier holds every rank until the last arrives: rank 0 arrives 500 ms late.
void Checker::barrier() {
  track(comm_.barrier())->wait(kWait);  // line up
  const auto t0 = Clock::now();
  if (rank_ == 0) std::this_thread::sleep_for(std::chrono::milliseconds(500));
  track(comm_.barrier())->wait(kWait);
  const double waited = seconds_since(t0);
  expect(waited >= 0.3, str("barrier held rank ", rank_, " for ", waited,
                            " s while rank 0 arrived 0.5 s late (expected >= 0.3 s)"));
}

// Collectives complete in issue order: when the last of ten small ones completes, the large one
// issued before them has completed too.
void Checker::order() {
  Tensor big = make(DType::kF32, 1 << 21, [&](int64_t i) { return (rank_ + 1) * k(i); });
  std::vector<Tensor> small;
  std::vector<std::unique_ptr<Work>> works;
  works.push_back(track(comm_.all_reduce(big, ReduceOp::kSum)));
  for (int j = 0; j < 10; ++j) {
    small.push_back(full({1}, rank_ + j, DType::kF32));
    works.push_back(track(comm_.all_reduce(small.back(), ReduceOp::kSum)));
  }
  works.back()->wait(kWait);
  bool all_done = true;
  for (auto& w : works) all_done = all_done && w->is_completed();
  expect(all_done, "every collective issued before a completed one has completed");
  for (auto& w : works) w->wait(kWait);
  const double tri = world_ * (world_ + 1) / 2.0;
  check_equal(big, make(DType::kF32, 1 << 21, [&](int64_t i) { return tri * k(i); }),
              "all_reduce issued before ten others");
  for (int j = 0; j < 10; ++j) {
    const double want = world_ * (world_ - 1) / 2.0 + world_ * j;
    expect(small[j].item() == want,
           str("small all_reduce ", j, " is ", small[j].item(), ", expected ", want));
  }
}

// wait(timeout) throws TimeoutError naming the op and its sequence number while a peer is late,
// and the collective still completes once it arrives.
void Checker::timeout() {
  if (world_ == 1) return;  // nobody can be late
  track(comm_.barrier())->wait(kWait);
  Tensor x = full({5}, rank_ + 1, DType::kF32);
  if (rank_ != 0) std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  const uint64_t seq = next_seq();
  auto work = track(comm_.all_reduce(x, ReduceOp::kSum));
  if (rank_ == 0) {
    std::string message;
    try {
      work->wait(std::chrono::milliseconds(100));
    } catch (const TimeoutError& e) {
      message = e.what();
    }
    expect(message.find(str("all_reduce #", seq)) != std::string::npos,
           str("TimeoutError naming 'all_reduce #", seq, "', got '", message, "'"));
    expect(!work->is_completed(), "a timed-out collective is not completed yet");
  }
  work->wait(kWait);
  const double want = world_ * (world_ + 1) / 2.0;
  const std::vector<double> got = x.to_vector();
  expect(got == std::vector<double>(5, want),
         str("late all_reduce is ", got[0], "..., expected ", want));
}

// What a backend cannot do throws at issue (no sequence number is used up).
void Checker::errors() {
  Tensor i32 = zeros({4}, DType::kI32);
  bool thrown = false;
  try {
    comm_.all_reduce(i32, ReduceOp::kSum);
  } catch (const Unimplemented& e) {
    thrown = std::string(e.what()).find("i32") != std::string::npos;
  }
  expect(thrown, "all_reduce of an i32 tensor throws Unimplemented naming i32");
  Tensor strided = zeros({4, 4}).t();
  thrown = false;
  try {
    comm_.all_reduce(strided, ReduceOp::kSum);
  } catch (const ShapeError&) {
    thrown = true;
  }
  expect(thrown, "all_reduce of a non-contiguous tensor throws ShapeError");
  Tensor in = zeros({3}), out = zeros({3 * world_ + 1});
  thrown = false;
  try {
    comm_.all_gather(in, out);
  } catch (const ShapeError&) {
    thrown = true;
  }
  expect(thrown, "all_gather into an output of the wrong size throws ShapeError");
  Tensor y = zeros({2});
  auto work = track(comm_.all_reduce(y, ReduceOp::kSum));  // the count goes on where it was
  work->wait(kWait);
}

// Compute on the caller's thread, never touching the communicator, for ten times as long as a
// blocking all-reduce of 16 MiB takes; the all-reduce issued before must have completed by then.
void Checker::overlap() {
  const int64_t n = (16 << 20) / 4;
  Tensor x = make(DType::kF32, n, [&](int64_t i) { return (rank_ + 1) * k(i); });
  track(comm_.barrier())->wait(kWait);
  auto t0 = Clock::now();
  track(comm_.all_reduce(x, ReduceOp::kSum))->wait(kWait);  // reference time (x is reused)
  const double reference = seconds_since(t0);
  const double budget = std::max(10 * reference, 0.5);
  track(comm_.barrier())->wait(kWait);

  x.copy_(make(DType::kF32, n, [&](int64_t i) { return (rank_ + 1) * k(i); }));
  std::vector<float> scratch(1 << 16, 1.0f);
  volatile float sink = 0;
  auto work = track(comm_.all_reduce(x, ReduceOp::kSum));
  t0 = Clock::now();
  int64_t chunks = 0;
  while (seconds_since(t0) < budget) {
    for (float& v : scratch) v = v * 0.999f + 0.001f;  // ~64k multiply-adds per chunk
    sink = sink + scratch[chunks % scratch.size()];
    ++chunks;
  }
  const bool done_before_wait = work->is_completed();
  std::printf(
      "[rank %d] overlap: 16 MiB all_reduce alone %.1f ms; issued, then %lld compute "
      "chunks in %.1f ms without waiting; completed before wait: %s\n",
      rank_, reference * 1e3, static_cast<long long>(chunks), seconds_since(t0) * 1e3,
      done_before_wait ? "yes" : "no");
  expect(done_before_wait && chunks > 0,
         str("16 MiB all_reduce completed while the caller computed (", chunks,
             " chunks) without calling wait"));
  work->wait(kWait);
  const double tri = world_ * (world_ + 1) / 2.0;
  check_equal(x, make(DType::kF32, n, [&](int64_t i) { return tri * k(i); }),
              "all_reduce overlapped with compute");
}

std::string env_or_die(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) {
    std::fprintf(stderr, "collectives_check: %s is not set (run with --spawn N)\n", name);
    std::exit(2);
  }
  return v;
}

int run_rank(const std::string& backend, const std::string& only, int pause_rank, int pause_ms) {
  std::unique_ptr<StoreClient> store;
  std::unique_ptr<Communicator> comm;
  if (backend == "mpi") {
    comm = std::make_unique<MpiCommunicator>();
  } else {
    const int rank = std::atoi(env_or_die("RANK").c_str());
    const int world = std::atoi(env_or_die("WORLD_SIZE").c_str());
    store = std::make_unique<StoreClient>(
        env_or_die("MASTER_ADDR") + ":" + env_or_die("MASTER_PORT"), env_or_die("TANDEM_JOB_TOKEN"),
        std::chrono::milliseconds(60'000));
    comm = std::make_unique<GlooCommunicator>(*store, rank, world);
    if (rank == pause_rank) std::this_thread::sleep_for(std::chrono::milliseconds(pause_ms));
    const char* shm_prefix = std::getenv("TANDEM_SHM_PREFIX");  // set by tandem launch
    if (backend == "shm")
      comm = std::make_unique<ShmCommunicator>(std::move(comm), *store, "collectives-check",
                                               shm_prefix ? shm_prefix : kDefaultShmPrefix);
  }
  Checker check(*comm);
  const auto t0 = Clock::now();
  const std::vector<std::pair<std::string, void (Checker::*)()>> suites = {
      {"values", &Checker::values},  {"nan_max", &Checker::nan_max}, {"barrier", &Checker::barrier},
      {"order", &Checker::order},    {"timeout", &Checker::timeout}, {"errors", &Checker::errors},
      {"overlap", &Checker::overlap}};
  for (const auto& [name, fn] : suites) {
    if (!only.empty() && only != name) continue;
    try {
      (check.*fn)();
    } catch (const std::exception& e) {
      check.expect(false, str(name, ": ", e.what()));
    }
  }
  std::printf("[rank %d] %s x%d: %d passed, %d failed (%.1f s)\n", comm->rank(), backend.c_str(),
              comm->world_size(), check.passed(), check.failed(), seconds_since(t0));
  std::fflush(stdout);
  comm.reset();  // before MPI_Finalize at exit
  return check.failed() == 0 ? 0 : 1;
}

}  // namespace
}  // namespace tandem

int main(int argc, char** argv) {
  std::string backend, only;
  int spawn = 0, pause_rank = -1, pause_ms = 0;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--backend" && i + 1 < argc) {
      backend = argv[++i];
    } else if (a == "--only" && i + 1 < argc) {
      only = argv[++i];
    } else if (a == "--spawn" && i + 1 < argc) {
      spawn = std::atoi(argv[++i]);
    } else if (a == "--pause-before-shm" && i + 1 < argc) {  // RANK:MS
      const std::string v = argv[++i];
      pause_rank = std::atoi(v.c_str());
      pause_ms = v.find(':') == std::string::npos ? 0 : std::atoi(v.c_str() + v.find(':') + 1);
    } else {
      std::fprintf(stderr, "collectives_check: unknown argument '%s'\n", a.c_str());
      return 2;
    }
  }
  if (backend != "mpi" && backend != "gloo" && backend != "shm") {
    std::fprintf(stderr,
                 "usage: collectives_check --backend {mpi,gloo,shm} [--spawn N] [--only NAME]\n");
    return 2;
  }
  try {
    if (spawn > 0) {
      char self[4096];
      ssize_t len = readlink("/proc/self/exe", self, sizeof(self) - 1);
      if (len <= 0) return 2;
      self[len] = '\0';
      std::vector<std::string> args = {"--backend", backend};
      if (!only.empty()) args.insert(args.end(), {"--only", only});
      return tandem::testing::spawn_local_ranks(self, args, spawn, std::chrono::seconds(170));
    }
    return tandem::run_rank(backend, only, pause_rank, pause_ms);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "collectives_check: %s\n", e.what());
    return 1;
  }
}
