// WorkerHeartbeat (launcher/heartbeat.h) against a real store on 127.0.0.1.
#include "launcher/heartbeat.h"

#include <gtest/gtest.h>

#include <thread>

#include "collectives/store/store_client.h"
#include "collectives/store/store_server.h"

namespace tandem {
namespace {

using std::chrono::milliseconds;

std::optional<HeartbeatRecord> record_of(StoreClient& client, int rank) {
  for (const HeartbeatRecord& r : client.last_heartbeats())
    if (r.rank == rank) return r;
  return std::nullopt;
}

TEST(WorkerHeartbeat, SendsHeartbeatsThatTheStoreRecordsUntilDestroyed) {
  StoreServer server("", 0, "token-1");
  StoreClient client(server.endpoint(), "token-1", milliseconds(5000));
  {
    WorkerHeartbeat beat(client, 3, milliseconds(50));
    std::this_thread::sleep_for(milliseconds(400));
    EXPECT_GE(beat.sent(), 3);
    EXPECT_EQ(beat.failed(), 0);
    std::optional<HeartbeatRecord> r = record_of(client, 3);
    ASSERT_TRUE(r);
    EXPECT_LT(r->age_ms, 300);  // 50 ms apart, with room for a loaded machine
  }
  std::this_thread::sleep_for(milliseconds(400));
  std::optional<HeartbeatRecord> r = record_of(client, 3);
  ASSERT_TRUE(r);
  EXPECT_GE(r->age_ms, 350);           // none since the destructor
  EXPECT_FALSE(record_of(client, 0));  // only rank 3 ever sent one
}

TEST(WorkerHeartbeat, StartsUnderTheLauncherOnlyWhenTheAgentAskedForHeartbeats) {
  StoreServer server("", 0, "token-2");
  ProcessEnvironment env;
  env.rank = 1;
  env.master_addr = "127.0.0.1";
  env.master_port = server.port();
  env.job_token = "token-2";
  EXPECT_EQ(WorkerHeartbeat::start_under_launcher(env), nullptr);  // no interval: not launched

  env.heartbeat_interval_ms = 50;
  std::unique_ptr<WorkerHeartbeat> beat = WorkerHeartbeat::start_under_launcher(env);
  ASSERT_NE(beat, nullptr);
  StoreClient client(server.endpoint(), "token-2", milliseconds(5000));
  for (int i = 0; i < 100 && !record_of(client, 1); ++i)
    std::this_thread::sleep_for(milliseconds(20));
  EXPECT_TRUE(record_of(client, 1));
}

TEST(WorkerHeartbeat, KeepsTryingWithoutThrowingWhenTheStoreRefusesIt) {
  StoreServer server("", 0, "right-token");
  StoreClient wrong(server.endpoint(), "wrong-token", milliseconds(2000));
  auto start = std::chrono::steady_clock::now();
  {
    WorkerHeartbeat beat(wrong, 2, milliseconds(20));
    for (int i = 0; i < 200 && beat.failed() < 3; ++i)
      std::this_thread::sleep_for(milliseconds(10));
    EXPECT_GE(beat.failed(), 3);
    EXPECT_EQ(beat.sent(), 0);
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  StoreClient right(server.endpoint(), "right-token", milliseconds(2000));
  EXPECT_FALSE(record_of(right, 2));
}

}  // namespace
}  // namespace tandem
