// WorkerHeartbeat: one thread, one store call per interval, woken early only to stop.
#include "launcher/heartbeat.h"

#include <algorithm>

#include "collectives/store/store_client.h"

namespace tandem {

WorkerHeartbeat::WorkerHeartbeat(StoreClient& client, int rank, std::chrono::milliseconds interval)
    : client_(client), rank_(rank), interval_(interval) {
  thread_ = std::thread([this] { loop(); });
}

WorkerHeartbeat::WorkerHeartbeat(std::unique_ptr<StoreClient> owned, int rank,
                                 std::chrono::milliseconds interval)
    : owned_client_(std::move(owned)), client_(*owned_client_), rank_(rank), interval_(interval) {
  thread_ = std::thread([this] { loop(); });
}

WorkerHeartbeat::~WorkerHeartbeat() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void WorkerHeartbeat::loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    lock.unlock();
    try {
      client_.heartbeat(rank_);
      sent_.fetch_add(1);
    } catch (const std::exception&) {
      failed_.fetch_add(1);  // the agent notices the silence; keep trying
    }
    lock.lock();
    wake_.wait_for(lock, interval_, [this] { return stop_; });
  }
}

std::unique_ptr<WorkerHeartbeat> WorkerHeartbeat::start_under_launcher(
    const ProcessEnvironment& env) {
  if (!env.under_tandem_launch() || env.job_token.empty()) return nullptr;
  std::chrono::milliseconds interval(env.heartbeat_interval_ms);
  // A heartbeat that cannot get through within two intervals is as good as lost, and the
  // destructor must not hang on a dead store for the store's usual 300 s.
  auto timeout = std::max(std::chrono::milliseconds(1000), 2 * interval);
  auto client =
      std::make_unique<StoreClient>(env.master_endpoint(), env.job_token, timeout, env.tls);
  return std::unique_ptr<WorkerHeartbeat>(
      new WorkerHeartbeat(std::move(client), env.rank, interval));
}

}  // namespace tandem
