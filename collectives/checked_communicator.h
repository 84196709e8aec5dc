// CheckedCommunicator: wraps any backend with cross-rank bookkeeping through the Store, so that a
// hang or a divergence names the rank at fault instead of just timing out.
//
// - Progress: every call records (sequence number, op); a background thread pushes the latest to
//   the store key "<prefix>/progress/<rank>" at most every 100 ms, only when it changed. When a
//   wait times out, the error names the ranks whose published progress is behind:
//   "all_reduce #7 (f32, 1000 elements) timed out after 2000 ms: rank 1 did not arrive (last seen
//   at #6 broadcast)".
// - Debug (options().debug): before each collective, this rank publishes its call under
//   "<prefix>/check/<seq>/<rank>" and waits (options().timeout) for every other rank's; a
//   difference throws CommError naming both ranks and both calls, a rank that never arrives
//   throws TimeoutError naming it. This costs two store round trips per collective (plus the wait
//   for the slowest rank); each rank deletes its key of the previous collective once every rank
//   has published the current one, so at most two keys per rank live in the store.
//
// `prefix` must be the same on every rank of the group and unique to this group and job attempt
// (e.g. "pg/0/attempt/2"): keys of an earlier attempt would otherwise be read as current.
//
// Thread-safety: like any Communicator, used from one thread at a time; the publisher thread is
// internal. Works returned stay valid after the communicator is destroyed. The destructor stops
// the publisher (waiting at most for one store call).
#pragma once

#include <memory>
#include <string>
#include <thread>

#include "collectives/communicator.h"
#include "collectives/store/store_client.h"

namespace tandem {

struct CheckedState;

class CheckedCommunicator final : public Communicator {
 public:
  // How often progress reaches the store at most: cheap at hundreds of ranks (one small Set per
  // rank per interval), fresh enough for timeouts of seconds.
  static constexpr std::chrono::milliseconds kPublishInterval{100};

  // Takes over `inner` and starts with its options. `store` may be shared with other users.
  CheckedCommunicator(std::unique_ptr<Communicator> inner, std::shared_ptr<StoreClient> store,
                      std::string prefix);
  ~CheckedCommunicator() override;

  int rank() const override;
  int world_size() const override;
  std::string backend_name() const override;  // the inner backend's

  std::unique_ptr<Work> all_reduce(Tensor& tensor, ReduceOp op) override;
  std::unique_ptr<Work> broadcast(Tensor& tensor, int root) override;
  std::unique_ptr<Work> all_gather(const Tensor& input, Tensor& output) override;
  std::unique_ptr<Work> reduce_scatter(const Tensor& input, Tensor& output, ReduceOp op) override;
  std::unique_ptr<Work> barrier() override;
  Tensor allocate_shared(int64_t numel, DType dtype, Device device) override {
    return inner_->allocate_shared(numel, dtype, device);
  }

  Communicator& inner() { return *inner_; }

  static std::string progress_key(const std::string& prefix, int rank);
  static std::string check_key(const std::string& prefix, uint64_t seq, int rank);

 private:
  template <typename Issue>
  std::unique_ptr<Work> run(const CollectiveCall& call, Issue&& issue);
  void check_across_ranks(const CollectiveCall& call, uint64_t seq);

  std::unique_ptr<Communicator> inner_;
  std::shared_ptr<CheckedState> state_;
  uint64_t next_seq_ = 0;
  std::thread publisher_;
};

}  // namespace tandem
