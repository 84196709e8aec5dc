// MpiRendezvous: a Store for jobs started by mpirun or srun --mpi, where no `tandem launch` hosts
// one. The checked communicator needs a Store to name the ranks that did not arrive when a wait
// times out, and to compare calls across ranks under strategy.debug_collectives -- so MPI jobs get
// the same diagnostics as launched ones.
//
// The decision: rank 0 hosts the StoreServer in its own process, on a free port, bound to the
// address of TANDEM_SOCKET_IFNAME's interface when that is set, else to MASTER_ADDR's (when set,
// it must name this host), else to 127.0.0.1 when every rank runs on its node
// (MPI_Comm_split_type), else to the address its hostname resolves to or its first interface's
// (collectives/net/host_address.h). It generates the job token and broadcasts endpoint
// and token over MPI, the job's trusted channel -- or, when it cannot host the store, the error,
// which every rank then throws: no rank is left waiting. The token is never printed. A store not
// on loopback serves TLS with a certificate rank 0 makes for this job in memory (job_tls.h), which
// travels with the endpoint; TANDEM_TLS=0 turns that off.
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
  // `timeout`: the store client's call deadline and the destructor's longest wait. host_hint
  // (MASTER_ADDR) and ifname (TANDEM_SOCKET_IFNAME): where rank 0 listens, when set (see above).
  // tls: its mode only (the certificate is made by rank 0). Throws CommError on every rank when
  // rank 0 could not start the store.
  static std::unique_ptr<MpiRendezvous> start(std::chrono::milliseconds timeout,
                                              const std::string& host_hint = "",
                                              const std::string& ifname = "",
                                              const JobTls& tls = JobTls());
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

}  // namespace tandem
