// The agent's policy: store, rendezvous of agents, rounds, restarts (see agent.h). The processes
// themselves are WorkerGroup's business (agent_workers.h).
//
// Keys on the store, all under "tandem/launch/":
//   hello/<node>, node/<node>     an agent reached the store / claimed its node rank
//   rdzv, rdzv/all                 barrier: every agent arrived
//   round/<n>/failure              the first failure of round n (compare-and-set: one writer wins)
//   round/<n>/stopped[/all]        barrier: every agent stopped its workers after that failure
//   round/<n>/done                 how many nodes' workers all exited 0 in round n
//   stop                           an agent got SIGINT/SIGTERM: every agent stops, none restarts
//   left                           agents on other nodes that are exiting (node 0 waits for them
//                                  before it closes the store)
//   round/<n>/ps_endpoints         the parameter servers node 0 starts in round n (--num-ps)
//   round                          the newest round any agent has started (for a rejoining agent)
//   round/<n>/attempt              TANDEM_RESTART_COUNT of round n (the first agent there sets it)
// and heartbeats: agent n sends them as rank kAgentHeartbeatRank + n, beside its workers' ranks.
//
// Losing a host: an agent whose heartbeat is older than --heartbeat-timeout is lost with its host;
// the others fail the round naming the host and its ranks, stop their workers and wait at the
// restart barrier (at most --rdzv-timeout) for that node's `tandem launch` to be started again. A
// new agent for a node whose agent is lost takes the node over, fails the current round if nobody
// has, and joins the others at that barrier: the next round starts with every node and resumes
// from the newest checkpoint. Losing node 0's host loses the store: every other agent ends the job.
#include "launcher/agent.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstring>
#include <memory>
#include <optional>

#include "collectives/net/host_address.h"
#include "collectives/shm/shm_segments.h"
#include "collectives/store/job_token.h"
#include "collectives/store/store_client.h"
#include "collectives/store/store_server.h"
#include "core/base/error.h"
#include "launcher/agent_workers.h"
#include "launcher/heartbeat.h"
#include "launcher/stop_signal.h"

namespace tandem {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// The deadline of the agent's own store calls once the agents have met.
constexpr milliseconds kStoreCallTimeout{30'000};
// How long node 0 keeps the store up for the other agents to read the job's end.
constexpr milliseconds kLeaveWait{10'000};
// The deadline of a farewell (a stop announced, a goodbye): the agent is on its way out.
constexpr milliseconds kFarewellTimeout{3'000};
// Slices of a long wait, between which the agent looks at its signals.
constexpr milliseconds kWaitSlice{500};
// Agents' heartbeats go to the store as ranks from here on (workers' ranks are far below).
constexpr int kAgentHeartbeatRank = 1 << 30;

struct Interrupted {
  int sig;
};

// Ends the failure of a worker or server that exited kUsageErrorExitStatus. Agents on other
// nodes read the round's failure from the store and recognise it by this ending.
constexpr const char* kUsageErrorNote =
    " (a usage or configuration error: a restart would fail the same way)";

bool is_usage_error(const WorkerExit& e) {
  return WIFEXITED(e.wait_status) && WEXITSTATUS(e.wait_status) == kUsageErrorExitStatus;
}

bool ends_with(const std::string& s, const std::string& end) {
  return s.size() >= end.size() && s.compare(s.size() - end.size(), end.size(), end) == 0;
}

std::string key(const std::string& k) {
  return "tandem/launch/" + k;
}
std::string round_key(int round, const char* what) {
  return str("tandem/launch/round/", round, "/", what);
}

std::string seconds(milliseconds ms) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f", ms.count() / 1000.0);
  return buf;
}

// Rounded up to 0.1 s, so a silence just past the timeout never reads as equal to it.
std::string seconds_up(milliseconds ms) {
  return seconds(milliseconds((ms.count() + 99) / 100 * 100));
}

std::string signal_abbrev(int sig) {
  const char* a = sigabbrev_np(sig);
  return a != nullptr ? str("SIG", a) : str("signal ", sig);
}

std::string workers(int n) {
  return n == 1 ? "1 worker" : str(n, " workers");
}

struct Endpoint {
  std::string host;
  int port = 0;
};

Endpoint parse_endpoint(const std::string& s) {
  auto bad = [&]() {
    return ConfigError(
        str("--rdzv-endpoint '", s, "' is not HOST:PORT (e.g. node01:29400 or [fe80::1]:29400)"));
  };
  Endpoint e;
  size_t colon;
  if (!s.empty() && s.front() == '[') {
    size_t close = s.find(']');
    if (close == std::string::npos || close + 1 >= s.size() || s[close + 1] != ':') throw bad();
    e.host = s.substr(1, close - 1);
    colon = close + 1;
  } else {
    colon = s.rfind(':');
    if (colon == std::string::npos || s.find(':') != colon) throw bad();
    e.host = s.substr(0, colon);
  }
  std::string port = s.substr(colon + 1);
  if (e.host.empty() || port.empty() || port.size() > 5 ||
      !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }))
    throw bad();
  e.port = std::stoi(port);
  if (e.port < 1 || e.port > 65535) throw bad();
  return e;
}

// A port nobody listens on now, for a parameter server to bind right after. Another process may
// take it in between: the server then fails to bind, which fails the round like any crash.
int pick_free_port(const std::string& host) {
  sockaddr_storage addr{};
  socklen_t len;
  int family = host.find(':') != std::string::npos ? AF_INET6 : AF_INET;
  if (family == AF_INET6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&addr);
    a->sin6_family = AF_INET6;
    inet_pton(AF_INET6, host.c_str(), &a->sin6_addr);
    len = sizeof(sockaddr_in6);
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&addr);
    a->sin_family = AF_INET;
    if (inet_pton(AF_INET, host.c_str(), &a->sin_addr) != 1) a->sin_addr.s_addr = htonl(INADDR_ANY);
    len = sizeof(sockaddr_in);
  }
  int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    throw IoError(str("cannot create a socket to find a free port: ", std::strerror(errno)));
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), len) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0)
    port = ntohs(family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port
                                    : reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
  int e = errno;
  close(fd);
  if (port == 0) throw IoError(str("cannot find a free port on ", host, ": ", std::strerror(e)));
  return port;
}

