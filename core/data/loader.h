// The data loader: turns the sampler's batches into tensors, on `workers` background threads with
// a bounded prefetch, or synchronously in the caller's thread when workers == 0. Batches come out
// in sampler order and with the same content whatever the number of workers, because every random
// draw is keyed by (seed, epoch, global sample index) (transforms.h), never by the thread.
//
//   DataLoader loader(dataset, sampler, transforms, /*workers=*/2);
//   loader.set_epoch(e);                       // or restore(e, batch) from a checkpoint
//   while (std::optional<Batch> b = loader.next()) { ... }
//
// Threads: next(), set_epoch(), restore() and state() are for one caller thread. Workers only
// read the data set and an immutable snapshot of the sampler. At most prefetch + workers batches
// are built (or being built) ahead of the one the caller holds. An exception thrown while building
// a batch is rethrown by next() when that batch is due, and again on every later next() until
// set_epoch() or restore(). The destructor stops the workers and joins them, even mid-epoch; a
// worker in the middle of a batch finishes that batch first.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "core/data/dataset.h"
#include "core/data/sampler.h"
#include "core/data/transforms.h"
#include "core/tensor/tensor.h"

namespace tandem {

struct Batch {
  Tensor images;                 // f32 (B, C, H, W), transformed and normalised
  Tensor labels;                 // i64 (B)
  std::vector<int64_t> indices;  // the global sample indices of the B rows
  int64_t epoch = 0;
  int64_t step_in_epoch = 0;
  int64_t first_global_position = 0;  // see LocalBatch
  int64_t global_batch_size = 0;      // samples in this step over all ranks
};

// Builds one batch in the calling thread; with `parallel`, samples are spread over the intra-op
// thread pool (parallel_for). The result does not depend on `parallel`.
Batch make_batch(const Dataset& dataset, const Transforms& transforms, const LocalBatch& plan,
                 bool parallel = false);

class DataLoader {
 public:
  // Starts where `sampler` stands (its state()). Throws ConfigError when the transforms' shape
  // differs from the data set's or workers / prefetch are negative.
  DataLoader(std::shared_ptr<const Dataset> dataset, DistributedSampler sampler,
             Transforms transforms, int workers = 0, int prefetch = 2);
  ~DataLoader();
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  void set_epoch(int64_t epoch) { restore(epoch, 0); }
  // Continues `epoch` at `batch_index`; batches prefetched for the old position are dropped.
  void restore(int64_t epoch, int64_t batch_index);
  // The next batch of the epoch, or nullopt once the epoch is done.
  std::optional<Batch> next();

  // The position of the batch next() returns next: what a checkpoint records.
  SamplerState state() const { return sampler_.state(); }
  int64_t steps_per_epoch() const { return sampler_.steps_per_epoch(); }
  const DistributedSampler& sampler() const { return sampler_; }
  const Dataset& dataset() const { return *dataset_; }
  int workers() const { return workers_; }

 private:
  struct Result {
    std::optional<Batch> batch;
    std::exception_ptr error;
  };
  void worker_loop();
  void start_epoch_locked();

  std::shared_ptr<const Dataset> dataset_;
  DistributedSampler sampler_;  // the caller's cursor; touched by the caller thread only
  Transforms transforms_;
  int workers_;
  int prefetch_;
  std::exception_ptr failed_;  // caller thread only

  std::mutex mu_;
  std::condition_variable work_cv_;   // workers wait for a step to claim
  std::condition_variable ready_cv_;  // the caller waits for its step
  // All below guarded by mu_.
  bool stop_ = false;
  uint64_t generation_ = 0;                         // bumped by restore(): drops stale results
  std::shared_ptr<const DistributedSampler> plan_;  // snapshot the workers read
  int64_t next_claim_ = 0;                          // next step a worker may build
  int64_t next_return_ = 0;                         // the step the caller waits for
  int64_t end_ = 0;                                 // steps_per_epoch()
  std::map<int64_t, Result> ready_;                 // built, not yet returned, by step

  std::vector<std::thread> threads_;  // last: started after everything above exists
};

}  // namespace tandem
