// The rendezvous Store: every RPC across concurrent clients, the job token, limits, timeouts that
// name the key, and binding to loopback unless told otherwise.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>
#include <thread>

#include "collectives/store/job_token.h"
#include "collectives/store/store_client.h"
#include "collectives/store/store_server.h"
#include "core/base/error.h"
#include "tests/support/test_support.h"
#include "tests/support/unauthenticated_call.h"

namespace tandem {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using testing::run_threads;

constexpr char kToken[] = "0123456789abcdef0123456789abcdef";

int64_t ms_since(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count();
}

// Expects `fn` to throw E whose message contains every one of `parts`; returns the message.
template <typename E>
std::string expect_throw_with(const std::function<void()>& fn,
                              const std::vector<std::string>& parts) {
  try {
    fn();
  } catch (const E& e) {
    std::string msg = e.what();
    for (const std::string& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << msg;
    return msg;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw another error: " << e.what();
    return "";
  }
  ADD_FAILURE() << "did not throw";
  return "";
}

// Local addresses (hex, as /proc/net/tcp and /proc/net/tcp6 write them) of the TCP sockets
// listening on `port`. gRPC listens on an IPv6 socket where it can, so 127.0.0.1 may appear as the
// v4-mapped ::ffff:127.0.0.1 in tcp6.
std::vector<std::string> listening_addresses(int port) {
  std::vector<std::string> found;
  for (const char* table : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::ifstream in(table);
    std::string line;
    std::getline(in, line);  // header
    while (std::getline(in, line)) {
      std::istringstream fields(line);
      std::string slot, local, remote, state;
      fields >> slot >> local >> remote >> state;
      size_t colon = local.rfind(':');
      if (colon == std::string::npos || state != "0A") continue;  // 0A: LISTEN
      if (std::stoi(local.substr(colon + 1), nullptr, 16) == port)
        found.push_back(local.substr(0, colon));
    }
  }
  return found;
}

// 127.0.0.1 as an IPv4 or a v4-mapped IPv6 address, in /proc/net's byte order.
bool is_loopback_v4(const std::string& hex) {
  return hex == "0100007F" || hex == "0000000000000000FFFF00000100007F";
}
bool is_any_address(const std::string& hex) {
  return hex.find_first_not_of('0') == std::string::npos;
}

TEST(StoreServer, ServesEveryCallToFourClientThreads) {
  StoreServer server("", 0, kToken);
  ASSERT_GT(server.port(), 0);
  EXPECT_EQ(server.endpoint(), "127.0.0.1:" + std::to_string(server.port()));
  std::atomic<int> leaders{0};
  std::vector<int64_t> adds(4);
  run_threads(4, [&](int r) {
    StoreClient client(server.endpoint(), kToken, 5s);
    client.set("addr/" + std::to_string(r), "host" + std::to_string(r));
    adds[r] = client.add("counter", r + 1);
    if (client.compare_set("leader", "", std::to_string(r)) == std::to_string(r)) ++leaders;
    client.wait({"addr/0", "addr/1", "addr/2", "addr/3"}, 5s);
    for (int q = 0; q < 4; ++q)
      EXPECT_EQ(client.get("addr/" + std::to_string(q)), "host" + std::to_string(q));
    EXPECT_EQ(client.get_many({"addr/3", "addr/1"}, 1s),
              (std::vector<std::string>{"host3", "host1"}));
    client.set("done/" + std::to_string(r), "");
  });
  StoreClient client(server.endpoint(), kToken, 5s);
  EXPECT_EQ(leaders.load(), 1);  // exactly one compare_set found the key missing
  std::sort(adds.begin(), adds.end());
  EXPECT_EQ(adds.back(), 10);  // 1 + 2 + 3 + 4, whatever the order
  EXPECT_EQ(client.add("counter", -10), 0);
  std::string leader = client.get("leader");
  EXPECT_TRUE(leader == "0" || leader == "1" || leader == "2" || leader == "3") << leader;
  // compare_set swaps only on a match and returns the value after the call.
  EXPECT_EQ(client.compare_set("leader", "not it", "x"), leader);
  EXPECT_EQ(client.compare_set("leader", leader, "x"), "x");
  EXPECT_EQ(client.compare_set("absent", "something", "y"), "");
  // remove: what existed, once.
  EXPECT_TRUE(client.remove("addr/0"));
  EXPECT_FALSE(client.remove("addr/0"));
  EXPECT_EQ(client.remove(std::vector<std::string>{"addr/1", "addr/2", "nope"}), 2);
  auto existing = client.get_existing({"addr/0", "addr/3", "done/2"});
  ASSERT_EQ(existing.size(), 3u);
  EXPECT_FALSE(existing[0].has_value());
  EXPECT_EQ(existing[1], std::optional<std::string>("host3"));
  EXPECT_EQ(existing[2], std::optional<std::string>(""));
}

TEST(StoreServer, GetBlocksUntilAnotherClientSetsTheKey) {
  StoreServer server("", 0, kToken);
  StoreClient setter(server.endpoint(), kToken, 5s), getter(server.endpoint(), kToken, 5s);
  Clock::time_point start = Clock::now();
  std::thread later([&] {
    std::this_thread::sleep_for(200ms);
    setter.set("gloo/0/addr", "10.0.0.1:4000");
  });
  EXPECT_EQ(getter.get("gloo/0/addr", 3s), "10.0.0.1:4000");
  int64_t waited = ms_since(start);
  later.join();
  EXPECT_GE(waited, 190);
  EXPECT_LT(waited, 2000);
  // add wakes a waiter too.
  std::thread adder([&] {
    std::this_thread::sleep_for(100ms);
    setter.add("step", 5);
  });
  EXPECT_EQ(getter.get("step", 3s), "5");
  adder.join();
}

TEST(StoreServer, RefusesCallsWithoutOrWithAWrongTokenAndKeepsServing) {
  StoreServer server("", 0, kToken);
  StoreClient anonymous(server.endpoint(), "", 2s);
  std::string msg = expect_throw_with<CommError>(
      [&] { anonymous.set("k", "v"); },
      {"store " + server.endpoint(), "set 'k'", "missing job token", "TANDEM_JOB_TOKEN"});
  StoreClient intruder(server.endpoint(), "ffffffffffffffffffffffffffffffff", 2s);
  std::string msg2 = expect_throw_with<CommError>([&] { intruder.get("k", 100ms); },
                                                  {"wrong job token", "TANDEM_JOB_TOKEN"});
  expect_throw_with<CommError>([&] { intruder.heartbeat(0); }, {"wrong job token"});
  expect_throw_with<CommError>([&] { intruder.last_heartbeats(); }, {"wrong job token"});
  // The token is never echoed, neither the real one nor the one sent.
  EXPECT_EQ(msg.find(kToken), std::string::npos);
  EXPECT_EQ(msg2.find(kToken), std::string::npos);
  EXPECT_EQ(msg2.find("ffffffff"), std::string::npos);
  // Nothing was written, and the server still serves the right token.
  StoreClient client(server.endpoint(), kToken, 2s);
  EXPECT_FALSE(client.get_existing({"k"})[0].has_value());
  client.set("k", "v");
  EXPECT_EQ(client.get("k"), "v");
}

TEST(StoreClient, GetOfAMissingKeyTimesOutNamingTheKey) {
  StoreServer server("", 0, kToken);
  StoreClient client(server.endpoint(), kToken, 5s);
  Clock::time_point start = Clock::now();
  expect_throw_with<TimeoutError>([&] { client.get("gloo/0/addr", 300ms); },
                                  {"store 127.0.0.1:" + std::to_string(server.port()) +
                                   ": get 'gloo/0/addr' timed out after 300 ms"});
  int64_t waited = ms_since(start);
  EXPECT_GE(waited, 290);
  EXPECT_LT(waited, 1500);
  client.set("a", "1");
  expect_throw_with<TimeoutError>(
      [&] {
        client.wait({"a", "b"}, 200ms);
      },
      {"wait for 'a', 'b' timed out after 200 ms: missing 'b'"});
}

TEST(StoreClient, UnreachableStoreFailsAfterTheDeadlineSayingSo) {
  int port;
  {
    StoreServer server("", 0, kToken);
    port = server.port();
  }  // nothing listens there any more
  StoreClient client("127.0.0.1:" + std::to_string(port), kToken, 300ms);
  Clock::time_point start = Clock::now();
  expect_throw_with<CommError>([&] { client.set("k", "v"); },
                               {"set 'k'", "could not reach the store"});
  EXPECT_LT(ms_since(start), 2000);
}

TEST(StoreServer, RefusesOversizedKeysAndAcceptsLargeValues) {
  StoreServer server("", 0, kToken);
  StoreClient client(server.endpoint(), kToken, 10s);
  std::string long_key(StoreServer::kMaxKeyBytes + 1, 'k');
  expect_throw_with<CommError>([&] { client.set(long_key, "v"); },
                               {"refused", "longer than the limit of 4096 bytes"});
  expect_throw_with<CommError>([&] { client.get(long_key, 100ms); }, {"4096 bytes"});
  std::string max_key(StoreServer::kMaxKeyBytes, 'k');
  client.set(max_key, "ok");
  EXPECT_EQ(client.get(max_key), "ok");
  // 5 MiB: more than gRPC's default 4 MiB message limit.
  std::string big(5 << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 131 % 251);
  client.set("big", big);
  EXPECT_EQ(client.get("big"), big);
  expect_throw_with<CommError>([&] { client.set("", "v"); }, {"empty key"});
  client.set("text", "not a number");
  expect_throw_with<CommError>([&] { client.add("text", 1); }, {"not a decimal integer"});
}

TEST(StoreClient, RefusesValuesOverTheLimitWithoutSendingThem) {
  StoreServer server("", 0, kToken);
  StoreClient client(server.endpoint(), kToken, 20s);
  std::string huge(StoreServer::kMaxValueBytes + 1, 'v');
  Clock::time_point start = Clock::now();
  expect_throw_with<CommError>([&] { client.set("huge", huge); },
                               {"set 'huge' refused", "over the limit of 67108864 bytes"});
  expect_throw_with<CommError>([&] { client.compare_set("huge", "", huge); },
                               {"compare_set 'huge' refused", "67108864 bytes"});
  EXPECT_LT(ms_since(start), 1000);  // refused here, not after shipping 64 MiB
  EXPECT_FALSE(client.get_existing({"huge"})[0].has_value());
}

// A call without the token is refused before its request is read, whatever the method: the
// store's peak memory does not grow with the message, neither for one under the store's message
// limit (gRPC reads a unary request whole before a handler sees the token) nor for one over it
// (gRPC 1.51 still reads that one before it refuses it). A caller with the token then still moves
// a value larger than gRPC's default 4 MiB limit, bit for bit.
TEST(StoreServer, ACallWithoutTheTokenIsRefusedBeforeItsMessageIsRead) {
  StoreServer server("", 0, kToken);
  constexpr int64_t kMiB = 1 << 20;
  constexpr int64_t kMostHeld = 16 * kMiB;  // measured: at most 6.4 MiB, a new connection included
  for (int64_t bytes : {32 * kMiB, 256 * kMiB}) {  // under and over the 129 MiB message limit
    if (!testing::expect_refused_before_read(
            server.endpoint(), "/tandem.store.Store/",
            {"Set", "Get", "Wait", "Add", "CompareSet", "Delete", "Heartbeat", "ListHeartbeats"},
            bytes, kMostHeld, "the store"))
      GTEST_SKIP() << "/proc/self/clear_refs is not writable: peak memory cannot be measured";
  }
  StoreClient client(server.endpoint(), kToken, 20s);
  std::string value(8 * kMiB + 3, '\0');
  for (size_t i = 0; i < value.size(); ++i) value[i] = static_cast<char>((i * 2654435761u) >> 13);
  client.set("big", value);
  EXPECT_EQ(client.get("big"), value);
  EXPECT_EQ(client.compare_set("big", value, "small"), "small");
}

TEST(StoreServer, ListensOnLoopbackByDefault) {
  StoreServer server("", 0, kToken);
  std::vector<std::string> listening = listening_addresses(server.port());
  ASSERT_EQ(listening.size(), 1u);
  EXPECT_TRUE(is_loopback_v4(listening[0])) << listening[0];
  // And a connection through any non-loopback address of this machine is refused.
  ifaddrs* addrs = nullptr;
  ASSERT_EQ(getifaddrs(&addrs), 0);
  int tried = 0;
  for (ifaddrs* a = addrs; a; a = a->ifa_next) {
    if (!a->ifa_addr || a->ifa_addr->sa_family != AF_INET) continue;
    sockaddr_in addr = *reinterpret_cast<sockaddr_in*>(a->ifa_addr);
    if ((ntohl(addr.sin_addr.s_addr) >> 24) == 127) continue;
    addr.sin_port = htons(static_cast<uint16_t>(server.port()));
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    EXPECT_NE(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0)
        << "the store accepted a connection on " << inet_ntoa(addr.sin_addr);
    close(fd);
    ++tried;
  }
  freeifaddrs(addrs);
  RecordProperty("non_loopback_addresses_tried", tried);
}

TEST(StoreServer, ListensOnEveryInterfaceOnlyWhenAsked) {
  // Every interface is not loopback: TLS with the job's certificate (job_tls.h).
  JobTls tls = generate_job_tls();
  StoreServer server("0.0.0.0", 0, kToken, tls);
  std::vector<std::string> listening = listening_addresses(server.port());
  ASSERT_EQ(listening.size(), 1u);
  EXPECT_TRUE(is_any_address(listening[0])) << listening[0];
  tls.mode = TlsMode::kAlways;  // through loopback, to the TLS listener
  StoreClient client("127.0.0.1:" + std::to_string(server.port()), kToken, 5s, tls);
  client.set("k", "v");
  EXPECT_EQ(client.get("k"), "v");
}

TEST(StoreServer, SecondServerOnABusyPortFailsNamingIt) {
  StoreServer first("", 0, kToken);
  std::string address = "127.0.0.1:" + std::to_string(first.port());
  expect_throw_with<CommError>([&] { StoreServer second("", first.port(), kToken); },
                               {"cannot listen on " + address});
  EXPECT_THROW(StoreServer("", 0, ""), ValueError);
}

TEST(StoreServer, RecordsTheLastHeartbeatOfEachRank) {
  StoreServer server("", 0, kToken);
  int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  run_threads(4, [&](int r) {
    StoreClient client(server.endpoint(), kToken, 5s);
    client.heartbeat(r);
  });
  std::this_thread::sleep_for(200ms);
  StoreClient client(server.endpoint(), kToken, 5s);
  client.heartbeat(2);
  std::vector<HeartbeatRecord> records = client.last_heartbeats();
  ASSERT_EQ(records.size(), 4u);
  for (int r = 0; r < 4; ++r) {
    EXPECT_EQ(records[r].rank, r);
    EXPECT_GE(records[r].timestamp_ms, now_ms);
    EXPECT_LT(records[r].timestamp_ms, now_ms + 5000);
  }
  EXPECT_GE(records[0].age_ms, 190);  // heard 200 ms ago
  EXPECT_LT(records[0].age_ms, 3000);
  EXPECT_LT(records[2].age_ms, records[0].age_ms);  // heard again just now
  EXPECT_GE(records[2].timestamp_ms, records[0].timestamp_ms + 190);
  expect_throw_with<CommError>([&] { client.heartbeat(-1); }, {"ranks are non-negative"});
}

TEST(StoreServer, DestroyingTheServerAnswersPendingWaits) {
  auto server = std::make_unique<StoreServer>("", 0, kToken);
  StoreClient client(server->endpoint(), kToken, 10s);
  std::string error;
  Clock::time_point start = Clock::now();
  std::thread waiter([&] {
    try {
      client.get("never", 8s);
    } catch (const CommError& e) {
      error = e.what();
    }
  });
  std::this_thread::sleep_for(200ms);
  server.reset();
  waiter.join();
  EXPECT_NE(error.find("shutting down"), std::string::npos) << error;
  EXPECT_LT(ms_since(start), 4000);
}

TEST(JobToken, Is32RandomHexCharacters) {
  std::set<std::string> seen;
  for (int i = 0; i < 8; ++i) {
    std::string token = generate_job_token();
    EXPECT_EQ(token.size(), 32u);
    EXPECT_EQ(token.find_first_not_of("0123456789abcdef"), std::string::npos) << token;
    seen.insert(token);
  }
  EXPECT_EQ(seen.size(), 8u);
}

}  // namespace
}  // namespace tandem
