// StoreClient: a worker's handle on the rendezvous Store (store_server.h), by gRPC.
//
// Every call sends the job token and has a deadline; across hosts it travels inside TLS. Calls wait
// for the connection (a worker may start before the store), so an unreachable store fails when the
// deadline passes, as a CommError that says so. Errors name the endpoint and the key:
//   TimeoutError "store 127.0.0.1:29400: get 'gloo/0/addr' timed out after 2000 ms"
//   CommError    "store 127.0.0.1:29400: set 'x' refused: wrong job token: ..."
//
// Thread-safe: one client may be shared by every thread of a process (and by several
// communicators). Each method blocks until the store answers; get, get_many and wait block until
// their keys exist or their timeout passes.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "collectives/store/job_tls.h"

namespace tandem {

struct HeartbeatRecord {
  int rank = 0;
  int64_t timestamp_ms = 0;  // the sender's wall clock when it sent the heartbeat
  int64_t age_ms = 0;        // how long ago the store received it, less time the store was frozen
};

class StoreClient {
 public:
  // 300 s: torch.distributed's default store timeout.
  static constexpr std::chrono::milliseconds kDefaultTimeout{300'000};

  // endpoint: "host:port". token: the job token (an empty token sends none, and every call is
  // refused). timeout: the deadline of every call, and the default wait of get and wait. tls: the
  // job's certificate, which the client pins when the endpoint is not on loopback (job_tls.h);
  // ConfigError naming the file when it is needed and cannot be read.
  StoreClient(std::string endpoint, std::string token,
              std::chrono::milliseconds timeout = kDefaultTimeout, const JobTls& tls = JobTls());
  ~StoreClient();
  StoreClient(const StoreClient&) = delete;
  StoreClient& operator=(const StoreClient&) = delete;

  const std::string& endpoint() const { return endpoint_; }
  std::chrono::milliseconds timeout() const { return timeout_; }

  void set(const std::string& key, const std::string& value);
  // With its own deadline (a background publisher that must not hang on a dead store).
  void set(const std::string& key, const std::string& value, std::chrono::milliseconds timeout);
  // Blocks until the key exists; TimeoutError naming the key after `timeout` (default timeout()).
  std::string get(const std::string& key);
  std::string get(const std::string& key, std::chrono::milliseconds timeout);
  // Blocks until every key exists; TimeoutError naming the missing keys.
  void wait(const std::vector<std::string>& keys);
  void wait(const std::vector<std::string>& keys, std::chrono::milliseconds timeout);
  // wait, then the values in the order of `keys`, in one round trip.
  std::vector<std::string> get_many(const std::vector<std::string>& keys,
                                    std::chrono::milliseconds timeout);
  // The values of the keys that exist now (nullopt for the others); never waits for keys.
  std::vector<std::optional<std::string>> get_existing(const std::vector<std::string>& keys);
  std::vector<std::optional<std::string>> get_existing(const std::vector<std::string>& keys,
                                                       std::chrono::milliseconds timeout);
  // Atomically adds delta to the decimal value at key (missing: 0); returns the new value.
  int64_t add(const std::string& key, int64_t delta);
  // Sets desired when the value equals expected (a missing key equals ""); returns the value after
  // the call ("" when the key does not exist).
  std::string compare_set(const std::string& key, const std::string& expected,
                          const std::string& desired);
  bool remove(const std::string& key);                   // whether it existed
  int64_t remove(const std::vector<std::string>& keys);  // how many existed
  // Tells the store that `rank` is alive now (wall clock).
  void heartbeat(int rank);
  // The last heartbeat of every rank heard from, ordered by rank.
  std::vector<HeartbeatRecord> last_heartbeats();

 private:
  struct Impl;
  std::string endpoint_;
  std::chrono::milliseconds timeout_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tandem
