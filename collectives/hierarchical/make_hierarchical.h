// Building a HierarchicalCommunicator: find out which ranks share a host, then connect the three
// groups it needs (every rank; this host's ranks; the ranks of this local index on every host).
//
// Every function here is collective over all ranks of the job (each rank calls it, in the same
// order) and uses the job's Store to exchange host names and addresses. Host names come from the
// caller (normally gethostname()), so tests can place ranks of one process on "hosts" of their
// choosing.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "collectives/communicator.h"
#include "collectives/gloo/gloo_communicator.h"
#include "collectives/hierarchical/host_layout.h"
#include "collectives/store/store_client.h"

namespace tandem {

// Each rank publishes `host` under "<prefix>/host/<rank>" and reads everyone's.
HostLayout exchange_host_layout(StoreClient& store, const std::string& prefix, int rank, int world,
                                const std::string& host, std::chrono::milliseconds timeout);

// Several hosts, several ranks on each, the same number everywhere: the layouts the hierarchical
// all-reduce is for. One host is shm's; one rank per host is a flat ring's.
bool calls_for_hierarchy(const HostLayout& layout);

// Over Gloo: the job-wide and cross-host groups advertise `gloo` (this host's address or
// interface), the host's own group loopback; its all-reduce goes through shared memory. Store keys
// live under `prefix`, which must be unique to the job attempt. The layout must call for a
// hierarchy (calls_for_hierarchy). The host's segments are named shm_prefix... (shm_segments.h).
std::unique_ptr<Communicator> make_hierarchical_gloo(StoreClient& store, const HostLayout& layout,
                                                     int rank, const GlooOptions& gloo,
                                                     const std::string& prefix,
                                                     const CommOptions& options,
                                                     const std::string& shm_prefix = "tandem-");

// Over MPI (processes started by mpirun or srun --mpi): the groups are MPI_Comm_split's of
// MPI_COMM_WORLD, whose rank must be `rank`; the store carries only the shared-memory segment
// names. Needs MPI_THREAD_MULTIPLE (the groups' threads may call MPI at once): throws
// Unimplemented naming the level otherwise.
std::unique_ptr<Communicator> make_hierarchical_mpi(StoreClient& store, const HostLayout& layout,
                                                    int rank, const std::string& prefix,
                                                    const CommOptions& options);

}  // namespace tandem