int usable_cpus() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1L, sysconf(_SC_NPROCESSORS_ONLN));
}

class Agent {
 public:
  Agent(const AgentOptions& o, const std::vector<std::string>& argv)
      : o_(o), argv_(argv), shm_prefix_(new_shm_prefix()), group_(o.out_fd, o.err_fd) {
    // 5 s between heartbeats, and at least four of them within the timeout.
    heartbeat_interval_ =
        o_.heartbeat_interval.count() > 0
            ? o_.heartbeat_interval
            : std::clamp(o_.heartbeat_timeout / 4, milliseconds(1), milliseconds(5000));
  }

  int run() {
    int code;
    try {
      connect();
      code = run_rounds();
    } catch (const Interrupted& i) {
      group_.say(str("stopped by ", signal_abbrev(i.sig)));
      announce_stop(str(signal_abbrev(i.sig), " to the agent on node ", o_.node_rank));
      code = 128 + i.sig;
    } catch (const Error& e) {
      announce_stop(str("the agent on node ", o_.node_rank, " failed: ", e.what()));
      remove_left_segments();
      leave();
      throw;
    }
    remove_left_segments();
    leave();
    return code;
  }

 private:
  enum class End { kSucceeded, kFailed, kStopped };
  struct RoundEnd {
    End end = End::kSucceeded;
    std::string reason;
    int exit_code = 0;
    bool fatal = false;  // a failure no restart can help (the store is gone)
  };

  // One round's state, shared by the steps of run_round.
  struct Round {
    int number = 0;
    Clock::time_point started, next_tick;
    std::optional<std::string> failure;
    bool fatal = false;  // the failure is the store's: no restart can help
    int stop_sig = 0;    // the signal passed to the workers; 0 while running
    RoundEnd stopped{End::kStopped, "", 0, false};
    bool reported_done = false;                           // this node's workers all exited 0
    std::optional<Clock::time_point> store_silent_since;  // the store has not answered since
    // Single workers to start again (restart_single_workers) once their backoff has passed.
    std::vector<std::pair<Clock::time_point, int>> due_restarts;
  };

