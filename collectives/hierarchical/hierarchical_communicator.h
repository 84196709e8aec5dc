// HierarchicalCommunicator: the all-reduce of a job with several ranks on each of several hosts,
// done the way NCCL does between nodes and Horovod's HOROVOD_HIERARCHICAL_ALLREDUCE does:
//
//   1. inside each host, through shared memory, each of the L local ranks sums its 1/L slice of
//      the host's copies into its own copy (ShmCommunicator::reduce_own_slice);
//   2. across hosts, the ranks with the same local index all-reduce that slice (Gloo's ring over
//      TCP, or MPI): each host sends 2(H-1)/H of the tensor once, not 2(N-1)/N of it through every
//      loopback and network hop of a flat ring over N = H x L ranks;
//   3. inside each host, each rank writes its reduced slice into every other local copy
//      (ShmCommunicator::spread).
// The all-gather of DDP's sharded update runs the other way round: across hosts between ranks of
// the same local index, then spread inside each host.
//
// The decision: only tensors that live in an allocate_shared buffer (DDP's buckets and its sharded
// parameters) take the hierarchical path; every other collective, and tensors of other dtypes or
// outside those buffers (the loss all-reduce, bf16 wire copies, checkpoint gathers), goes to a flat
// communicator over all ranks. All of them are queued to one thread that runs them in issue order,
// so every sub-communicator sees the same sequence on every rank.
//
// Results: sums are taken within each host in local-rank order, then across hosts in the cross
// communicator's order, then divided by the world size for kAvg -- a different order from a flat
// ring's, so f32 results agree with the flat path to rounding (fp64 runs to ~1e-15 relative), and
// every rank gets the same bits.
//
// Ownership and blocking: owns its three sub-communicators. Issuing never blocks; the destructor
// lets the running collective finish (each step bounded by the timeout), fails the queued ones,
// then destroys the sub-communicators. Thread-safety: as for every Communicator.
#pragma once

#include <memory>
#include <string>

#include "collectives/communicator.h"
#include "collectives/hierarchical/host_layout.h"
#include "collectives/shm/shm_communicator.h"

namespace tandem {

class HierarchicalCommunicator final : public Communicator {
 public:
  // rank: this process's global rank; layout: every rank's host (uniform, several hosts);
  // global: every rank; local: this host's ranks in local-index order; cross: the ranks with this
  // rank's local index, one per host, in host order.
  HierarchicalCommunicator(int rank, HostLayout layout, std::unique_ptr<Communicator> global,
                           std::unique_ptr<ShmCommunicator> local,
                           std::unique_ptr<Communicator> cross);
  ~HierarchicalCommunicator() override;
  HierarchicalCommunicator(const HierarchicalCommunicator&) = delete;
  HierarchicalCommunicator& operator=(const HierarchicalCommunicator&) = delete;

  int rank() const override { return rank_; }
  int world_size() const override { return layout_.world(); }
  // "hierarchical(shm+gloo, gloo)": the local and the cross-host backends.
  std::string backend_name() const override;
  const HostLayout& layout() const { return layout_; }

  std::unique_ptr<Work> all_reduce(Tensor& tensor, ReduceOp op) override;
  std::unique_ptr<Work> broadcast(Tensor& tensor, int root) override;
  std::unique_ptr<Work> all_gather(const Tensor& input, Tensor& output) override;
  std::unique_ptr<Work> reduce_scatter(const Tensor& input, Tensor& output, ReduceOp op) override;
  std::unique_ptr<Work> barrier() override;
  // In this host's shared memory (collective over every rank; each host allocates its own).
  Tensor allocate_shared(int64_t numel, DType dtype, Device device) override;

  struct Impl;

 private:
  int rank_;
  uint64_t next_seq_ = 0;
  HostLayout layout_;
  std::shared_ptr<Impl> impl_;
};

}  // namespace tandem
