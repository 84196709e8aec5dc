// PsShard: the state and the rules of one parameter-server shard (ps_server.h says what they
// are), with every call of ps.proto as a plain function of decoded messages: no network and no
// token. PsServer's gRPC service checks the token and feeds these; tests and the fuzzer
// (tests/fuzz) call them directly.
//
// The one decision: a stream a call receives (Push, Restore) is read whole and checked before the
// lock is taken, so a bad or broken stream changes nothing; a stream a call sends (Pull, Save) is
// built under the lock -- a consistent snapshot, as one message used to be -- and written after it
// is released, so a slow reader holds up no other call.
//
// Streams: `next` fills the next message and returns false at the end of the stream; `write`
// sends one and returns false when the peer is gone. A call that waits (Pull, Barrier) polls
// `cancelled` at least every 100 ms.
//
// Thread-safe: one mutex guards every field.
#pragma once

#include <grpcpp/support/status.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "strategies/parameter_server/ps.pb.h"
#include "strategies/parameter_server/ps_server.h"
#include "strategies/parameter_server/wire.h"

namespace tandem {

class PsShard {
 public:
  using Cancelled = std::function<bool()>;

  // `options` as PsServer checked them (host, port and token are not used here).
  explicit PsShard(PsServerOptions options);

  grpc::Status register_worker(const ps::RegisterRequest& req, ps::RegisterResponse* resp);
  grpc::Status restore(const std::function<bool(ps::RestoreRequest*)>& next);
  grpc::Status pull(const ps::PullRequest& req, const Cancelled& cancelled,
                    const std::function<bool(const ps::PullResponse&)>& write);
  grpc::Status push(const std::function<bool(ps::PushRequest*)>& next, ps::PushResponse* resp);
  grpc::Status barrier(const ps::BarrierRequest& req, const Cancelled& cancelled,
                       ps::BarrierResponse* resp);
  grpc::Status save(const std::function<bool(const ps::SaveResponse&)>& write);
  grpc::Status abort(const ps::AbortRequest& req);
  grpc::Status done(const ps::DoneRequest& req);

  // Wakes every waiting call, which answers UNAVAILABLE; later waits do too.
  void stop();
  bool wait_finished(std::chrono::milliseconds timeout);
  bool finished() const;
  int64_t max_lead() const;

 private:
  struct WorkerRecord {
    bool registered = false;
    int64_t incarnation = 0;
    int64_t last_step = -1;  // async: the newest step applied
  };
  struct PendingStep {  // sync: the pushes of one step so far
    std::set<int> workers;
    std::vector<Tensor> sums;
    double lr = 0;
  };
  struct BarrierState {
    std::set<int> arrived;
    std::vector<double> sums;
    bool complete = false;
  };
  // A push as read from its stream: the first message's fields and the gradients, whole.
  struct PushCall {
    ps::PushRequest head;  // without its grads
    std::vector<WireTensor> grads;
  };

  // Requires mu_.
  grpc::Status push_sync(const PushCall& call, const std::vector<int>& slot,
                         ps::PushResponse* resp);
  grpc::Status push_async(const PushCall& call, const std::vector<int>& slot, WorkerRecord& w,
                          ps::PushResponse* resp);
  void apply(const std::vector<Tensor>& grads, double lr);
  std::vector<int> lagging(int64_t step) const;
  int64_t lead(int64_t step) const;
  std::vector<int> missing_pushers(int64_t step) const;
  std::optional<grpc::Status> wait(std::unique_lock<std::mutex>& lock, int64_t timeout_ms,
                                   const Cancelled& cancelled, const std::function<bool()>& ready,
                                   const std::function<std::string()>& why);
  std::optional<grpc::Status> check_world(int world_size);
  std::optional<grpc::Status> check_worker(int worker) const;

  const PsServerOptions o_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;  // guarded by mu_
  std::string aborted_;    // why the job was aborted (Abort); "" while it runs
  bool initialized_ = false;
  bool finished_ = false;
  int world_size_ = 0;
  NamedTensors params_;               // the shard's pieces, flat, contiguous
  std::map<std::string, int> index_;  // piece name -> index in params_
  std::unique_ptr<Optimizer> optimizer_;
  std::map<int64_t, PendingStep> pending_;  // sync: by step
  int64_t applied_through_ = 0;             // sync: every step below this is applied
  int64_t pushes_applied_ = 0;              // async
  int64_t max_lead_ = 0;                    // async: the largest lead() a pull was served at
  std::map<int, WorkerRecord> workers_;
  std::set<int> done_;
  std::map<std::string, BarrierState> barriers_;
  std::deque<std::string> barrier_order_;
};

}  // namespace tandem
