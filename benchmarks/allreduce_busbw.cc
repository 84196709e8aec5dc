// allreduce_busbw: all-reduce bandwidth of tandem's Communicator against the raw library call it
// wraps, in the same run, on the same buffers: MPI_Allreduce for --backend mpi, gloo::allreduce on
// the communicator's own gloo context for --backend gloo. nccl-tests' definitions: algbw =
// bytes / time, busbw = algbw * 2(n-1)/n. tandem/raw is raw time / tandem time (= the busbw ratio),
// of the medians and of the minima: on a machine shared with other work the minimum shows the
// cost when both ranks hold a core, the median what scheduling noise makes of it.
//
//   mpirun --allow-run-as-root -np 2 allreduce_busbw --backend mpi
//   allreduce_busbw --backend gloo --spawn 2      (or under tandem launch --exec)
//   allreduce_busbw --backend shm --spawn 2     (tandem = shared-memory all-reduce, raw = Gloo's;
//                                               buffers from allocate_shared, reduced in place as
//                                               ddp's buckets are; --staged: plain buffers, copied
//                                               through the staging slots)
//   tandem launch --nnodes H ... --exec -- allreduce_busbw --backend hierarchical
//                                              (several ranks on each of several hosts: tandem =
//                                               the hierarchical all-reduce, raw = Gloo's flat ring
//                                               over every rank, on in-place shared buffers)
// Options: --iters K (per size, default 40; at most 30 above 4 MiB), --min-bytes / --max-bytes B
// (default 4 KiB / 64 MiB; sizes go up by 4x).
// Each timed call starts after a raw barrier and counts as long as its slowest rank took; raw and
// tandem calls alternate (and swap which goes first every iteration) so load from other processes
// hits both alike.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <gloo/allreduce.h>
#include <gloo/barrier.h>
#include <gloo/math.h>

#include "collectives/gloo/gloo_communicator.h"
#include "collectives/hierarchical/make_hierarchical.h"
#include "collectives/mpi/mpi_communicator.h"
#include "collectives/mpi/mpi_runtime.h"
#include "collectives/net/host_address.h"
#include "collectives/shm/shm_communicator.h"
#include "collectives/store/store_client.h"
#include "tests/collectives/local_spawner.h"

