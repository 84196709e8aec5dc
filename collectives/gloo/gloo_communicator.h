// GlooCommunicator: tandem's collectives over Gloo's TCP transport, for CPU tensors of workers
// started by `tandem launch` or on Kubernetes, bootstrapped through the job's Store.
//
// The decision: gloo's collectives block the calling thread, so each collective is queued to one
// background thread that runs them one after another in issue order; issuing returns a Work at
// once, and the caller's thread keeps computing while gloo moves the data (its TCP device has an
// I/O thread of its own). One shortcut: a Work::wait that finds its collective not yet started,
// the only one queued and the thread idle, runs it on the waiting thread instead of sleeping
// through two thread wake-ups (only when it would wait at least the communicator's timeout). Every
// gloo exception becomes a CommError naming the collective and its sequence number (a TimeoutError
// when gloo timed out); after one, the context is unusable and every later collective fails with
// that first error.
//
// Algorithms: all_reduce is gloo::allreduce (ring); broadcast, all_gather and barrier are gloo's.
// reduce_scatter is an all_reduce of a copy of the input followed by a copy of this rank's block:
// gloo 0.5's only reduce-scatter is the old templated algorithm class, so this moves 2x the bytes
// of a true reduce-scatter -- correct, simple, and fine for tandem's uses (sharded optimizers).
// Dtypes: f32, f64, bf16 (reduced in f32, rounded once per step); kAvg is a sum, then a division
// by the world size. Others throw Unimplemented. Collectives of 0 elements, and every collective
// of a world of one, complete without touching the network.
//
// Blocking: the constructor blocks until every rank has connected (gloo's connectFullMesh, through
// the Store; CommOptions::timeout bounds it and every collective). The destructor fails the queued
// collectives that have not started and waits at most GlooOptions::close_wait for the one running.
// Thread-safety: one thread at a time issues collectives; Works may be waited on from any thread.
#pragma once

#include <memory>
#include <string>

#include "collectives/communicator.h"
#include "collectives/store/store_client.h"

namespace gloo {
class Context;
}

namespace tandem {

struct GlooOptions {
  // Address this rank listens on and advertises to its peers: loopback unless told otherwise.
  std::string hostname = "127.0.0.1";
  // A network interface ("eth0") to use instead of `hostname`, when set.
  std::string interface;
  // Store keys live under "<key_prefix>/<n>/", n counting the GlooCommunicators this process made
  // before for the same prefix, rank and world size (the same on every rank, since every rank
  // creates them in the same order). A launcher that restarts workers against the same Store
  // puts the attempt number in the prefix.
  std::string key_prefix = "gloo";
  // How long the destructor waits for a collective still running (a peer stopped or gone; gloo
  // itself gives up only after CommOptions::timeout, 600 s by default). 10 s: well inside the 30 s
  // `tandem launch`, Slurm and Kubernetes give a process between SIGTERM and SIGKILL. After it the
  // collective is left to finish or time out on its own thread.
  std::chrono::milliseconds close_wait{10'000};
};

class GlooCommunicator final : public Communicator {
 public:
  // `store` is used only during construction (to exchange addresses).
  GlooCommunicator(StoreClient& store, int rank, int world_size, const GlooOptions& gloo = {},
                   const CommOptions& options = {});
  ~GlooCommunicator() override;
  GlooCommunicator(const GlooCommunicator&) = delete;
  GlooCommunicator& operator=(const GlooCommunicator&) = delete;

  int rank() const override { return rank_; }
  int world_size() const override { return world_size_; }
  std::string backend_name() const override { return "gloo"; }

  std::unique_ptr<Work> all_reduce(Tensor& tensor, ReduceOp op) override;
  std::unique_ptr<Work> broadcast(Tensor& tensor, int root) override;
  std::unique_ptr<Work> all_gather(const Tensor& input, Tensor& output) override;
  std::unique_ptr<Work> reduce_scatter(const Tensor& input, Tensor& output, ReduceOp op) override;
  std::unique_ptr<Work> barrier() override;

  // The connected gloo context (null in a world of one), for benchmarks that compare against raw
  // gloo calls. Use it only while none of this communicator's collectives is in flight.
  std::shared_ptr<gloo::Context> context() const;

  struct Impl;  // defined in the .cc

 private:
  int rank_;
  int world_size_;
  std::shared_ptr<Impl> impl_;  // shared with the Works, which may outlive the communicator
};

}  // namespace tandem
