// In-process backend: world_size communicators over one shared hub, used by world_size threads of
// one process (ddp in a world of one, multi-rank unit tests).
//
// How a collective runs: issuing registers the rank's tensors under the collective's sequence
// number and returns a Work at once. The last rank to arrive performs the whole collective on its
// own thread, reading and writing every rank's tensors, in rank order 0..W-1, so the result is
// bit-identical whichever rank arrives last. Work::wait blocks until then; on timeout it throws
// TimeoutError "all_reduce #12 timed out after 500 ms: ranks 2, 3 did not arrive". Ranks that
// issue different collectives under one sequence number all fail with a CommError naming both
// calls. Tensors are CPU, contiguous, and must stay untouched until wait() returns.
//
// Thread-safety: each communicator is used by one thread at a time (its rank's); different
// communicators of one group may be used concurrently, which is the point.
#pragma once

#include <memory>

#include "collectives/communicator.h"

namespace tandem {

struct InProcessHub;

class InProcessGroup {
 public:
  explicit InProcessGroup(int world_size);
  int world_size() const;
  // The communicator of `rank` (0 <= rank < world_size), created with `options`. Call once per
  // rank. Communicators share the group's state and may outlive this object.
  std::unique_ptr<Communicator> communicator(int rank, const CommOptions& options = {});
  // All world_size communicators, in rank order.
  static std::vector<std::unique_ptr<Communicator>> create(int world_size,
                                                           const CommOptions& options = {});

 private:
  std::shared_ptr<InProcessHub> hub_;
};

}  // namespace tandem