namespace tandem {
namespace {

using Clock = std::chrono::steady_clock;

struct Args {
  std::string backend;
  int spawn = 0;
  int iters = 40;
  int64_t min_bytes = 4096;
  int64_t max_bytes = 64 << 20;
  bool staged = false;  // shm: plain buffers instead of allocate_shared ones
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

std::string env_or_die(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) {
    std::fprintf(stderr, "allreduce_busbw: %s is not set (use --spawn N for gloo)\n", name);
    std::exit(2);
  }
  return v;
}

// One rank's benchmark: `raw(buffer)` and `barrier()` are the library's own calls.
int run(const Args& args, Communicator& comm, const std::function<void(Tensor&)>& raw,
        const std::function<void()>& barrier, const std::string& note) {
  const int world = comm.world_size();
  const double bus_factor = world > 1 ? 2.0 * (world - 1) / world : 1.0;
  if (comm.rank() == 0) {
    std::printf("# all_reduce f32 sum, backend %s, %d ranks, median of K iterations%s\n",
                comm.backend_name().c_str(), world, note.c_str());
    std::printf(
        "| bytes | K | raw us | tandem us | raw algbw GB/s | raw busbw GB/s | "
        "tandem algbw GB/s | tandem busbw GB/s | tandem/raw | raw min us | "
        "tandem min us | tandem/raw (min) |\n");
    std::printf("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  }
  for (int64_t bytes = args.min_bytes; bytes <= args.max_bytes; bytes *= 4) {
    // Zeros stay zeros: no overflow, no denormals. Where the backend can share memory (shm), the
    // buffer is in it, as ddp's buckets are; elsewhere allocate_shared is plain zeros.
    Tensor buffer = args.staged ? zeros({bytes / 4})
                                : comm.allocate_shared(bytes / 4, DType::kF32, Device::cpu());
    const int iters = bytes > (4 << 20) ? std::min(args.iters, 30) : args.iters;
    auto tandem_call = [&] {
      comm.all_reduce(buffer, ReduceOp::kSum)->wait(comm.options().timeout);
    };
    for (int w = 0; w < 2; ++w) {  // warm-up: connections, libnbc schedules, page faults
      raw(buffer);
      tandem_call();
    }
    std::vector<double> raw_s, tandem_s;
    for (int it = 0; it < iters; ++it) {
      for (int half = 0; half < 2; ++half) {
        const bool raw_turn = (half == 0) == (it % 2 == 0);
        barrier();
        const auto t0 = Clock::now();
        if (raw_turn) {
          raw(buffer);
        } else {
          tandem_call();
        }
        const double s = std::chrono::duration<double>(Clock::now() - t0).count();
        (raw_turn ? raw_s : tandem_s).push_back(s);
      }
    }
    // A call's time is its slowest rank's: a rank that left the barrier late would otherwise
    // time only the end of the others' work.
    for (std::vector<double>* v : {&raw_s, &tandem_s}) {
      Tensor slowest = from_vector(*v, {static_cast<int64_t>(v->size())}, DType::kF64);
      comm.all_reduce(slowest, ReduceOp::kMax)->wait(comm.options().timeout);
      *v = slowest.to_vector();
    }
    const double r = median(raw_s), t = median(tandem_s);
    const double r_min = *std::min_element(raw_s.begin(), raw_s.end());
    const double t_min = *std::min_element(tandem_s.begin(), tandem_s.end());
    if (comm.rank() == 0) {
      std::printf(
          "| %lld | %d | %.1f | %.1f | %.3f | %.3f | %.3f | %.3f | %.3f | %.1f | %.1f | %.3f |\n",
          static_cast<long long>(bytes), iters, r * 1e6, t * 1e6, bytes / r / 1e9,
          bytes / r / 1e9 * bus_factor, bytes / t / 1e9, bytes / t / 1e9 * bus_factor, r / t,
          r_min * 1e6, t_min * 1e6, r_min / t_min);
      std::fflush(stdout);
    }
  }
  return 0;
}

int run_mpi(const Args& args) {
  auto comm = std::make_unique<MpiCommunicator>();
  auto raw = [](Tensor& b) {
    TANDEM_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, b.raw_data(), static_cast<int>(b.numel()),
                                   MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD));
  };
  auto barrier = [] { TANDEM_MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD)); };
  std::string note = ", raw = blocking MPI_Allreduce on MPI_COMM_WORLD; tandem's MPI_Iallreduce: " +
                     MpiRuntime::get().iallreduce_tuning();
  int rc = run(args, *comm, raw, barrier, note);
  comm.reset();  // before MPI_Finalize at exit
  return rc;
}

