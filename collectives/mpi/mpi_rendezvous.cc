#include "collectives/mpi/mpi_rendezvous.h"

#include <vector>

#include "collectives/mpi/mpi_bootstrap.h"
#include "collectives/net/host_address.h"
#include "collectives/store/job_token.h"
#include "core/base/error.h"

namespace tandem {

namespace {

// Where rank 0's store listens: the named interface's address, else the host MASTER_ADDR names
// (which must be this one), else loopback when the whole job is on this node, else this host's
// best candidate address (its hostname's, then its interfaces').
std::string store_address(bool one_node, const std::string& host_hint, const std::string& ifname) {
  if (!ifname.empty()) return interface_address(ifname);
  if (!host_hint.empty() && (one_node || !is_loopback(host_hint)))
    return local_address_of(host_hint);
  if (one_node) return StoreServer::kLoopback;
  const std::vector<std::string> candidates = candidate_addresses();
  TANDEM_CHECK_T(CommError, !candidates.empty(), "this host (", this_hostname(),
                 ") has no address but loopback, which the other nodes cannot reach");
  return candidates.front();
}

}  // namespace

std::unique_ptr<MpiRendezvous> MpiRendezvous::start(std::chrono::milliseconds timeout,
                                                    const std::string& host_hint,
                                                    const std::string& ifname, const JobTls& tls) {
  std::unique_ptr<MpiRendezvous> r(new MpiRendezvous());
  r->linger_ = timeout;
  const bool one_node = mpi_world_on_one_node();
  // Rank 0's answer, whatever happens to it: "ok ENDPOINT TOKEN\nCERTIFICATE" (no certificate on
  // loopback) or "error MESSAGE". An error travels like an endpoint, so that no rank waits for a
  // broadcast that never comes.
  std::string message;
  if (mpi_world_rank() == 0) {
    try {
      const std::string host = store_address(one_node, host_hint, ifname);
      const std::string token = generate_job_token();
      // Across hosts: a certificate of this job alone, made here and never written to a file.
      JobTls identity;
      identity.mode = tls.mode;
      if (tls_applies(host, tls)) {
        identity = generate_job_tls();
        identity.mode = tls.mode;
      }
      r->server_ = std::make_unique<StoreServer>(host, 0, token, identity);
      message = "ok " + r->server_->endpoint() + " " + token + "\n" + identity.cert_pem;
    } catch (const std::exception& e) {
      message = std::string("error ") + e.what();
    }
  }
  message = mpi_broadcast_string(message, 0, timeout, "store address");
  if (message.rfind("error ", 0) == 0)
    throw CommError(str("mpi rendezvous: rank 0 could not host the store: ", message.substr(6)));
  const size_t space = message.find(' ', 3);
  const size_t newline = message.find('\n');
  TANDEM_CHECK_T(CommError,
                 message.rfind("ok ", 0) == 0 && space != std::string::npos &&
                     newline != std::string::npos && newline > space,
                 "mpi rendezvous: malformed message from rank 0");
  r->endpoint_ = message.substr(3, space - 3);
  JobTls pinned;
  pinned.mode = tls.mode;
  pinned.cert_pem = message.substr(newline + 1);
  r->store_ = std::make_shared<StoreClient>(
      r->endpoint_, message.substr(space + 1, newline - space - 1), timeout, pinned);
  return r;
}

MpiRendezvous::~MpiRendezvous() {
  // Every rank says goodbye before rank 0's server goes away. A rank that never comes (it hangs,
  // or died and mpirun is tearing the job down) costs at most linger_.
  try {
    mpi_barrier_for(linger_);
  } catch (...) {
    // On the way out: MPI already failing is no reason to throw from a destructor.
  }
}

}  // namespace tandem
