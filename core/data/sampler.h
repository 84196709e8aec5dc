// Which samples each rank sees, step by step. Every rank computes the same permutation of
// [0, N) from (seed, epoch) alone (Philox stream kStreamShuffle, random_streams.h) and cuts it
// into global batches of `global_batch` consecutive entries; rank r takes the contiguous slice
// [r * B / W, (r + 1) * B / W) of each. So one process with batch 64 sees exactly the
// concatenation of what 2 ranks with 32 each see, in the same order, and the mean of the ranks'
// mean losses equals the single-process loss. A run can therefore resume on a different world
// size: the position in the epoch (state()) does not depend on it.
//
// Training drops the last partial global batch (drop_last); evaluation keeps it and splits it the
// same proportional way, so a rank's slice of it may be empty (every rank still takes the same
// number of steps, which keeps collectives in step). Not thread-safe: one owner (the loader).
#pragma once

#include <cstdint>
#include <vector>

namespace tandem {

struct SamplerState {
  int64_t epoch = 0;
  int64_t batch_index = 0;  // the next batch to hand out; steps_per_epoch() when the epoch is done
  bool operator==(const SamplerState&) const = default;
};

// One rank's share of one global batch.
struct LocalBatch {
  int64_t epoch = 0;
  int64_t step_in_epoch = 0;
  std::vector<int64_t> indices;       // global sample indices (data set rows), in order
  int64_t first_global_position = 0;  // position of indices[0] in the epoch's permutation:
                                      // step * global_batch + r * n / W (key dropout by this)
  int64_t global_batch_size = 0;      // n: samples in this global batch over all ranks
};

class DistributedSampler {
 public:
  // Throws ConfigError unless dataset_size >= 0, global_batch > 0, 0 <= rank < world_size and
  // world_size divides global_batch (equal per-rank batches).
  DistributedSampler(int64_t dataset_size, int64_t global_batch, int64_t world_size, int64_t rank,
                     uint64_t seed, bool shuffle, bool drop_last = true);

  int64_t dataset_size() const { return dataset_size_; }
  int64_t global_batch() const { return global_batch_; }
  int64_t local_batch() const { return global_batch_ / world_size_; }
  int64_t world_size() const { return world_size_; }
  int64_t rank() const { return rank_; }
  int64_t steps_per_epoch() const;

  // Starts `epoch` at its first batch (recomputing the permutation).
  void set_epoch(int64_t epoch);
  int64_t epoch() const { return epoch_; }
  // The epoch's order of [0, N): identical on every rank; the identity without shuffle.
  const std::vector<int64_t>& permutation() const { return permutation_; }

  // This rank's share of batch `step` (in [0, steps_per_epoch())) of the current epoch.
  LocalBatch batch(int64_t step) const;

  // The cursor: next() hands out batch state().batch_index and advances.
  bool has_next() const { return next_batch_ < steps_per_epoch(); }
  LocalBatch next();
  SamplerState state() const { return {epoch_, next_batch_}; }
  // Continues `epoch` at `batch_index` (0..steps_per_epoch()), e.g. from a checkpoint.
  void restore(int64_t epoch, int64_t batch_index);

 private:
  int64_t dataset_size_;
  int64_t global_batch_;
  int64_t world_size_;
  int64_t rank_;
  uint64_t seed_;
  bool shuffle_;
  bool drop_last_;
  int64_t epoch_ = -1;
  int64_t next_batch_ = 0;
  std::vector<int64_t> permutation_;
};

// The permutation of [0, n) for (seed, epoch): randperm over Generator(seed, SHUF << 32 | epoch).
std::vector<int64_t> epoch_permutation(int64_t n, uint64_t seed, int64_t epoch);

}  // namespace tandem