  void connect();
  // Node 0 starts the store; returns the endpoint this node's clients reach it at.
  std::string open_store(const Endpoint& ep);
  // Agents on other nodes may start before node 0: says hello until the store answers.
  void wait_for_store();
  int run_rounds();
  RoundEnd run_round(int round);
  // The steps of run_round: each reads and updates the round's state.
  void stop_workers(Round& r, int sig, const std::string& reason, int exit_code);
  void take_signals(Round& r);
  void take_exits(Round& r);
  void restart_due_workers(Round& r);
  void report_done(Round& r);
  bool monitor(Round& r);  // the store's news, heartbeats; true once every node's workers are done
  RoundEnd end_failed_round(Round& r);
  std::vector<WorkerSpec> specs(int round, const std::string& ps_endpoints) const;
  std::string ps_endpoints(int round);
  std::optional<std::string> check_heartbeats(Clock::time_point started);
  void barrier(const std::string& name, const std::string& what);
  // Waits `d`, writing the workers' remaining output; a SIGINT/SIGTERM ends the wait (and the job).
  void wait_interruptibly(milliseconds d) {
    auto deadline = Clock::now() + d;
    for (;;) {
      throw_if_signalled();
      auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) return;
      group_.pump(std::min(left, milliseconds(100)));
    }
  }
  void throw_if_signalled() {
    group_.pump(milliseconds(0));
    std::vector<int> s = group_.take_signals();
    if (!s.empty()) throw Interrupted{s.front()};
  }
  void announce_stop(const std::string& why) {
    if (o_.nnodes == 1 || !joined_) return;
    try {
      farewell_client_->compare_set(key("stop"), "", why);
    } catch (const Error&) {
    }
  }
  void leave();
  // Removes the shared-memory segments this node's workers left in /dev/shm (a rank killed while
  // setting one up); called once the round's workers are all gone.
  void remove_left_segments() {
    const ShmSegments removed = remove_shm_segments(shm_prefix_);
    if (removed.count > 0)
      group_.say(str("removed ", removed.count, " shared-memory segment(s) (", removed.bytes,
                     " bytes) left in /dev/shm/", shm_prefix_, "* by this round's workers"));
  }
  void claim_node();
  void rejoin();
  // Nodes (other than this one) whose agent has been silent for longer than the heartbeat
  // timeout, with how long, by node.
  std::vector<std::pair<int, int64_t>> lost_nodes();
  std::string report_lost_nodes();
  std::string describe_node(int node);  // "host h1 (node 1, ranks 2-3)"
  std::optional<int64_t> agent_heartbeat_age(int node);
  int agree_attempt(int round);

  std::string lost_store(const std::string& why) const {
    return str("lost the store at ", client_->endpoint(), " (node 0's host)", ": ", why);
  }

  int world_size() const { return o_.nnodes * o_.nproc_per_node; }
  bool watches_agents() const { return o_.nnodes > 1 && o_.heartbeat_timeout.count() > 0; }

  AgentOptions o_;
  std::vector<std::string> argv_;
  std::string token_;
  std::string master_addr_;
  int master_port_ = 0;
  std::string bind_host_;   // node 0: the address the store (and parameter servers) listen on
  std::string shm_prefix_;  // this node's workers' /dev/shm segments (TANDEM_SHM_PREFIX)
  std::string round_ps_endpoints_;  // TANDEM_PS_ENDPOINTS of the current round
  // Restarts so far, of the whole job (a new round) or of one worker (restart_single_workers);
  // workers see it as TANDEM_RESTART_COUNT, so it only grows.
  int restarts_used_ = 0;
  milliseconds heartbeat_interval_{0};
  std::unique_ptr<StoreServer> server_;  // node 0 only
  std::unique_ptr<StoreClient> client_;
  std::unique_ptr<StoreClient> farewell_client_;  // the same store, short deadlines
  bool joined_ = false;                           // this agent has claimed its node rank
  int first_round_ = 0;  // a rejoining agent starts at the others' next round
  std::unique_ptr<StoreClient> heartbeat_client_;  // the agent's heartbeats, short deadlines
  std::unique_ptr<WorkerHeartbeat> heartbeat_;     // this agent's own, to the other agents
  std::vector<bool> lost_reported_;                // nodes already named as lost
  StopSignals stop_signals_;  // when a SIGTERM/SIGINT after the first kills the workers
  WorkerGroup group_;         // last: workers die before the store closes
};

void Agent::connect() {
  Endpoint ep;
  if (!o_.rdzv_endpoint.empty()) ep = parse_endpoint(o_.rdzv_endpoint);
  token_ = o_.job_token;
  if (token_.empty()) token_ = generate_job_token();
  const std::string client_endpoint = open_store(ep);
  // Losing node 0's host loses the store: noticed within the heartbeat timeout when it is set.
  milliseconds call_timeout = kStoreCallTimeout;
  if (o_.nnodes > 1 && o_.heartbeat_timeout.count() > 0)
    call_timeout = std::clamp(o_.heartbeat_timeout, milliseconds(2000), kStoreCallTimeout);
  client_ = std::make_unique<StoreClient>(client_endpoint, token_, call_timeout, o_.tls);
  farewell_client_ =
      std::make_unique<StoreClient>(client_endpoint, token_, kFarewellTimeout, o_.tls);

  if (o_.nnodes > 1) {
    wait_for_store();
    claim_node();
    if (watches_agents()) {
      heartbeat_client_ = std::make_unique<StoreClient>(
          client_endpoint, token_, std::max(milliseconds(1000), 2 * heartbeat_interval_), o_.tls);
      heartbeat_ = std::make_unique<WorkerHeartbeat>(
          *heartbeat_client_, kAgentHeartbeatRank + o_.node_rank, heartbeat_interval_);
    }
    if (first_round_ > 0) {
      rejoin();
    } else {
      barrier(key("rdzv"), "join the job");
    }
  }
  int first = o_.node_rank * o_.nproc_per_node;
  std::string ranks = o_.nproc_per_node == 1
                          ? str("rank ", first)
                          : str("ranks ", first, "-", first + o_.nproc_per_node - 1);
  group_.say(str("node ", o_.node_rank, " of ", o_.nnodes, ": ", workers(o_.nproc_per_node), " (",
                 ranks, " of ", world_size(), "), store at ",
                 join_host_port(master_addr_, master_port_)));
}

std::string Agent::open_store(const Endpoint& ep) {
  if (o_.node_rank != 0) {
    master_addr_ = ep.host;
    master_port_ = ep.port;
    return o_.rdzv_endpoint;
  }
  // The store listens on the address the endpoint names on this host -- never on every
  // interface: loopback for a one-node job, else what the other nodes were told to reach.
  std::string bind = StoreServer::kLoopback;
  if (!ep.host.empty()) {
    try {
      bind = local_address_of(ep.host);
    } catch (const ConfigError& e) {
      throw ConfigError(
          str("--rdzv-endpoint ", o_.rdzv_endpoint, ": node 0 hosts the store, but ", e.what()));
    }
  }
  server_ = std::make_unique<StoreServer>(bind, ep.port, token_, o_.tls);
  bind_host_ = bind;
  master_port_ = server_->port();
  master_addr_ = ep.host.empty() ? std::string(StoreServer::kLoopback) : ep.host;
  return join_host_port(bind, master_port_);
}

