// PsServer: one shard of the parameter server (ps.proto), as `tandem ps --shard I` runs it.
//
// It holds the shard's variables (pieces of the model's parameters, see shard_plan.h) and an
// optimizer over them, created when the chief worker sends them (Restore): from fresh
// initialisation or from the checkpoint it resumed. Workers then pull parameters and push
// gradients; mode "sync" averages one push per worker per step and applies it once every worker
// pushed (same update as ddp), mode "async" applies each push on arrival, and with max_staleness
// > 0 holds back a Pull of a worker more than that many steps ahead of the slowest unfinished
// worker. A push is applied at most once per (worker, step); a push of an older incarnation of a
// worker (one the launcher has since restarted) is refused.
//
// Design: gRPC's synchronous server. A blocked Pull or Barrier holds one of gRPC's threads while it
// waits on a condition variable; a parameter server has tens of workers, not thousands, and the
// plain waits keep the sync/async rules readable. One mutex guards all state; the optimizer runs
// under it, so updates of a shard are serialised (as they must be: each sees the previous one).
//
// Security: binds 127.0.0.1 unless a host is given; every call must carry the job token in the
// metadata "x-tandem-token" (UNAUTHENTICATED, answered before a byte of the request is read); a
// server not on loopback speaks TLS with the job's certificate (grpc_security.h). Every tensor is
// checked (wire.h) before use, and a message over max_message_bytes is refused by gRPC and by those
// checks; a bad call is answered INVALID_ARGUMENT and changes nothing. A shard larger than one
// message is pulled, pushed, saved and restored as a stream of messages (ps.proto); the calls
// themselves live in ps_shard.h.
//
// Lifetime: serves from construction; finished() turns true once every worker of the job has
// called Done; shutdown() (and the destructor) stop accepting calls, wake every waiter with
// UNAVAILABLE and wait for in-flight calls to end. Thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "collectives/store/job_tls.h"
#include "configs/schema/enums.h"
#include "core/optim/optimizer.h"

namespace tandem {

class PsService;

struct PsServerOptions {
  std::string host;  // "" = 127.0.0.1
  int port = 0;      // 0 = a free port
  std::string token;
  // The job's certificate and key: read when the host is not loopback (TLS, job_tls.h).
  JobTls tls;
  int shard = 0;
  int num_shards = 1;
  PsMode mode = PsMode::kSync;
  int64_t max_staleness = 0;  // async: 0 = unbounded
  int64_t max_message_bytes = int64_t{256} << 20;
  // Builds the shard's optimizer over its variables (the same algorithm and hyper-parameters as
  // the experiment's optimizer; the learning rate comes with every push).
  std::function<std::unique_ptr<Optimizer>(const NamedTensors&)> make_optimizer;
};

class PsServer {
 public:
  // Throws CommError when the address cannot be bound, ConfigError for bad options (among them a
  // missing or unreadable certificate or key where TLS applies).
  explicit PsServer(PsServerOptions options);
  ~PsServer();
  PsServer(const PsServer&) = delete;
  PsServer& operator=(const PsServer&) = delete;

  int port() const { return port_; }
  const std::string& host() const { return host_; }
  std::string endpoint() const;  // "127.0.0.1:PORT"

  // Blocks until every worker has called Done, or `timeout` passes; returns finished().
  bool wait_finished(std::chrono::milliseconds timeout);
  bool finished() const;
  // async: the most steps a worker was served parameters ahead of the slowest unfinished one
  // (<= max_staleness when that is set).
  int64_t max_lead() const;
  // Stops serving: waiters are answered UNAVAILABLE, in-flight calls end (up to `grace`).
  void shutdown(std::chrono::milliseconds grace = std::chrono::milliseconds(5000));

 private:
  std::string host_;
  int port_ = 0;
  std::unique_ptr<PsService> service_;
  struct GrpcServer;
  std::unique_ptr<GrpcServer> server_;
};

}  // namespace tandem
