// MPI_COMM_WORLD helpers for setting up and tearing down (see mpi_bootstrap.h). Every wait is a
// non-blocking call tested against a deadline: a rank that is stopped or gone must cost the others
// a timeout and an error naming it, never a hang.
#include "collectives/mpi/mpi_bootstrap.h"

#include <thread>
#include <vector>

#include "collectives/mpi/mpi_runtime.h"
#include "core/base/error.h"

namespace tandem {

namespace {

// Tests `request` until it completes (true) or `deadline` passes (false, still pending).
bool wait_until(MPI_Request& request, std::chrono::steady_clock::time_point deadline) {
  for (;;) {
    int done = 0;
    TANDEM_MPI_CHECK(MPI_Test(&request, &done, MPI_STATUS_IGNORE));
    if (done) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

}  // namespace

std::string mpi_broadcast_string(const std::string& value, int root,
                                 std::chrono::milliseconds timeout, const std::string& what) {
  MpiRuntime::get();
  int rank = 0;
  TANDEM_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto timed_out = [&]() {
    return TimeoutError(str("mpi: rank ", rank, " waited ", timeout.count() / 1000.0,
                            " s for rank ", root, "'s ", what, "; rank ", root,
                            " did not send it (stopped, hung or gone?)"));
  };
  long long n = rank == root ? static_cast<long long>(value.size()) : 0;
  MPI_Request request = MPI_REQUEST_NULL;
  TANDEM_MPI_CHECK(MPI_Ibcast(&n, 1, MPI_LONG_LONG, root, MPI_COMM_WORLD, &request));
  if (!wait_until(request, deadline)) throw timed_out();
  std::vector<char> bytes(value.begin(), value.end());
  bytes.resize(static_cast<size_t>(n));
  if (n > 0) {
    TANDEM_MPI_CHECK(
        MPI_Ibcast(bytes.data(), static_cast<int>(n), MPI_CHAR, root, MPI_COMM_WORLD, &request));
    if (!wait_until(request, deadline)) throw timed_out();
  }
  return std::string(bytes.begin(), bytes.end());
}

bool mpi_world_on_one_node() {
  MpiRuntime::get();
  int world = 0, local = 0;
  MPI_Comm shared = MPI_COMM_NULL;
  TANDEM_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &world));
  TANDEM_MPI_CHECK(
      MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &shared));
  TANDEM_MPI_CHECK(MPI_Comm_size(shared, &local));
  TANDEM_MPI_CHECK(MPI_Comm_free(&shared));
  return local == world;
}

int mpi_world_rank() {
  MpiRuntime::get();
  int rank = 0;
  TANDEM_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
  return rank;
}

bool mpi_barrier_for(std::chrono::milliseconds timeout) {
  MpiRuntime::get();
  MPI_Request request = MPI_REQUEST_NULL;
  TANDEM_MPI_CHECK(MPI_Ibarrier(MPI_COMM_WORLD, &request));
  return wait_until(request, std::chrono::steady_clock::now() + timeout);
}

}  // namespace tandem