void Agent::wait_for_store() {
  auto deadline = Clock::now() + o_.rdzv_timeout;
  for (;;) {
    throw_if_signalled();
    try {
      client_->set(key(str("hello/", o_.node_rank)), this_hostname(), kWaitSlice * 4);
      return;
    } catch (const CommError& e) {
      bool unreachable = std::strstr(e.what(), "refused") == nullptr;
      if (!unreachable)
        throw CommError(str("node ", o_.node_rank, " may not use the store: ", e.what()));
      if (Clock::now() >= deadline)
        throw CommError(str("node ", o_.node_rank, " found no store at ", o_.rdzv_endpoint,
                            " within ", seconds(o_.rdzv_timeout), " s: ", e.what()));
      group_.pump(milliseconds(100));  // not a busy loop when the failure comes at once
    } catch (const TimeoutError&) {
      if (Clock::now() >= deadline) throw;
    }
  }
}

std::optional<int64_t> Agent::agent_heartbeat_age(int node) {
  for (const HeartbeatRecord& r : client_->last_heartbeats())
    if (r.rank == kAgentHeartbeatRank + node) return r.age_ms;
  return std::nullopt;
}

std::string Agent::describe_node(int node) {
  std::optional<std::string> host;
  try {
    host = client_->get_existing({key(str("hello/", node))})[0];
  } catch (const Error&) {
  }
  const int first = node * o_.nproc_per_node;
  const std::string ranks = o_.nproc_per_node == 1
                                ? str("rank ", first)
                                : str("ranks ", first, "-", first + o_.nproc_per_node - 1);
  return str("host ", host ? *host : std::string("?"), " (node ", node, ", ", ranks, ")");
}

// Names each lost node once, as it is found lost; returns every lost node's description.
std::string Agent::report_lost_nodes() {
  std::string lost;
  for (const auto& [node, age] : lost_nodes()) {
    lost += str(lost.empty() ? "" : ", ", describe_node(node));
    if (lost_reported_.size() < static_cast<size_t>(o_.nnodes)) lost_reported_.resize(o_.nnodes);
    if (lost_reported_[node]) continue;
    lost_reported_[node] = true;
    group_.say(str(describe_node(node), " lost: its agent sent no heartbeat for ",
                   seconds_up(milliseconds(age)), " s; waiting up to ", seconds(o_.rdzv_timeout),
                   " s (--rdzv-timeout) for its `tandem launch` to be started again"));
  }
  return lost;
}

std::vector<std::pair<int, int64_t>> Agent::lost_nodes() {
  std::vector<std::pair<int, int64_t>> lost;
  if (!watches_agents()) return lost;
  for (const HeartbeatRecord& r : client_->last_heartbeats()) {
    const int node = r.rank - kAgentHeartbeatRank;
    if (node < 0 || node >= o_.nnodes || node == o_.node_rank) continue;
    if (r.age_ms > o_.heartbeat_timeout.count()) lost.push_back({node, r.age_ms});
  }
  return lost;
}

// Claims this agent's node rank. A node already claimed by an agent that is lost (silent for
// longer than the heartbeat timeout) is taken over: this is that node's `tandem launch` started
// again, after its host was lost, and it rejoins the running job (rejoin()). While the old agent's
// silence is shorter than the timeout, the claim waits (the host may have been restarted quickly).
void Agent::claim_node() {
  const std::string me = str(this_hostname(), " pid ", getpid());
  const std::string node_key = key(str("node/", o_.node_rank));
  std::string owner = client_->compare_set(node_key, "", me);
  auto deadline = Clock::now() + 2 * o_.heartbeat_timeout + milliseconds(5000);
  bool said = false;
  while (owner != me) {
    throw_if_signalled();
    std::optional<int64_t> age =
        watches_agents() ? agent_heartbeat_age(o_.node_rank) : std::nullopt;
    TANDEM_CHECK_T(ConfigError, age.has_value() && Clock::now() < deadline, "--node-rank ",
                   o_.node_rank, " is already taken by the agent on ", owner,
                   ", which is alive; give every node its own rank");
    if (*age > o_.heartbeat_timeout.count()) {
      const std::string previous = owner;
      owner = client_->compare_set(node_key, previous, me);
      if (owner == me) {
        std::optional<std::string> round = client_->get_existing({key("round")})[0];
        first_round_ = round ? std::stoi(*round) + 1 : 1;
        group_.say(str("node ", o_.node_rank, " was held by the agent on ", previous,
                       " (silent for ", seconds_up(milliseconds(*age)), " s): taking it over"));
      }
      continue;
    }
    if (!said)
      group_.say(str("node ", o_.node_rank, " is held by the agent on ", owner,
                     ", last heard from ", seconds_up(milliseconds(*age)),
                     " s ago: waiting for it to time out (--heartbeat-timeout ",
                     seconds(o_.heartbeat_timeout), " s)"));
    said = true;
    group_.pump(milliseconds(200));
  }
  joined_ = true;
}

