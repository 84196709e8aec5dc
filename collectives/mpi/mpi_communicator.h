// MpiCommunicator: tandem's collectives over Open MPI, for processes started by mpirun or srun.
//
// The decision: a collective is queued to one communication thread, which issues the non-blocking
// MPI call (MPI_Iallreduce, MPI_Ibcast, MPI_Iallgather, MPI_Ireduce_scatter_block, MPI_Ibarrier)
// in issue order and drives it with MPI_Test until it completes (large all-reduces in chunks,
// see kChunkBytes). So a DDP bucket's all-reduce
// makes progress while the caller's thread keeps computing backward -- the caller never has to
// call into MPI for its collectives to advance. Several collectives may be in flight at once
// (MPI matches them in issue order); they complete, and their Works report completion, in issue
// order. One shortcut: a Work::wait that finds its collective not yet started, the only one
// queued and the thread asleep, runs it on the waiting thread instead of sleeping through two
// thread wake-ups (the thread stays asleep, so MPI is still called by one thread at a time).
//
// Dtypes: f32 and f64 (MPI_FLOAT, MPI_DOUBLE with MPI_SUM, MPI_MAX) and bf16 (a 2-byte datatype
// with sum and max ops that reduce in f32, see mpi_runtime.h). kAvg is a sum, then a division by
// the world size before the Work completes. Others throw Unimplemented.
//
// Ownership and blocking: the communicator works on a private duplicate of MPI_COMM_WORLD, made in
// the constructor (collective: every rank constructs its communicators in the same order). Issuing
// a collective never blocks; Work::wait blocks up to its timeout. The destructor blocks until
// every queued collective has completed (MPI cannot cancel a collective), then frees the
// duplicate. MPI itself is initialised on first use (MpiRuntime) and finalised at exit.
//
// Thread-safety: as for every Communicator, one thread at a time issues collectives; Works may be
// waited on from any thread.
#pragma once

#include <memory>
#include <string>

#include "collectives/communicator.h"

namespace tandem {

class MpiCommunicator final : public Communicator {
 public:
  // An all_reduce over more than kChunkAboveBytes is issued as MPI_Iallreduce calls of
  // kChunkBytes each, of which (as of any collectives) at most kMaxInFlight run at once: each
  // chunk's reduction stays in cache and overlaps the next chunk's transfer. Measured on 2 ranks
  // against the blocking MPI_Allreduce: ~1.65x its speed at 64 MiB, ~0.98x at 16 MiB
  // (benchmarks/RESULTS.md, all-reduce bus bandwidth).
  static constexpr int64_t kChunkAboveBytes = 4 << 20;
  static constexpr int64_t kChunkBytes = 2 << 20;
  static constexpr size_t kMaxInFlight = 3;

  explicit MpiCommunicator(const CommOptions& options = {});
  // A group of MPI_COMM_WORLD: the ranks that pass the same color, ordered by key
  // (MPI_Comm_split; collective over MPI_COMM_WORLD). color < 0: every rank (a duplicate).
  MpiCommunicator(int color, int key, const CommOptions& options);
  ~MpiCommunicator() override;
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  int rank() const override;
  int world_size() const override;
  std::string backend_name() const override { return "mpi"; }

  std::unique_ptr<Work> all_reduce(Tensor& tensor, ReduceOp op) override;
  std::unique_ptr<Work> broadcast(Tensor& tensor, int root) override;
  std::unique_ptr<Work> all_gather(const Tensor& input, Tensor& output) override;
  std::unique_ptr<Work> reduce_scatter(const Tensor& input, Tensor& output, ReduceOp op) override;
  std::unique_ptr<Work> barrier() override;

  struct Impl;  // public so the .cc's helpers can name it; defined there only

 private:
  std::shared_ptr<Impl> impl_;  // shared with the Works, which may outlive the communicator
};

}  // namespace tandem
