// DataLoader: workers claim steps in order under one mutex, build them outside it, and file the
// result by step; the caller takes results strictly in step order, so the number of workers and
// their timing change nothing but speed.
#include "core/data/loader.h"

#include <algorithm>

#include "core/base/error.h"
#include "core/parallel/parallel.h"

namespace tandem {

Batch make_batch(const Dataset& dataset, const Transforms& transforms, const LocalBatch& plan,
                 bool parallel) {
  const SampleShape s = dataset.sample_shape();
  const int64_t n = static_cast<int64_t>(plan.indices.size()), numel = s.numel();
  Batch b;
  b.images = empty({n, s.channels, s.height, s.width}, DType::kF32);
  b.labels = empty({n}, DType::kI64);
  float* images = b.images.data<float>();
  int64_t* labels = b.labels.data<int64_t>();
  auto fill = [&](int64_t begin, int64_t end) {
    std::vector<uint8_t> pixels(static_cast<size_t>(numel));
    for (int64_t i = begin; i < end; ++i) {
      const int64_t index = plan.indices[static_cast<size_t>(i)];
      dataset.load(index, plan.epoch, pixels.data(), labels + i);
      transforms.apply(pixels.data(), images + i * numel, plan.epoch, index);
    }
  };
  if (parallel) {
    // About 64 K pixels per chunk: enough work to pay for a thread hand-off.
    parallel_for(0, n, std::max<int64_t>(1, 65536 / std::max<int64_t>(numel, 1)), fill);
  } else {
    fill(0, n);
  }
  b.indices = plan.indices;
  b.epoch = plan.epoch;
  b.step_in_epoch = plan.step_in_epoch;
  b.first_global_position = plan.first_global_position;
  b.global_batch_size = plan.global_batch_size;
  return b;
}

DataLoader::DataLoader(std::shared_ptr<const Dataset> dataset, DistributedSampler sampler,
                       Transforms transforms, int workers, int prefetch)
    : dataset_(std::move(dataset)),
      sampler_(std::move(sampler)),
      transforms_(std::move(transforms)),
      workers_(workers),
      prefetch_(prefetch) {
  TANDEM_CHECK_T(ConfigError, dataset_ != nullptr, "data loader: no data set");
  TANDEM_CHECK_T(ConfigError, transforms_.shape() == dataset_->sample_shape(),
                 "data loader: transforms are for ", sample_shape_str(transforms_.shape()),
                 " samples but data set ", dataset_->name(), " has ",
                 sample_shape_str(dataset_->sample_shape()));
  TANDEM_CHECK_T(ConfigError, sampler_.dataset_size() == dataset_->size(),
                 "data loader: sampler is for ", sampler_.dataset_size(), " samples but data set ",
                 dataset_->name(), " has ", dataset_->size());
  TANDEM_CHECK_T(ConfigError, workers >= 0, "data loader: workers must be >= 0, got ", workers);
  TANDEM_CHECK_T(ConfigError, prefetch >= 0, "data loader: prefetch must be >= 0, got ", prefetch);
  {
    std::lock_guard<std::mutex> lock(mu_);
    start_epoch_locked();
  }
  try {
    for (int i = 0; i < workers; ++i) threads_.emplace_back([this] { worker_loop(); });
  } catch (...) {  // could not start a thread: stop those that did before giving up
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    work_cv_.notify_all();
    for (std::thread& t : threads_) t.join();
    throw;
  }
}

DataLoader::~DataLoader() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  ready_cv_.notify_all();
  for (std::thread& t : threads_) t.join();
}

void DataLoader::start_epoch_locked() {
  ++generation_;
  plan_ = std::make_shared<const DistributedSampler>(sampler_);
  next_claim_ = next_return_ = sampler_.state().batch_index;
  end_ = sampler_.steps_per_epoch();
  ready_.clear();
}

void DataLoader::restore(int64_t epoch, int64_t batch_index) {
  sampler_.restore(epoch, batch_index);
  failed_ = nullptr;
  {
    std::lock_guard<std::mutex> lock(mu_);
    start_epoch_locked();
  }
  work_cv_.notify_all();
}

void DataLoader::worker_loop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    work_cv_.wait(lock, [&] {
      return stop_ || (next_claim_ < end_ && next_claim_ < next_return_ + prefetch_ + workers_);
    });
    if (stop_) return;
    const int64_t step = next_claim_++;
    const uint64_t generation = generation_;
    std::shared_ptr<const DistributedSampler> plan = plan_;
    lock.unlock();
    Result r;
    try {
      r.batch = make_batch(*dataset_, transforms_, plan->batch(step), /*parallel=*/false);
    } catch (...) {
      r.error = std::current_exception();
    }
    lock.lock();
    if (generation == generation_) {
      ready_[step] = std::move(r);
      ready_cv_.notify_all();
    }
  }
}

std::optional<Batch> DataLoader::next() {
  if (failed_) std::rethrow_exception(failed_);
  if (!sampler_.has_next()) return std::nullopt;
  const int64_t step = sampler_.state().batch_index;
  Result r;
  if (workers_ == 0) {
    try {
      r.batch = make_batch(*dataset_, transforms_, sampler_.batch(step), /*parallel=*/true);
    } catch (...) {
      r.error = std::current_exception();
    }
  } else {
    std::unique_lock<std::mutex> lock(mu_);
    ready_cv_.wait(lock, [&] { return ready_.count(step) > 0; });
    r = std::move(ready_[step]);
    ready_.erase(step);
  }
  if (r.error) {
    failed_ = r.error;
    std::rethrow_exception(failed_);
  }
  sampler_.next();  // advance the cursor past the batch handed out
  if (workers_ > 0) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      next_return_ = step + 1;
    }
    work_cv_.notify_all();
  }
  return std::move(r.batch);
}

}  // namespace tandem