// A node taken over from a lost agent: fails the round the others are in (if nobody has yet --
// this node's workers are gone), and waits with them at its restart barrier.
void Agent::rejoin() {
  const int round = first_round_ - 1;
  client_->compare_set(round_key(round, "failure"), "",
                       str(describe_node(o_.node_rank), " came back: its agent was started again"));
  group_.say(str("rejoining the job: waiting for the other agents to stop round ", round));
  barrier(round_key(round, "stopped"), str("restart round ", round + 1));
  restarts_used_ = first_round_;
}

// Round n's TANDEM_RESTART_COUNT, the same on every node: the first agent to start the round
// writes its count, the others take it (a rejoining agent's own count may lag).
int Agent::agree_attempt(int round) {
  if (o_.nnodes == 1) return restarts_used_;
  client_->set(key("round"), std::to_string(round));
  const std::string agreed =
      client_->compare_set(round_key(round, "attempt"), "", std::to_string(restarts_used_));
  return std::stoi(agreed);
}

void Agent::barrier(const std::string& name, const std::string& what) {
  int64_t arrived = client_->add(name, 1);
  if (arrived == o_.nnodes) client_->set(name + "/all", "1");
  auto deadline = Clock::now() + o_.rdzv_timeout;
  for (;;) {
    throw_if_signalled();
    std::vector<std::optional<std::string>> news =
        client_->get_existing({name + "/all", key("stop")});
    if (news[0]) return;
    if (news[1]) throw CommError(str("stopped while waiting to ", what, ": ", *news[1]));
    const std::string lost = report_lost_nodes();
    if (Clock::now() >= deadline) {
      if (!lost.empty())
        throw TimeoutError(
            str(lost, " did not come back within ", seconds(o_.rdzv_timeout), " s to ", what));
      std::vector<std::string> nodes;
      for (int n = 0; n < o_.nnodes; ++n) nodes.push_back(key(str("node/", n)));
      std::vector<std::optional<std::string>> claimed = client_->get_existing(nodes);
      std::string missing;
      for (int n = 0; n < o_.nnodes; ++n)
        if (!claimed[n]) missing += str(missing.empty() ? "" : ", ", n);
      throw TimeoutError(
          str("only ", client_->add(name, 0), " of ", o_.nnodes, " agents came to ", what,
              " within ", seconds(o_.rdzv_timeout), " s",
              missing.empty() ? std::string() : " (never seen: node " + missing + ")"));
    }
    try {
      client_->wait({name + "/all"}, kWaitSlice);
    } catch (const TimeoutError&) {
    }
  }
}

int Agent::run_rounds() {
  for (int round = first_round_;; ++round) {
    RoundEnd r = run_round(round);
    remove_left_segments();
    if (r.end == End::kSucceeded) return 0;
    if (r.end == End::kStopped) {
      group_.say(r.reason);
      return r.exit_code;
    }
    if (r.fatal) {
      group_.say(str(r.reason, "; no restart is possible without the store"));
      return 1;
    }
    if (ends_with(r.reason, kUsageErrorNote)) {
      group_.say(str(r.reason, "; not restarting (exit status ", kUsageErrorExitStatus, ")"));
      announce_stop(str("the agent on node ", o_.node_rank, " ended the job after ", r.reason));
      return kUsageErrorExitStatus;
    }
    if (restarts_used_ >= o_.max_restarts) {
      group_.say(str(r.reason, "; no restarts left (--max-restarts ", o_.max_restarts, ")"));
      // Agents with restarts left (another --max-restarts) must not wait for this one.
      announce_stop(str("the agent on node ", o_.node_rank, " gave up after ", r.reason));
      return 1;
    }
    restarts_used_ += 1;
    std::string servers = o_.num_ps == 0 || o_.node_rank != 0 ? std::string()
                          : o_.num_ps == 1 ? std::string(" and the parameter server")
                                           : str(" and ", o_.num_ps, " parameter servers");
    const milliseconds backoff = restart_backoff(o_.restart_backoff, restarts_used_);
    group_.say(str(r.reason, "; restarting ", world_size() == 1 ? "" : "all ",
                   workers(world_size()), servers,
                   backoff.count() > 0 ? str(" in ", seconds(backoff), " s") : std::string(),
                   " (restart ", restarts_used_, " of ", o_.max_restarts, ")"));
    if (o_.nnodes > 1) barrier(round_key(round, "stopped"), str("restart round ", round + 1));
    wait_interruptibly(backoff);
  }
}

std::string Agent::ps_endpoints(int round) {
  if (o_.num_ps == 0) return "";
  const std::string k = round_key(round, "ps_endpoints");
  if (o_.node_rank != 0) return client_->get(k, o_.rdzv_timeout);
  std::string list;
  for (int s = 0; s < o_.num_ps; ++s) {
    if (s > 0) list += ',';
    list += join_host_port(master_addr_, pick_free_port(bind_host_));
  }
  if (o_.nnodes > 1) client_->set(k, list);
  return list;
}

