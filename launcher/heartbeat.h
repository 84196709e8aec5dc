// WorkerHeartbeat: the worker side of `tandem launch`'s liveness check. A background thread tells
// the rendezvous store "rank R is alive" every `interval`; the agent (agent.h) reads the store's
// last heartbeats and restarts the job when a worker that has sent one goes quiet for longer than
// its --heartbeat-timeout.
//
// The one decision: the heartbeat runs on its own thread, so it proves that the process is
// scheduled and can reach the store (not frozen by SIGSTOP, swapped out, cut off from the network),
// not that training makes progress; a step that waits on a slow peer is a collective timeout's
// business. A failed heartbeat is not an error here: the agent judges silence, the worker keeps
// trying.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>

#include "strategies/process_environment.h"

namespace tandem {

class StoreClient;

class WorkerHeartbeat {
 public:
  // Starts sending at once, then every `interval`. `client` must outlive this object. Each
  // heartbeat blocks for at most the client's timeout, and so may the destructor.
  WorkerHeartbeat(StoreClient& client, int rank, std::chrono::milliseconds interval);
  // Stops the thread (after the heartbeat in flight, if any).
  ~WorkerHeartbeat();
  WorkerHeartbeat(const WorkerHeartbeat&) = delete;
  WorkerHeartbeat& operator=(const WorkerHeartbeat&) = delete;

  int64_t sent() const { return sent_.load(); }      // heartbeats the store acknowledged
  int64_t failed() const { return failed_.load(); }  // heartbeats that raised an error

  // For `tandem train`: when `env` says the process runs under `tandem launch` (it asked for
  // heartbeats), connects to the launcher's store with the job token and starts heartbeats for
  // env.rank at env.heartbeat_interval_ms; otherwise returns nullptr.
  static std::unique_ptr<WorkerHeartbeat> start_under_launcher(const ProcessEnvironment& env);

 private:
  void loop();

  std::unique_ptr<StoreClient> owned_client_;  // set by start_under_launcher only
  StoreClient& client_;
  const int rank_;
  const std::chrono::milliseconds interval_;
  std::atomic<int64_t> sent_{0};
  std::atomic<int64_t> failed_{0};
  std::mutex mu_;
  std::condition_variable wake_;
  bool stop_ = false;  // guarded by mu_
  std::thread thread_;

  WorkerHeartbeat(std::unique_ptr<StoreClient> owned, int rank, std::chrono::milliseconds interval);
};

}  // namespace tandem
