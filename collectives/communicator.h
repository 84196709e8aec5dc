// Communicator: one process group's collectives (PyTorch c10d's ProcessGroup, reduced to what
// tandem's strategies use). Every collective is asynchronous and returns a Work; wait(timeout)
// blocks until it completes or throws TimeoutError naming the op, its sequence number and the
// ranks that did not arrive (where the backend can tell).
//
// Ordering contract: every rank issues the same collectives in the same order (sequence numbers
// count them); backends may run them on a background thread, but complete them in issue order.
// Tensors are CPU (or, for NCCL, CUDA) and must stay alive and untouched until wait() returns.
// A Communicator is used from one thread at a time.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/tensor/tensor.h"

namespace tandem {

enum class ReduceOp { kSum, kAvg, kMax };
const char* reduce_op_name(ReduceOp op);

class Work {
 public:
  virtual ~Work() = default;
  // Blocks until done; throws the collective's error, or TimeoutError after `timeout`.
  virtual void wait(std::chrono::milliseconds timeout) = 0;
  virtual bool is_completed() = 0;
  // The collective's sequence number on this communicator (0, 1, 2, ...).
  virtual uint64_t sequence_number() const = 0;
  // When the collective completed, once it has and where the backend records it (traces time
  // each bucket's all-reduce with it); nullopt otherwise.
  virtual std::optional<std::chrono::steady_clock::time_point> completed_at() {
    return std::nullopt;
  }
};

struct CommOptions {
  std::chrono::milliseconds timeout{600'000};  // strategy.timeout_s: 600 s default
  bool debug = false;  // strategy.debug_collectives: check op/dtype/shape across ranks first
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  virtual std::string backend_name()
      const = 0;  // "mpi", "gloo", "nccl", "inprocess", "shm+gloo", "hierarchical(...)"

  // In place over `tensor` (contiguous). kAvg divides by world_size after summing.
  virtual std::unique_ptr<Work> all_reduce(Tensor& tensor, ReduceOp op) = 0;
  // In place: every rank ends with root's values.
  virtual std::unique_ptr<Work> broadcast(Tensor& tensor, int root) = 0;
  // output: world_size x input.numel() elements (rank r's input at block r).
  virtual std::unique_ptr<Work> all_gather(const Tensor& input, Tensor& output) = 0;
  // input: world_size blocks of output.numel(); output = reduction of block `rank` over ranks.
  virtual std::unique_ptr<Work> reduce_scatter(const Tensor& input, Tensor& output,
                                               ReduceOp op) = 0;
  virtual std::unique_ptr<Work> barrier() = 0;

  // A zeroed tensor of `numel` elements that this backend can reduce and gather without staging
  // copies: the shared-memory backend places it in a segment every rank of the host maps, so an
  // all_reduce over it (or over a view of it) reads the peers' values where they are and writes
  // the result straight into every rank's copy. Backends without such memory return plain
  // zeros(numel). Collective: every rank calls it with the same numel, dtype and device, in the
  // same order relative to its collectives. The tensor may outlive the communicator.
  virtual Tensor allocate_shared(int64_t numel, DType dtype, Device device);

  const CommOptions& options() const { return options_; }
  void set_options(const CommOptions& o) { options_ = o; }

 protected:
  CommOptions options_;
};

// What one collective call looks like, for checks across ranks and for error messages (the debug
// mode of CheckedCommunicator, the in-process backend's own mismatch check). `shape` is the shape
// of this rank's contribution: the tensor of all_reduce and broadcast, the input of all_gather and
// reduce_scatter, empty for barrier. Fields an op does not use keep their defaults.
enum class CollectiveKind { kAllReduce, kBroadcast, kAllGather, kReduceScatter, kBarrier };
const char* collective_kind_name(CollectiveKind kind);  // "all_reduce", ...

struct CollectiveCall {
  CollectiveKind kind = CollectiveKind::kBarrier;
  DType dtype = DType::kF32;
  Shape shape;
  int root = -1;                 // broadcast only
  ReduceOp op = ReduceOp::kSum;  // all_reduce and reduce_scatter only
  bool operator==(const CollectiveCall& o) const = default;
  // "all_reduce(f32, [1000], sum)", "broadcast(f32, [10], root 0)", "barrier()".
  std::string str() const;
  // "all_reduce #7 (f32, 1000 elements)", "barrier #3": the start of a timeout message.
  std::string brief(uint64_t sequence_number) const;
};

// For the host backends (gloo, mpi): throws unless t is a defined, contiguous CPU tensor, naming
// the backend and `what` ("all_reduce tensor"), and pointing CUDA tensors at nccl.
void check_cpu_contiguous(const Tensor& t, const char* backend, const char* what);

// Blocking helpers with the communicator's timeout.
void all_reduce_sync(Communicator& comm, Tensor& tensor, ReduceOp op);
void broadcast_sync(Communicator& comm, Tensor& tensor, int root);

}  // namespace tandem