std::vector<WorkerSpec> Agent::specs(int round, const std::string& ps_endpoints) const {
  std::vector<WorkerSpec> out;
  int threads = std::max(1, (o_.cpu_count > 0 ? o_.cpu_count : usable_cpus()) / o_.nproc_per_node);
  for (int local = 0; local < o_.nproc_per_node; ++local) {
    std::map<std::string, std::string> env = o_.environment;
    int rank = o_.node_rank * o_.nproc_per_node + local;
    env["RANK"] = std::to_string(rank);
    env["LOCAL_RANK"] = std::to_string(local);
    env["WORLD_SIZE"] = std::to_string(world_size());
    env["LOCAL_WORLD_SIZE"] = std::to_string(o_.nproc_per_node);
    env["NODE_RANK"] = std::to_string(o_.node_rank);
    env["GROUP_RANK"] = std::to_string(o_.node_rank);  // torchrun's name for it
    env["MASTER_ADDR"] = master_addr_;
    env["MASTER_PORT"] = std::to_string(master_port_);
    env["TANDEM_JOB_TOKEN"] = token_;
    env["TANDEM_RESTART_COUNT"] = std::to_string(round);
    env["TORCHELASTIC_RESTART_COUNT"] = std::to_string(round);
    env["TANDEM_SHM_PREFIX"] = shm_prefix_;
    env["TORCHELASTIC_MAX_RESTARTS"] = std::to_string(o_.max_restarts);
    if (o_.heartbeat_timeout.count() > 0)
      env["TANDEM_HEARTBEAT_INTERVAL_MS"] = std::to_string(heartbeat_interval_.count());
    else
      env.erase("TANDEM_HEARTBEAT_INTERVAL_MS");
    env.emplace("OMP_NUM_THREADS", std::to_string(threads));  // only when unset, as torchrun
    if (!ps_endpoints.empty()) env["TANDEM_PS_ENDPOINTS"] = ps_endpoints;
    WorkerSpec spec;
    spec.rank = rank;
    for (const auto& [k, v] : env) spec.env.push_back(k + "=" + v);
    out.push_back(std::move(spec));
  }
  if (o_.node_rank != 0) return out;
  // Parameter servers: the endpoints' ports, bound on the store's address.
  size_t start = 0;
  for (int s = 0; s < o_.num_ps; ++s) {
    size_t comma = ps_endpoints.find(',', start);
    std::string ep = ps_endpoints.substr(start, comma - start);
    start = comma + 1;
    std::map<std::string, std::string> env = o_.environment;
    env["TANDEM_JOB_TOKEN"] = token_;
    env["TANDEM_RESTART_COUNT"] = std::to_string(round);
    env.emplace("OMP_NUM_THREADS", "1");  // element-wise updates of one shard: one core is plenty
    WorkerSpec spec;
    spec.rank = -1 - s;
    spec.argv = o_.ps_argv;
    for (const std::string& a : {std::string("--shard"), std::to_string(s), std::string("--host"),
                                 bind_host_, std::string("--port"), ep.substr(ep.rfind(':') + 1)})
      spec.argv.push_back(a);
    for (const auto& [k, v] : env) spec.env.push_back(k + "=" + v);
    out.push_back(std::move(spec));
  }
  return out;
}

std::optional<std::string> Agent::check_heartbeats(Clock::time_point started) {
  int64_t elapsed_ms = std::chrono::duration_cast<milliseconds>(Clock::now() - started).count();
  int first = o_.node_rank * o_.nproc_per_node;
  for (const HeartbeatRecord& r : client_->last_heartbeats()) {
    if (r.rank < first || r.rank >= first + o_.nproc_per_node) continue;
    if (!group_.running(r.rank)) continue;
    // The store keeps the last heartbeat of every rank forever: one received before this round
    // started belongs to the previous worker of that rank. A worker is watched from its first.
    if (r.age_ms >= elapsed_ms) continue;
    if (r.age_ms > o_.heartbeat_timeout.count())
      return str("worker rank ", r.rank, " sent no heartbeat for ",
                 seconds_up(milliseconds(r.age_ms)), " s (--heartbeat-timeout ",
                 seconds(o_.heartbeat_timeout), ")");
  }
  return std::nullopt;
}

Agent::RoundEnd Agent::run_round(int round) {
  throw_if_signalled();
  lost_reported_.assign(o_.nnodes, false);
  restarts_used_ = agree_attempt(round);
  round_ps_endpoints_ = ps_endpoints(round);
  group_.start(argv_, specs(restarts_used_, round_ps_endpoints_));
  Round r;
  r.number = round;
  r.started = Clock::now();
  r.next_tick = r.started + o_.monitor_interval;
  while (!r.failure) {
    auto wait = std::clamp(std::chrono::duration_cast<milliseconds>(r.next_tick - Clock::now()),
                           milliseconds(0), milliseconds(200));
    group_.pump(wait);
    take_signals(r);
    take_exits(r);
    if (r.stop_sig != 0) {
      group_.release_servers();
      if (group_.all_finished()) return r.stopped;
      continue;
    }
    if (r.failure) break;
    restart_due_workers(r);
    if (group_.all_finished() && r.due_restarts.empty()) {  // every worker exited 0
      if (o_.nnodes == 1) return RoundEnd{End::kSucceeded, "", 0, false};
      report_done(r);
      if (r.failure) break;
    }
    if (Clock::now() < r.next_tick) continue;
    r.next_tick = Clock::now() + o_.monitor_interval;
    if (monitor(r)) return RoundEnd{End::kSucceeded, "", 0, false};
  }
  return end_failed_round(r);
}

