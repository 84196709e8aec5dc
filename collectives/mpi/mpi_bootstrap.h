// Blocking helpers over MPI_COMM_WORLD for setting things up before any Communicator exists --
// the Store endpoint and job token that rank 0 hands to the others under mpirun -- and for the
// last handshake before rank 0 stops serving. Strings, not tensors, so they are not collectives of
// the Communicator interface.
//
// Each is collective over MPI_COMM_WORLD (every rank calls it, in the same order), initialises
// MPI on first use (MpiRuntime), and must not run concurrently with other MPI calls of this
// process unless MPI runs at MPI_THREAD_MULTIPLE.
#pragma once

#include <chrono>
#include <string>

namespace tandem {

// Rank `root`'s value on every rank. Throws TimeoutError naming `root` and `what` when it has not
// arrived within `timeout` (the broadcast is then left pending: the caller is on its way out).
std::string mpi_broadcast_string(const std::string& value, int root,
                                 std::chrono::milliseconds timeout, const std::string& what);

// True when every rank of MPI_COMM_WORLD runs on this node (MPI_Comm_split_type shared size ==
// world size).
bool mpi_world_on_one_node();

// MPI_COMM_WORLD's rank of this process.
int mpi_world_rank();

// Waits until every rank has called it, at most `timeout`; false when it timed out (the barrier
// is then left pending: call only on the way out).
bool mpi_barrier_for(std::chrono::milliseconds timeout);

}  // namespace tandem
