// MpiRendezvous: a Store for jobs started by mpirun or srun --mpi, where no `tandem launch` hosts
// one. The checked communicator needs a Store to name the ranks that did not arrive when a wait
// times out, and to compare calls across ranks under strategy.debug_collectives -- so MPI jobs get
// the same diagnostics as launched ones.
//
// The decision: rank 0 hosts the StoreServer in its own process, on a free port, bound to
// 127.0.0.1 when every rank runs on its node (MPI_Comm_split_type) and otherwise to this host's
// address (the first non-loopback IPv4 address its hostname resolves to); it generates the job
// token and broadcasts endpoint and token over MPI, the job's trusted channel. The token is never
// printed.
//
// Lifetime: start() is collective over MPI_COMM_WORLD. The destructor is too: rank 0 keeps
// serving until every rank has arrived (at most `linger`), so a rank that is still timing out
// can still read the others' progress; then the server stops.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "collectives/store/store_client.h"
#include "collectives/store/store_server.h"

namespace tandem {

class MpiRendezvous {
 public:
  // `timeout`: the store client's call deadline and the destructor's longest wait.
  static std::unique_ptr<MpiRendezvous> start(std::chrono::milliseconds timeout);
  ~MpiRendezvous();

  const std::shared_ptr<StoreClient>& store() const { return store_; }
  const std::string& endpoint() const { return endpoint_; }  // "host:port" of rank 0's server

 private:
  MpiRendezvous() = default;
  std::unique_ptr<StoreServer> server_;  // rank 0 only
  std::shared_ptr<StoreClient> store_;
  std::string endpoint_;
  std::chrono::milliseconds linger_{0};
};

// The first non-loopback IPv4 address `hostname` resolves to. Throws CommError naming the host
// when there is none.
std::string host_address_of(const std::string& hostname);

}  // namespace tandem
