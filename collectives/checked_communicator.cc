// CheckedCommunicator: progress publishing, straggler reports on timeout, and the debug-mode
// check of every call against the other ranks'. The state shared with the publisher thread and
// with outstanding Works lives in CheckedState, so a Work may outlive its communicator.
#include "collectives/checked_communicator.h"

#include <algorithm>
#include <charconv>
#include <condition_variable>
#include <mutex>
#include <optional>

#include "core/base/error.h"

namespace tandem {

namespace {
// A progress push or a straggler report must not hang for long when the store is gone.
constexpr std::chrono::milliseconds kPublishTimeout{2000};
// Ranks named one by one in a timeout message; the rest are counted.
constexpr size_t kMaxNamedRanks = 8;
}  // namespace

struct CheckedState {
  std::shared_ptr<StoreClient> store;
  std::string prefix;
  int rank = 0;
  int world_size = 1;

  std::mutex mu;
  std::condition_variable cv;
  uint64_t issued = 0;     // calls made so far; guarded by mu
  std::string last_op;     // op of call issued - 1; guarded by mu
  uint64_t published = 0;  // value of `issued` last pushed; guarded by mu
  bool stop = false;       // guarded by mu

  // Pushes "<seq> <op>" of the latest call to the store (nothing before the first call).
  void publish_now() {
    uint64_t count;
    std::string value;
    {
      std::lock_guard<std::mutex> lock(mu);
      count = issued;
      if (count == 0) return;
      value = str(count - 1, " ", last_op);
    }
    store->set(CheckedCommunicator::progress_key(prefix, rank), value, kPublishTimeout);
    std::lock_guard<std::mutex> lock(mu);
    published = std::max(published, count);
  }

  void publisher_loop() {
    std::unique_lock<std::mutex> lock(mu);
    while (true) {
      cv.wait_for(lock, CheckedCommunicator::kPublishInterval, [&] { return stop; });
      if (stop) return;
      if (issued == published) continue;
      lock.unlock();
      try {
        publish_now();
      } catch (const Error&) {
        // The store is unreachable: try again next interval; a timeout will report it.
      }
      lock.lock();
    }
  }

  // Why collective #seq is not done, from the ranks' published progress: "rank 1 did not arrive
  // (last seen at #6 broadcast)". `only` names the ranks to report (nullopt: every other rank
  // whose published progress is below seq).
  std::string stragglers(uint64_t seq, const std::optional<std::vector<int>>& only = {}) {
    try {
      publish_now();
    } catch (const Error&) {
    }
    std::vector<int> ranks;
    if (only) {
      ranks = *only;
    } else {
      for (int r = 0; r < world_size; ++r)
        if (r != rank) ranks.push_back(r);
    }
    std::vector<std::string> keys;
    for (int r : ranks) keys.push_back(CheckedCommunicator::progress_key(prefix, r));
    std::vector<std::optional<std::string>> progress;
    try {
      progress = store->get_existing(keys, kPublishTimeout);
    } catch (const Error& e) {
      return str("the ranks' progress is unknown (", e.what(), ")");
    }
    std::vector<std::string> clauses;
    for (size_t i = 0; i < ranks.size(); ++i) {
      std::string seen;
      if (!progress[i]) {
        seen = "no collective seen";
      } else {
        const std::string& v = *progress[i];
        uint64_t last = 0;
        auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), last);
        if (ec != std::errc()) continue;
        if (!only && last >= seq) continue;  // it arrived
        seen = str("last seen at #", v);
      }
      clauses.push_back(str("rank ", ranks[i], " did not arrive (", seen, ")"));
    }
    if (clauses.empty()) return "";
    std::string s;
    for (size_t i = 0; i < clauses.size() && i < kMaxNamedRanks; ++i)
      s += (i ? ", " : "") + clauses[i];
    if (clauses.size() > kMaxNamedRanks)
      s += str(" and ", clauses.size() - kMaxNamedRanks, " more ranks did not arrive");
    return s;
  }
};

namespace {

class CheckedWork final : public Work {
 public:
  CheckedWork(std::shared_ptr<CheckedState> state, std::unique_ptr<Work> inner, CollectiveCall call,
              uint64_t seq, std::string backend)
      : state_(std::move(state)),
        inner_(std::move(inner)),
        call_(std::move(call)),
        seq_(seq),
        backend_(std::move(backend)) {}

  void wait(std::chrono::milliseconds timeout) override {
    try {
      inner_->wait(timeout);
    } catch (const TimeoutError& e) {
      std::string head = str(call_.brief(seq_), " timed out after ", timeout.count(), " ms: ");
      std::string behind = state_->stragglers(seq_);
      if (!behind.empty()) throw TimeoutError(head + behind);
      throw TimeoutError(str(head, "every rank issued it but the ", backend_,
                             " backend did not complete it (", e.what(), ")"));
    }
  }
  bool is_completed() override { return inner_->is_completed(); }
  uint64_t sequence_number() const override { return seq_; }
  std::optional<std::chrono::steady_clock::time_point> completed_at() override {
    return inner_->completed_at();
  }

 private:
  std::shared_ptr<CheckedState> state_;
  std::unique_ptr<Work> inner_;
  CollectiveCall call_;
  uint64_t seq_;
  std::string backend_;
};

}  // namespace

