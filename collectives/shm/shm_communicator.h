// ShmCommunicator: all-reduce through one shared-memory segment for ranks on one node, every other
// collective through an inner communicator (Gloo). On one host, Gloo's TCP all-reduce copies every
// byte through the kernel several times; here each rank copies its tensor into its slot of the
// segment, reduces its 1/W slice of every rank's slot into a shared result, and copies the result
// back: no sockets, no system calls but futex waits, and each element summed by one rank only.
//
// Two paths. A tensor from allocate_shared() lives in a segment of its own that holds every rank's
// copy ([world][bytes]); an all_reduce over it (or a view of it) is done in place: each rank sums
// its 1/W slice of every copy where it lies and writes the sum into every copy -- per rank, one
// read and one write of the tensor's bytes in all, no staging. DDP's buckets and its sharded
// parameters are allocated that way, and an in-place all_gather of such a tensor (input = this
// rank's block of the output) writes each rank's block into every copy. Any other tensor goes
// through the staging slots: copied in, its slice reduced, copied out, in chunks of kChunkBytes
// per rank. The ranks must agree on the path and the buffer: each publishes which (segment and
// offset, or "staged") it is reducing, and a rank that finds a peer on another fails the op.
//
// Results: for each element, the ranks' values are summed in rank order (0, 1, ...), then divided
// by W for kAvg -- so every rank gets the same bits, and two ranks get what Gloo's sum gives.
// all_gather goes through the segment too (ddp's sharded update gathers parameters with it). f32
// and f64; other dtypes (bf16 compression) and the other collectives go to `inner`.
//
// Ordering: shared-memory all-reduces run in issue order on this communicator's own thread, the
// inner communicator's collectives in issue order on its own; since every rank issues the same
// sequence, both streams match across ranks (a later inner collective may complete before an
// earlier all-reduce here). Sequence numbers count every call on this communicator.
//
// Setup (collective, all ranks of `inner` on one host; `store` must outlive the communicator): rank
// 0 creates the segment (shm_open, named segment_prefix + random digits), publishes the name in
// `store` under "<prefix>/segment", the others open it, and once everyone has mapped it (an inner
// barrier) rank 0 unlinks the name. A rank 0 killed before that leaves the name behind: `tandem
// launch` removes its job's segments by their prefix after each round (shm_segments.h). A peer that
// dies mid-collective leaves the others waiting: Work::wait's timeout reports it (wrap in
// CheckedCommunicator to name the rank); the destructor stops the thread without waiting for peers.
//
// Thread-safety: as for every Communicator, one thread at a time issues collectives.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "collectives/communicator.h"
#include "collectives/shm/shm_segments.h"
#include "collectives/store/store_client.h"

namespace tandem {

struct ShmOp;  // one queued collective (the .cc)

class ShmCommunicator final : public Communicator {
 public:
  static constexpr int64_t kChunkBytes = 4 << 20;  // per rank and round: 4 MiB

  ShmCommunicator(std::unique_ptr<Communicator> inner, StoreClient& store,
                  const std::string& prefix, const std::string& segment_prefix = kDefaultShmPrefix);
  ~ShmCommunicator() override;

  int rank() const override;
  int world_size() const override;
  std::string backend_name() const override;  // "shm+<inner>"
  // The segment's shm_open name ("/tandem-..."); rank 0 has unlinked it when its constructor
  // returns.
  const std::string& segment_name() const { return segment_name_; }

  std::unique_ptr<Work> all_reduce(Tensor& tensor, ReduceOp op) override;
  std::unique_ptr<Work> broadcast(Tensor& tensor, int root) override;
  std::unique_ptr<Work> all_gather(const Tensor& input, Tensor& output) override;
  std::unique_ptr<Work> reduce_scatter(const Tensor& input, Tensor& output, ReduceOp op) override;
  std::unique_ptr<Work> barrier() override;
  // f32/f64 CPU tensors in a new segment shared by the host's ranks (see the top of this file);
  // anything else, or a /dev/shm too small for it (every rank then agrees), plain zeros. Uses the
  // store and one inner collective.
  Tensor allocate_shared(int64_t numel, DType dtype, Device device) override;

  // Halves of an all-reduce, for composite collectives (the hierarchical communicator, which
  // reduces across hosts in between). Both take a tensor inside an allocate_shared buffer (a
  // contiguous f32/f64 view of one; throws otherwise), every rank the same one, and run in issue
  // order with this communicator's other collectives.
  // reduce_own_slice: slice [n*r/W, n*(r+1)/W) of rank r's copy becomes that slice reduced over
  // every rank's copy (kAvg divides by W); the rest of its copy is left as it was.
  std::unique_ptr<Work> reduce_own_slice(Tensor& tensor, ReduceOp op);
  // spread: the element ranges [lo, hi) of this rank's copy are written into every other rank's
  // copy. Ranges of different ranks must not overlap.
  std::unique_ptr<Work> spread(Tensor& tensor, std::vector<std::pair<int64_t, int64_t>> ranges);
  // True when `tensor` lies in one of this communicator's allocate_shared buffers.
  bool is_shared(const Tensor& tensor) const;

  struct Impl;
  struct SharedRef;  // where a tensor lies in an allocate_shared buffer (the .cc)

 private:
  std::unique_ptr<Work> numbered(std::unique_ptr<Work> inner_work);
  std::unique_ptr<Work> enqueue(CollectiveCall call, Tensor tensor, Tensor output, ReduceOp op,
                                SharedRef shared);
  std::unique_ptr<Work> enqueue_op(CollectiveCall call, ShmOp op);

  std::unique_ptr<Communicator> inner_;
  std::shared_ptr<Impl> impl_;  // shared with the Works and the thread
  uint64_t next_seq_ = 0;
  std::string segment_name_;
  StoreClient* store_;  // the constructor's: must outlive this communicator
  std::string prefix_;
  std::string segment_prefix_;  // of every segment's name (shm_segments.h)
  uint64_t buffers_made_ = 0;   // allocate_shared calls so far (the same count on every rank)
};

}  // namespace tandem
