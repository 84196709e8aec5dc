// NcclCommunicator: tandem's collectives on CUDA tensors through NCCL (docs/DESIGN.md section
// 3.2).
//
// The decision: NCCL runs on a stream of its own, ordered against the device's compute stream
// (core/backends/cuda/cuda_context.h) with events, never with a host wait: a collective first
// makes its stream wait for the kernels queued so far (the gradients it reduces), and Work::wait
// makes the compute stream wait for the collective, then returns -- later kernels, and copies to
// the host, see the result. So a DDP bucket's all-reduce overlaps the rest of backward.
//
// Bootstrap: rank 0 creates the NCCL unique id and publishes it in the Store under
// "<key_prefix>/<n>/unique_id" (n counts the communicators this process made for the same
// prefix); the others read it from there. A world of one still goes through NCCL.
//
// Dtypes f32, f64, f16, bf16, i32, i64, u8; kAvg is NCCL's ncclAvg. Tensors must be contiguous
// CUDA tensors on this communicator's device, alive until wait() returns. Thread-safety: one
// thread issues collectives; Works may be waited on from any thread.
#pragma once

#include <memory>
#include <string>

#include "collectives/communicator.h"
#include "collectives/store/store_client.h"

namespace tandem {

struct NcclOptions {
  std::string key_prefix = "nccl";
};

class NcclCommunicator final : public Communicator {
 public:
  // Blocks until every rank has joined (ncclCommInitRank), at most CommOptions::timeout.
  // `store` may be null when world_size is 1.
  NcclCommunicator(StoreClient* store, int rank, int world_size, int device,
                   const NcclOptions& nccl = {}, const CommOptions& options = {});
  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return rank_; }
  int world_size() const override { return world_size_; }
  std::string backend_name() const override { return "nccl"; }
  int device() const { return device_; }

  std::unique_ptr<Work> all_reduce(Tensor& tensor, ReduceOp op) override;
  std::unique_ptr<Work> broadcast(Tensor& tensor, int root) override;
  std::unique_ptr<Work> all_gather(const Tensor& input, Tensor& output) override;
  std::unique_ptr<Work> reduce_scatter(const Tensor& input, Tensor& output, ReduceOp op) override;
  std::unique_ptr<Work> barrier() override;

  struct Impl;  // defined in the .cc

 private:
  int rank_;
  int world_size_;
  int device_;
  std::shared_ptr<Impl> impl_;  // shared with the Works
};

}  // namespace tandem
