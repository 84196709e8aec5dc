// mpi_checks: `tandem train`'s MPI path (strategies/strategy_factory.cc) gives the same diagnostics
// as tandem launch -- its communicator is checked through a Store that rank 0 hosts
// (collectives/mpi/mpi_rendezvous.h). Run under mpirun with 2 or more ranks:
//
//   mpirun -np 2 launcher_mpi_checks hang       rank 1 hangs 5 s before an all_reduce; rank 0's
//                                               wait must fail within strategy.timeout_s (2 s)
//                                               naming rank 1; then rank 1 comes and both finish
//   mpirun -np 2 launcher_mpi_checks mismatch   debug_collectives: rank 0 calls all_reduce, the
//                                               others broadcast; every rank fails naming ranks
//                                               0 and 1 and both calls
//   mpirun -np 2 launcher_mpi_checks stopped    rank 1 SIGSTOPs itself for good; rank 0's wait
//                                               fails within 2 s naming rank 1, and closing its
//                                               communicator with the all_reduce still in flight
//                                               aborts the job within another 2 s (before: spun
//                                               forever); the test passes on that abort message
//
// Each rank prints "[rank r] PASS ..." or "[rank r] FAIL ..."; the exit status is 1 on a failure.
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include "collectives/checked_communicator.h"
#include "configs/schema/config.h"
#include "core/base/error.h"
#include "core/tensor/tensor.h"
#include "strategies/ddp/ddp_strategy.h"
#include "strategies/process_environment.h"
#include "strategies/strategy_factory.h"

namespace tandem {
namespace {

using Clock = std::chrono::steady_clock;
int g_failed = 0;
int g_rank = 0;

void expect(bool ok, const std::string& what) {
  std::printf("[rank %d] %s %s\n", g_rank, ok ? "PASS" : "FAIL", what.c_str());
  std::fflush(stdout);
  if (!ok) ++g_failed;
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

int run(const std::string& which) {
  const bool debug = which == "mismatch";
  const std::string yaml =
      std::string("model: {name: mlp}\ndata: {name: synthetic}\n") +
      "strategy: {name: ddp, timeout_s: 2, debug_collectives: " + (debug ? "true" : "false") +
      "}\n";
  ExperimentConfig cfg = parse_config(yaml, "mpi_checks.yaml", {});
  const ProcessEnvironment env = detect_environment(current_environment());
  StrategyBuild build = make_strategy(cfg, env);
  auto* ddp = dynamic_cast<DdpStrategy*>(build.strategy.get());
  g_rank = ddp->rank();
  Communicator& comm = ddp->communicator();
  expect(comm.backend_name() == "mpi", "backend is mpi, got " + comm.backend_name());
  expect(dynamic_cast<CheckedCommunicator*>(&comm) != nullptr, "the communicator is checked");
  expect(build.rendezvous && build.store, "rank 0 hosts a Store and every rank has a client");
  expect(build.rendezvous && contains(build.rendezvous->endpoint(), "127.0.0.1:"),
         "one node: the Store is bound to loopback (" +
             (build.rendezvous ? build.rendezvous->endpoint() : std::string()) + ")");
  comm.barrier()->wait(std::chrono::seconds(60));

  Tensor x = full({5}, comm.rank() + 1, DType::kF32);
  if (which == "hang") {
    if (comm.rank() == 1) std::this_thread::sleep_for(std::chrono::seconds(5));
    const Clock::time_point t0 = Clock::now();
    auto work = comm.all_reduce(x, ReduceOp::kSum);
    std::string message;
    try {
      work->wait(comm.options().timeout);
    } catch (const TimeoutError& e) {
      message = e.what();
    }
    const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    if (comm.rank() == 0) {
      expect(contains(message, "all_reduce #1") && contains(message, "rank 1 did not arrive"),
             "the timeout names the op and rank 1: '" + message + "'");
      expect(seconds < 3.5,
             "it fails within the 2 s timeout (took " + std::to_string(seconds) + " s)");
      // Rank 1 arrives late: the collective still completes with the right sum.
      work->wait(std::chrono::seconds(30));
    } else {
      expect(message.empty(), "the late rank completes: '" + message + "'");
    }
    const double want = comm.world_size() * (comm.world_size() + 1) / 2.0;
    expect(x.to_vector()[0] == want, "the late all_reduce sums to " + std::to_string(want));
  } else if (which == "mismatch") {
    std::string message;
    try {
      auto work = comm.rank() == 0 ? comm.all_reduce(x, ReduceOp::kSum) : comm.broadcast(x, 0);
      work->wait(comm.options().timeout);
    } catch (const CommError& e) {
      message = e.what();
    }
    expect(contains(message, "mismatch") && contains(message, "rank 0 called all_reduce") &&
               contains(message, "rank 1 called broadcast"),
           "the debug check names both ranks and calls: '" + message + "'");
  } else if (which == "stopped") {
    if (comm.rank() == 1) raise(SIGSTOP);  // until mpirun's abort kills it
    const Clock::time_point t0 = Clock::now();
    auto work = comm.all_reduce(x, ReduceOp::kSum);
    std::string message;
    try {
      work->wait(comm.options().timeout);
    } catch (const TimeoutError& e) {
      message = e.what();
    }
    const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    expect(contains(message, "rank 1 did not arrive") && seconds < 3.5,
           "the stopped rank's timeout names rank 1 within 2 s: '" + message + "'");
    std::fprintf(stderr, "[rank 0] closing the communicator with all_reduce #1 in flight\n");
    std::fflush(stderr);
  } else {
    std::fprintf(stderr, "usage: launcher_mpi_checks hang|mismatch|stopped\n");
    return 2;
  }
  return g_failed == 0 ? 0 : 1;
}

}  // namespace
}  // namespace tandem

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: launcher_mpi_checks hang|mismatch|stopped\n");
    return 2;
  }
  try {
    return tandem::run(argv[1]);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "[rank %d] FAIL: %s\n", tandem::g_rank, e.what());
    return 1;
  }
}
