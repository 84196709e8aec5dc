#include "launcher/mpi_rendezvous.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <unistd.h>

#include "collectives/mpi/mpi_bootstrap.h"
#include "collectives/store/job_token.h"
#include "core/base/error.h"

namespace tandem {

std::string host_address_of(const std::string& hostname) {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const int rc = getaddrinfo(hostname.c_str(), nullptr, &hints, &found);
  TANDEM_CHECK_T(CommError, rc == 0, "mpi rendezvous: cannot resolve this host's name '", hostname,
                 "': ", gai_strerror(rc), "; make it resolve to an address the other nodes reach");
  std::string address;
  for (addrinfo* a = found; a != nullptr && address.empty(); a = a->ai_next) {
    char text[INET_ADDRSTRLEN] = {};
    const auto* in = reinterpret_cast<const sockaddr_in*>(a->ai_addr);
    if (inet_ntop(AF_INET, &in->sin_addr, text, sizeof(text)) == nullptr) continue;
    if (std::string(text).rfind("127.", 0) != 0) address = text;
  }
  freeaddrinfo(found);
  TANDEM_CHECK_T(CommError, !address.empty(), "mpi rendezvous: this host's name '", hostname,
                 "' resolves only to loopback addresses, which the other nodes cannot reach; fix "
                 "/etc/hosts or DNS");
  return address;
}

std::unique_ptr<MpiRendezvous> MpiRendezvous::start(std::chrono::milliseconds timeout) {
  std::unique_ptr<MpiRendezvous> r(new MpiRendezvous());
  r->linger_ = timeout;
  const bool one_node = mpi_world_on_one_node();
  std::string message;  // "endpoint token", from rank 0
  if (mpi_world_rank() == 0) {
    std::string host = StoreServer::kLoopback;
    if (!one_node) {
      char name[256] = {};
      TANDEM_CHECK_T(CommError, gethostname(name, sizeof(name) - 1) == 0,
                     "mpi rendezvous: gethostname failed");
      host = host_address_of(name);
    }
    const std::string token = generate_job_token();
    r->server_ = std::make_unique<StoreServer>(host, 0, token);
    message = r->server_->endpoint() + " " + token;
  }
  message = mpi_broadcast_string(message, 0);
  const size_t space = message.find(' ');
  TANDEM_ASSERT(space != std::string::npos, "malformed rendezvous message");
  r->endpoint_ = message.substr(0, space);
  r->store_ = std::make_shared<StoreClient>(r->endpoint_, message.substr(space + 1), timeout);
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
