// DistributedSampler: permutation per epoch, global batches, proportional per-rank slices.
#include "core/data/sampler.h"

#include <algorithm>

#include "core/base/error.h"
#include "core/data/random_streams.h"
#include "core/random/philox.h"

namespace tandem {

std::vector<int64_t> epoch_permutation(int64_t n, uint64_t seed, int64_t epoch) {
  Generator gen(seed, stream_counter_hi(kStreamShuffle, epoch));
  return randperm(n, gen);
}

DistributedSampler::DistributedSampler(int64_t dataset_size, int64_t global_batch,
                                       int64_t world_size, int64_t rank, uint64_t seed,
                                       bool shuffle, bool drop_last)
    : dataset_size_(dataset_size),
      global_batch_(global_batch),
      world_size_(world_size),
      rank_(rank),
      seed_(seed),
      shuffle_(shuffle),
      drop_last_(drop_last) {
  TANDEM_CHECK_T(ConfigError, dataset_size >= 0, "sampler: data set size must be >= 0, got ",
                 dataset_size);
  TANDEM_CHECK_T(ConfigError, world_size >= 1, "sampler: world size must be >= 1, got ",
                 world_size);
  TANDEM_CHECK_T(ConfigError, rank >= 0 && rank < world_size, "sampler: rank ", rank,
                 " out of range for world size ", world_size);
  TANDEM_CHECK_T(ConfigError, global_batch >= 1, "sampler: global batch size must be >= 1, got ",
                 global_batch);
  TANDEM_CHECK_T(ConfigError, global_batch % world_size == 0, "global batch size ", global_batch,
                 " is not divisible by the world size ", world_size,
                 ": expected equal per-rank batches");
  set_epoch(0);
}

int64_t DistributedSampler::steps_per_epoch() const {
  return drop_last_ ? dataset_size_ / global_batch_
                    : (dataset_size_ + global_batch_ - 1) / global_batch_;
}

void DistributedSampler::set_epoch(int64_t epoch) {
  TANDEM_CHECK(epoch >= 0, "sampler: epoch must be >= 0, got ", epoch);
  if (epoch != epoch_ || permutation_.size() != static_cast<size_t>(dataset_size_)) {
    if (shuffle_) {
      permutation_ = epoch_permutation(dataset_size_, seed_, epoch);
    } else {
      permutation_.resize(static_cast<size_t>(dataset_size_));
      for (int64_t i = 0; i < dataset_size_; ++i) permutation_[static_cast<size_t>(i)] = i;
    }
  }
  epoch_ = epoch;
  next_batch_ = 0;
}

LocalBatch DistributedSampler::batch(int64_t step) const {
  TANDEM_CHECK(step >= 0 && step < steps_per_epoch(), "sampler: step ", step,
               " out of range: the epoch has ", steps_per_epoch(), " steps");
  const int64_t begin = step * global_batch_;
  const int64_t n = std::min(global_batch_, dataset_size_ - begin);
  const int64_t lo = begin + rank_ * n / world_size_, hi = begin + (rank_ + 1) * n / world_size_;
  LocalBatch b;
  b.epoch = epoch_;
  b.step_in_epoch = step;
  b.indices.assign(permutation_.begin() + lo, permutation_.begin() + hi);
  b.first_global_position = lo;
  b.global_batch_size = n;
  return b;
}

LocalBatch DistributedSampler::next() {
  TANDEM_CHECK(has_next(), "sampler: epoch ", epoch_, " is exhausted after ", steps_per_epoch(),
               " steps: call set_epoch for the next one");
  return batch(next_batch_++);
}

void DistributedSampler::restore(int64_t epoch, int64_t batch_index) {
  set_epoch(epoch);
  TANDEM_CHECK(batch_index >= 0 && batch_index <= steps_per_epoch(),
               "sampler: cannot resume at batch ", batch_index, " of epoch ", epoch,
               ": expected 0..", steps_per_epoch(), " (global batch ", global_batch_, ", ",
               dataset_size_, " samples)");
  next_batch_ = batch_index;
}

}  // namespace tandem