int run_gloo(const Args& args) {
  const int rank = std::atoi(env_or_die("RANK").c_str());
  const int world = std::atoi(env_or_die("WORLD_SIZE").c_str());
  const std::string master = env_or_die("MASTER_ADDR");
  StoreClient store(master + ":" + env_or_die("MASTER_PORT"), env_or_die("TANDEM_JOB_TOKEN"),
                    std::chrono::milliseconds(600'000));
  CommOptions options;
  options.timeout = std::chrono::milliseconds(600'000);  // 64 MiB over a 100 Mbit/s link: seconds
  GlooOptions go;  // across hosts, the address peers reach this one at (as tandem train does)
  const char* local_world = std::getenv("LOCAL_WORLD_SIZE");
  if (local_world != nullptr && std::atoi(local_world) < world)
    go.hostname = address_toward(master);
  auto gloo_comm = std::make_unique<GlooCommunicator>(store, rank, world, go, options);
  std::shared_ptr<gloo::Context> context = gloo_comm->context();
  std::unique_ptr<Communicator> comm = std::move(gloo_comm);
  std::unique_ptr<Communicator> flat;  // --backend hierarchical: kept for its context (raw)
  // --backend shm: tandem's shared-memory all-reduce against the raw Gloo call it replaces.
  if (args.backend == "shm")
    comm = std::make_unique<ShmCommunicator>(std::move(comm), store, "shm");
  // --backend hierarchical: tandem's hierarchical all-reduce against Gloo's flat ring.
  if (args.backend == "hierarchical") {
    const HostLayout layout =
        exchange_host_layout(store, "bench", rank, world, this_hostname(), options.timeout);
    if (!calls_for_hierarchy(layout)) {
      std::fprintf(stderr,
                   "allreduce_busbw: --backend hierarchical needs several ranks on each "
                   "of several hosts\n");
      return 2;
    }
    go.key_prefix = "hier";
    flat = std::move(comm);
    comm = make_hierarchical_gloo(store, layout, rank, go, "hier", options);
  }
  uint32_t tag = 1u << 31;  // apart from the communicator's tags (its sequence numbers)
  auto raw = [&](Tensor& b) {
    gloo::AllreduceOptions opts(context);
    opts.setOutput<float>(b.data<float>(), static_cast<size_t>(b.numel()));
    opts.setReduceFunction(
        static_cast<void (*)(void*, const void*, const void*, size_t)>(&gloo::sum<float>));
    opts.setTag(tag++);
    gloo::allreduce(opts);
  };
  auto barrier = [&] {
    gloo::BarrierOptions opts(context);
    opts.setTag(tag++);
    gloo::barrier(opts);
  };
  return run(args, *comm, raw, barrier,
             flat ? ", raw = gloo::allreduce, a flat ring over every rank"
                  : ", raw = gloo::allreduce on the communicator's context");
}

}  // namespace
}  // namespace tandem

int main(int argc, char** argv) {
  tandem::Args args;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--backend" && i + 1 < argc) {
      args.backend = argv[++i];
    } else if (a == "--spawn" && i + 1 < argc) {
      args.spawn = std::atoi(argv[++i]);
    } else if (a == "--iters" && i + 1 < argc) {
      args.iters = std::atoi(argv[++i]);
    } else if (a == "--min-bytes" && i + 1 < argc) {
      args.min_bytes = std::atoll(argv[++i]);
    } else if (a == "--max-bytes" && i + 1 < argc) {
      args.max_bytes = std::atoll(argv[++i]);
    } else if (a == "--staged") {
      args.staged = true;
    } else {
      std::fprintf(stderr, "allreduce_busbw: unknown argument '%s'\n", a.c_str());
      return 2;
    }
  }
  if ((args.backend != "mpi" && args.backend != "gloo" && args.backend != "shm" &&
       args.backend != "hierarchical") ||
      args.iters < 1 || args.min_bytes < 4 || args.min_bytes > args.max_bytes) {
    std::fprintf(stderr,
                 "usage: allreduce_busbw --backend {mpi,gloo,shm,hierarchical} [--spawn N] "
                 "[--iters K] [--min-bytes B] [--max-bytes B] [--staged]\n");
    return 2;
  }
  try {
    if (args.spawn > 0) {
      char self[4096];
      ssize_t len = readlink("/proc/self/exe", self, sizeof(self) - 1);
      if (len <= 0) return 2;
      self[len] = '\0';
      std::vector<std::string> child = {"--backend",   args.backend,
                                        "--iters",     std::to_string(args.iters),
                                        "--min-bytes", std::to_string(args.min_bytes),
                                        "--max-bytes", std::to_string(args.max_bytes)};
      if (args.staged) child.push_back("--staged");
      return tandem::testing::spawn_local_ranks(self, child, args.spawn,
                                                std::chrono::seconds(3600));
    }
    return args.backend == "mpi" ? tandem::run_mpi(args) : tandem::run_gloo(args);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "allreduce_busbw: %s\n", e.what());
    return 1;
  }
}
