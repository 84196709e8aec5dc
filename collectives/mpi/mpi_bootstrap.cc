#include "collectives/mpi/mpi_bootstrap.h"

#include <thread>
#include <vector>

#include "collectives/mpi/mpi_runtime.h"

namespace tandem {

std::string mpi_broadcast_string(const std::string& value, int root) {
  MpiRuntime::get();
  int rank = 0;
  TANDEM_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
  long long n = rank == root ? static_cast<long long>(value.size()) : 0;
  TANDEM_MPI_CHECK(MPI_Bcast(&n, 1, MPI_LONG_LONG, root, MPI_COMM_WORLD));
  std::vector<char> bytes(value.begin(), value.end());
  bytes.resize(static_cast<size_t>(n));
  if (n > 0)
    TANDEM_MPI_CHECK(MPI_Bcast(bytes.data(), static_cast<int>(n), MPI_CHAR, root, MPI_COMM_WORLD));
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
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int done = 0;
    TANDEM_MPI_CHECK(MPI_Test(&request, &done, MPI_STATUS_IGNORE));
    if (done) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

}  // namespace tandem