void Agent::stop_workers(Round& r, int sig, const std::string& reason, int exit_code) {
  r.stop_sig = sig;
  r.stopped.reason = reason;
  r.stopped.exit_code = exit_code;
  group_.signal_all(sig);
}

void Agent::take_signals(Round& r) {
  for (int sig : group_.take_signals()) {
    const StopSignals::Meaning meaning = stop_signals_.classify(sig);
    if (r.stop_sig != 0 && meaning == StopSignals::Meaning::kSameRequest) {
      group_.say(str("got ", signal_abbrev(sig), " again within ", seconds(kSameStopRequest),
                     " s of the first: the same request (a scheduler signals every process of "
                     "a job), still waiting for the workers"));
      continue;
    }
    if (r.stop_sig != 0) {
      group_.say(str("got ", signal_abbrev(sig), " again: killing the workers"));
      group_.kill_all();
      continue;
    }
    std::string name = signal_abbrev(sig);
    group_.say(str("got ", name, ": passed it to the workers, waiting for them to exit (", name,
                   " again kills them)"));
    stop_workers(r, sig, str("stopped by ", signal_abbrev(sig)), 128 + sig);
    announce_stop(str(signal_abbrev(sig), " to the agent on node ", o_.node_rank));
  }
}

void Agent::take_exits(Round& r) {
  for (const WorkerExit& e : group_.take_exits()) {
    if (r.stop_sig != 0 || r.failure || e.wait_status == 0) continue;
    if (is_usage_error(e)) {
      r.failure = describe_exit(e) + kUsageErrorNote;
      continue;
    }
    if (o_.restart_single_workers && e.rank >= 0 && restarts_used_ < o_.max_restarts) {
      restarts_used_ += 1;
      const milliseconds backoff = restart_backoff(o_.restart_backoff, restarts_used_);
      group_.say(str(describe_exit(e), "; restarting it alone",
                     backoff.count() > 0 ? str(" in ", seconds(backoff), " s") : std::string(),
                     ", the others keep training (restart ", restarts_used_, " of ",
                     o_.max_restarts, ")"));
      r.due_restarts.push_back({Clock::now() + backoff, e.rank});
      continue;
    }
    r.failure = describe_exit(e);
  }
}

void Agent::restart_due_workers(Round& r) {
  for (auto it = r.due_restarts.begin(); it != r.due_restarts.end();) {
    if (Clock::now() < it->first) {
      ++it;
      continue;
    }
    for (WorkerSpec& spec : specs(restarts_used_, round_ps_endpoints_))
      if (spec.rank == it->second) group_.restart(argv_, spec);
    it = r.due_restarts.erase(it);
  }
}

void Agent::report_done(Round& r) {
  if (r.reported_done) return;
  try {
    client_->add(round_key(r.number, "done"), 1);
  } catch (const Error& e) {
    r.failure = lost_store(e.what());
    r.fatal = true;
    return;
  }
  r.reported_done = true;
}

bool Agent::monitor(Round& r) {
  try {
    if (o_.heartbeat_timeout.count() > 0 && !group_.all_exited())
      r.failure = check_heartbeats(r.started);
    if (!r.failure) {
      std::vector<std::pair<int, int64_t>> lost = lost_nodes();
      if (!lost.empty()) {
        r.failure =
            str(describe_node(lost.front().first), " lost: its agent sent no heartbeat for ",
                seconds_up(milliseconds(lost.front().second)), " s (--heartbeat-timeout ",
                seconds(o_.heartbeat_timeout), " s)");
      }
    }
    if (!r.failure && o_.nnodes > 1) {
      std::vector<std::optional<std::string>> news = client_->get_existing(
          {round_key(r.number, "failure"), key("stop"), round_key(r.number, "done")});
      if (news[0]) {
        r.failure = *news[0];  // before a stop: an agent that gave up announces one too
      } else if (news[1]) {
        // Another node's agent was stopped: as if this one got the SIGTERM it forwards (the same
        // preemption reaching this node a moment later is then that request, not a second one).
        stop_signals_.classify(SIGTERM);
        stop_workers(r, SIGTERM, "stopped: " + *news[1], 1);
      } else if (r.reported_done && news[2] && std::stoll(*news[2]) >= o_.nnodes) {
        return true;
      }
    }
    r.store_silent_since.reset();
  } catch (const TimeoutError& e) {
    // The store's host still answers TCP, the store does not: node 0's agent is frozen (SIGSTOP,
    // swapped out). Keep the workers going and ask again, up to the rendezvous timeout.
    if (!r.store_silent_since) {
      r.store_silent_since = Clock::now();
      group_.say(str("the store at ", client_->endpoint(), " does not answer (", e.what(),
                     "); asking again for up to ", seconds(o_.rdzv_timeout), " s"));
    } else if (Clock::now() - *r.store_silent_since > o_.rdzv_timeout) {
      r.failure = lost_store(str("silent for more than ", seconds(o_.rdzv_timeout),
                                 " s (--rdzv-timeout): ", e.what()));
      r.fatal = true;
    }
  } catch (const Error& e) {
    r.failure = lost_store(e.what());
    r.fatal = true;
  }
  return false;
}