CheckedCommunicator::CheckedCommunicator(std::unique_ptr<Communicator> inner,
                                         std::shared_ptr<StoreClient> store, std::string prefix)
    : inner_(std::move(inner)), state_(std::make_shared<CheckedState>()) {
  TANDEM_CHECK(inner_ != nullptr, "checked communicator: no backend communicator given");
  TANDEM_CHECK(store != nullptr, "checked communicator: no store client given");
  TANDEM_CHECK(!prefix.empty(), "checked communicator: the store key prefix is empty");
  options_ = inner_->options();
  state_->store = std::move(store);
  state_->prefix = std::move(prefix);
  state_->rank = inner_->rank();
  state_->world_size = inner_->world_size();
  publisher_ = std::thread([state = state_] { state->publisher_loop(); });
}

CheckedCommunicator::~CheckedCommunicator() {
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->stop = true;
  }
  state_->cv.notify_all();
  publisher_.join();
}

int CheckedCommunicator::rank() const {
  return inner_->rank();
}
int CheckedCommunicator::world_size() const {
  return inner_->world_size();
}
std::string CheckedCommunicator::backend_name() const {
  return inner_->backend_name();
}

std::string CheckedCommunicator::progress_key(const std::string& prefix, int rank) {
  return str(prefix, "/progress/", rank);
}

std::string CheckedCommunicator::check_key(const std::string& prefix, uint64_t seq, int rank) {
  return str(prefix, "/check/", seq, "/", rank);
}

template <typename Issue>
std::unique_ptr<Work> CheckedCommunicator::run(const CollectiveCall& call, Issue&& issue) {
  const uint64_t seq = next_seq_++;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->issued = seq + 1;
    state_->last_op = collective_kind_name(call.kind);
  }
  if (options_.debug && world_size() > 1) check_across_ranks(call, seq);
  inner_->set_options(options_);
  return std::make_unique<CheckedWork>(state_, issue(), call, seq, inner_->backend_name());
}

void CheckedCommunicator::check_across_ranks(const CollectiveCall& call, uint64_t seq) {
  const std::string& prefix = state_->prefix;
  const int me = rank();
  const std::string mine = call.str();
  state_->store->set(check_key(prefix, seq, me), mine);
  std::vector<int> others;
  std::vector<std::string> keys;
  for (int r = 0; r < world_size(); ++r) {
    if (r == me) continue;
    others.push_back(r);
    keys.push_back(check_key(prefix, seq, r));
  }
  std::vector<std::string> theirs;
  try {
    theirs = state_->store->get_many(keys, options_.timeout);
  } catch (const TimeoutError&) {
    std::vector<std::optional<std::string>> now =
        state_->store->get_existing(keys, kPublishTimeout);
    std::vector<int> missing;
    for (size_t i = 0; i < others.size(); ++i)
      if (!now[i]) missing.push_back(others[i]);
    throw TimeoutError(str("collective #", seq, " check (", mine, ") timed out after ",
                           options_.timeout.count(), " ms: ", state_->stragglers(seq, missing)));
  }
  for (size_t i = 0; i < others.size(); ++i) {
    if (theirs[i] == mine) continue;
    int other = others[i];
    const std::string& first = me < other ? mine : theirs[i];
    const std::string& second = me < other ? theirs[i] : mine;
    throw CommError(str("collective #", seq, " mismatch: rank ", std::min(me, other), " called ",
                        first, ", rank ", std::max(me, other), " called ", second,
                        ": every rank must issue the same collectives in the same order"));
  }
  // Every rank has published #seq, so every rank has read #seq - 1: this rank's key for it can go.
  if (seq > 0) state_->store->remove(check_key(prefix, seq - 1, me));
}

std::unique_ptr<Work> CheckedCommunicator::all_reduce(Tensor& tensor, ReduceOp op) {
  CollectiveCall call{CollectiveKind::kAllReduce, tensor.dtype(), tensor.shape(), -1, op};
  return run(call, [&] { return inner_->all_reduce(tensor, op); });
}

std::unique_ptr<Work> CheckedCommunicator::broadcast(Tensor& tensor, int root) {
  CollectiveCall call{CollectiveKind::kBroadcast, tensor.dtype(), tensor.shape(), root};
  return run(call, [&] { return inner_->broadcast(tensor, root); });
}

std::unique_ptr<Work> CheckedCommunicator::all_gather(const Tensor& input, Tensor& output) {
  CollectiveCall call{CollectiveKind::kAllGather, input.dtype(), input.shape()};
  return run(call, [&] { return inner_->all_gather(input, output); });
}

std::unique_ptr<Work> CheckedCommunicator::reduce_scatter(const Tensor& input, Tensor& output,
                                                          ReduceOp op) {
  CollectiveCall call{CollectiveKind::kReduceScatter, input.dtype(), input.shape(), -1, op};
  return run(call, [&] { return inner_->reduce_scatter(input, output, op); });
}

std::unique_ptr<Work> CheckedCommunicator::barrier() {
  CollectiveCall call;  // kind defaults to kBarrier
  return run(call, [&] { return inner_->barrier(); });
}

}  // namespace tandem
