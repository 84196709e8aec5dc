// PsClient: one worker's connection to one parameter-server shard (ps.proto), with gRPC statuses
// turned into tandem errors that name the shard and its endpoint.
//
// Deadlines: every call has one (strategy.timeout_s). A blocking call (Pull, Barrier) sends its
// timeout to the server, which answers when it passes, and waits that plus a grace period. A shard
// that cannot be reached (UNAVAILABLE: the process died, the port is closed) is retried for at
// most kRetryWindow -- harmless even for Push, which the server de-duplicates on (worker, step) --
// and then the call fails with a CommError naming the shard. Register waits for a server that is
// still starting up (wait-for-ready) for the whole timeout.
//
// Sizes: restore and push send, pull and save receive, a stream of messages of at most
// max_message_bytes of tensor data each (ps.proto), so a shard may be larger than one message.
//
// Thread-safe: calls may run concurrently from several threads; cancel() ends them all (used when
// another shard failed, so a worker does not sit out the deadline of the healthy ones).
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "collectives/store/job_tls.h"
#include "configs/schema/enums.h"
#include "core/optim/optimizer.h"
#include "strategies/parameter_server/wire.h"

namespace grpc {
class ClientContext;
}

namespace tandem {

class PsClient {
 public:
  static constexpr std::chrono::milliseconds kRetryWindow{10'000};

  // tls: the job's certificate, pinned when the endpoint is not on loopback (job_tls.h).
  PsClient(int shard, std::string endpoint, std::string token, std::chrono::milliseconds timeout,
           int64_t max_message_bytes, const JobTls& tls = JobTls());
  ~PsClient();
  PsClient(const PsClient&) = delete;
  PsClient& operator=(const PsClient&) = delete;

  int shard() const { return shard_; }
  const std::string& endpoint() const { return endpoint_; }

  // Returns whether the shard already holds variables.
  bool register_worker(int worker, int world_size, int64_t incarnation, PsMode mode,
                       int num_shards);
  void restore(int world_size, const NamedTensors& params, const NamedTensors& optimizer_state);
  // Waits until the shard may serve `step` (see ps.proto) and calls `sink` with every parameter,
  // each checked (wire.h) before the call. Returns the shard's applied_through.
  int64_t pull(int worker, int64_t step, const std::function<void(const WireTensor&)>& sink);
  // Returns true when the shard had already applied this (worker, step).
  bool push(int worker, int64_t incarnation, int64_t step, double lr,
            const std::vector<std::pair<std::string, std::string_view>>& grads, DType dtype);
  std::vector<double> barrier(int worker, const std::string& key,
                              const std::vector<double>& values);
  void save(NamedTensors* params, NamedTensors* optimizer_state);
  void done(int worker);
  // Tells the shard that this worker failed (see ps.proto); one try, a short deadline, never
  // throws.
  void abort(int worker, const std::string& reason);

  void cancel();  // every call in flight and every later one fails at once

 private:
  struct Impl;
  template <typename Call>
  void call(const std::string& what, std::chrono::milliseconds deadline, bool wait_for_ready,
            Call&& rpc);

  int shard_;
  std::string endpoint_;
  std::chrono::milliseconds timeout_;
  int64_t max_message_bytes_;
  std::unique_ptr<Impl> impl_;
  std::mutex mu_;
  std::set<grpc::ClientContext*> active_;  // guarded by mu_
  std::atomic<bool> cancelled_{false};
};

}  // namespace tandem
