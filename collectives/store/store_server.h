// StoreServer: the rendezvous key-value service (store.proto) the launcher hosts on node 0.
//
// Design: gRPC's callback API, so a blocked Get or Wait holds no thread: it is parked in a waiter
// list, answered by the Set/Add/CompareSet that completes it, or by a timer thread when its
// timeout passes. Hundreds of ranks waiting at rendezvous cost memory, not threads.
//
// Security: binds 127.0.0.1 unless another host is given explicitly; every call must carry the job
// token in the metadata "x-tandem-token", else UNAUTHENTICATED (grpc_security.h), answered before
// a byte of the request is read -- what a caller without the token makes the store hold is the
// HTTP/2 flow-control window, not its message. A listener that is not on loopback serves TLS with
// the job's certificate (job_tls.h). The token is never logged or put in a reply. Limits: keys up
// to kMaxKeyBytes, values up to kMaxValueBytes (INVALID_ARGUMENT).
//
// Lifetime: serves from construction until destruction; the destructor answers pending waits
// with UNAVAILABLE and shuts the server down. Thread-safe; nothing here blocks except the
// destructor (until in-flight calls finish).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "collectives/store/job_tls.h"

namespace tandem {

class StoreService;

class StoreServer {
 public:
  static constexpr int64_t kMaxKeyBytes = 4 << 10;     // 4 KiB
  static constexpr int64_t kMaxValueBytes = 64 << 20;  // 64 MiB: room for a NCCL unique id list
  static constexpr const char* kLoopback = "127.0.0.1";

  // Listens on host:port. host "" means 127.0.0.1; "0.0.0.0" (or "::") listens on every
  // interface and should only come from an explicit user choice. port 0 picks a free port (see
  // port()). `token` must be non-empty. `tls`: the job's certificate and key, needed when the
  // host is not loopback (tls_applies). Throws CommError when the address cannot be bound,
  // ConfigError when TLS applies and the certificate or key cannot be read.
  StoreServer(const std::string& host, int port, const std::string& token,
              const JobTls& tls = JobTls());
  ~StoreServer();
  StoreServer(const StoreServer&) = delete;
  StoreServer& operator=(const StoreServer&) = delete;

  int port() const { return port_; }                 // the bound port
  const std::string& host() const { return host_; }  // as bound ("127.0.0.1" by default)
  std::string endpoint() const;                      // "127.0.0.1:29400", for StoreClient

 private:
  std::string host_;
  int port_ = 0;
  std::unique_ptr<StoreService> service_;
  struct GrpcServer;
  std::unique_ptr<GrpcServer> server_;
};

}  // namespace tandem