Agent::RoundEnd Agent::end_failed_round(Round& r) {
  if (o_.nnodes > 1 && !r.fatal) {
    try {  // the first failure of the round is the job's: every agent reports the same one
      std::string first = client_->compare_set(round_key(r.number, "failure"), "", *r.failure);
      if (!first.empty()) r.failure = first;
    } catch (const Error& e) {
      r.failure = str(*r.failure, "; then ", lost_store(e.what()));
      r.fatal = true;
    }
  }
  // While the workers stop (a worker stuck in a collective with a lost peer takes the whole
  // grace period), a lost host is still named as soon as its heartbeat times out.
  Clock::time_point next_look = Clock::now();
  group_.stop(o_.stop_grace, [&] {
    if (r.fatal || !watches_agents() || Clock::now() < next_look) return;
    next_look = Clock::now() + o_.monitor_interval;
    try {
      report_lost_nodes();
    } catch (const Error&) {
      // the barrier that follows meets the store again
    }
  });
  std::vector<int> sigs = group_.take_signals();
  if (!sigs.empty()) {
    announce_stop(str(signal_abbrev(sigs.front()), " to the agent on node ", o_.node_rank));
    return {End::kStopped, str(*r.failure, "; then stopped by ", signal_abbrev(sigs.front())),
            128 + sigs.front()};
  }
  return {End::kFailed, *r.failure, 0, r.fatal};
}

void Agent::leave() {
  if (o_.nnodes == 1 || !joined_) return;
  StoreClient& client = *farewell_client_;
  try {
    if (o_.node_rank != 0) {
      client.add(key("left"), 1);
      return;
    }
    // Only agents that claimed a node rank will say goodbye.
    std::vector<std::string> nodes;
    for (int n = 1; n < o_.nnodes; ++n) nodes.push_back(key(str("node/", n)));
    int64_t joined = 0;
    for (const std::optional<std::string>& v : client.get_existing(nodes)) joined += v ? 1 : 0;
    auto deadline = Clock::now() + kLeaveWait;
    while (client.add(key("left"), 0) < joined && Clock::now() < deadline)
      group_.pump(milliseconds(100));
  } catch (const Error&) {
    // the job has ended either way
  }
}

void validate(const AgentOptions& o) {
  auto check = [](bool ok, const std::string& msg) {
    if (!ok) throw ConfigError(msg);
  };
  check(o.nproc_per_node >= 1, str("--nproc-per-node must be at least 1, got ", o.nproc_per_node));
  check(o.nnodes >= 1, str("--nnodes must be at least 1, got ", o.nnodes));
  check(o.node_rank >= 0 && o.node_rank < o.nnodes,
        str("--node-rank ", o.node_rank, " is out of range for --nnodes ", o.nnodes,
            " (expected 0 to ", o.nnodes - 1, ")"));
  check(o.max_restarts >= 0, str("--max-restarts must be at least 0, got ", o.max_restarts));
  check(o.num_ps >= 0, str("--num-ps must be at least 0, got ", o.num_ps));
  check(o.num_ps == 0 || !o.ps_argv.empty(), "--num-ps needs the servers' command");
  check(o.monitor_interval.count() > 0, "--monitor-interval must be positive");
  check(o.restart_backoff.count() >= 0 && o.restart_backoff <= kMaxRestartBackoff,
        str("--restart-backoff must be 0 to ", seconds(kMaxRestartBackoff), " s, got ",
            seconds(o.restart_backoff)));
  check(o.heartbeat_timeout.count() >= 0, "--heartbeat-timeout must be at least 0");
  check(o.nnodes == 1 || !o.rdzv_endpoint.empty(),
        str("--nnodes ", o.nnodes, " needs --rdzv-endpoint HOST:PORT (node 0's address)"));
  check(o.nnodes == 1 || !o.job_token.empty(),
        str("--nnodes ", o.nnodes,
            " needs the same secret in TANDEM_JOB_TOKEN on every node, e.g. "
            "export TANDEM_JOB_TOKEN=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \\n')"));
  if (!o.rdzv_endpoint.empty()) parse_endpoint(o.rdzv_endpoint);
}

}  // namespace

milliseconds restart_backoff(milliseconds initial, int restart) {
  if (initial.count() <= 0 || restart < 1) return milliseconds(0);
  milliseconds wait = initial;
  for (int i = 1; i < restart && wait < kMaxRestartBackoff; ++i) wait *= 2;
  return std::min(wait, kMaxRestartBackoff);
}

int run_agent(const AgentOptions& options, const std::vector<std::string>& worker_argv) {
  validate(options);
  TANDEM_CHECK_T(ConfigError, !worker_argv.empty() && !worker_argv[0].empty(),
                 "empty worker command");
  Agent agent(options, worker_argv);
  return agent.run();
}

}  // namespace tandem
