// DataLoader: the same batches whatever the number of workers, resumable mid-epoch, bounded
// prefetch, errors carried to the caller, and a destructor that never hangs.
#include "core/data/loader.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>

#include "core/base/error.h"
#include "core/data/synthetic.h"

namespace tandem {
namespace {

std::shared_ptr<const Dataset> small_synthetic(int64_t size = 103) {
  SyntheticOptions o;
  o.size = size;
  o.shape = {3, 8, 8};
  o.num_classes = 10;
  o.seed = 17;
  return std::make_shared<SyntheticDataset>(o, false);
}

Transforms augmenting(const SampleShape& shape) {
  TransformOptions o;
  o.mean = {0.5, 0.4, 0.3};
  o.std = {0.2, 0.25, 0.3};
  o.crop_padding = 2;
  o.horizontal_flip = true;
  o.seed = 99;
  return Transforms(shape, o);
}

std::vector<Batch> epoch_batches(DataLoader& loader, int64_t epoch) {
  loader.set_epoch(epoch);
  std::vector<Batch> out;
  while (std::optional<Batch> b = loader.next()) out.push_back(std::move(*b));
  return out;
}

void expect_same_batches(const std::vector<Batch>& a, const std::vector<Batch>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    SCOPED_TRACE("batch " + std::to_string(i));
    EXPECT_EQ(a[i].indices, b[i].indices);
    EXPECT_EQ(a[i].step_in_epoch, b[i].step_in_epoch);
    EXPECT_EQ(a[i].first_global_position, b[i].first_global_position);
    EXPECT_EQ(a[i].images.shape(), b[i].images.shape());
    EXPECT_EQ(a[i].images.to_vector(), b[i].images.to_vector());
    EXPECT_EQ(a[i].labels.to_vector(), b[i].labels.to_vector());
  }
}

TEST(Loader, BatchesHoldTheTransformedSamplesOfTheSampler) {
  auto ds = small_synthetic();
  Transforms t = augmenting(ds->sample_shape());
  DataLoader loader(ds, DistributedSampler(ds->size(), 10, 2, 1, 5, true), t, 0);
  loader.set_epoch(2);
  DistributedSampler reference(ds->size(), 10, 2, 1, 5, true);
  reference.set_epoch(2);
  std::optional<Batch> b = loader.next();
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->images.shape(), (Shape{5, 3, 8, 8}));
  EXPECT_EQ(b->labels.shape(), (Shape{5}));
  EXPECT_EQ(b->labels.dtype(), DType::kI64);
  EXPECT_EQ(b->indices, reference.batch(0).indices);
  EXPECT_EQ(b->first_global_position, 5);
  EXPECT_EQ(b->global_batch_size, 10);
  // Row 3 is sample indices[3] through the transforms of epoch 2.
  std::vector<uint8_t> px(192);
  int64_t label = -1;
  ds->get(b->indices[3], px.data(), &label);
  std::vector<float> expected(192);
  t.apply(px.data(), expected.data(), 2, b->indices[3]);
  const float* row = b->images.data<float>() + 3 * 192;
  EXPECT_EQ(std::vector<float>(row, row + 192), expected);
  EXPECT_EQ(b->labels.data<int64_t>()[3], label);
}

TEST(Loader, SameBatchesWithZeroOrThreeWorkers) {
  auto ds = small_synthetic();
  Transforms t = augmenting(ds->sample_shape());
  for (bool drop_last : {true, false}) {
    SCOPED_TRACE(drop_last ? "drop_last" : "keep last");
    DataLoader sync(ds, DistributedSampler(ds->size(), 8, 2, 0, 5, true, drop_last), t, 0);
    DataLoader threaded(ds, DistributedSampler(ds->size(), 8, 2, 0, 5, true, drop_last), t, 3);
    std::vector<Batch> a = epoch_batches(sync, 1), b = epoch_batches(threaded, 1);
    EXPECT_EQ(a.size(), drop_last ? 12u : 13u);
    expect_same_batches(a, b);
    expect_same_batches(epoch_batches(sync, 2), epoch_batches(threaded, 2));
    EXPECT_NE(a[0].indices, epoch_batches(sync, 2)[0].indices);  // reshuffled
  }
}

TEST(Loader, OneRankWithTheWholeBatchEqualsTwoRanksTogether) {
  auto ds = small_synthetic();
  Transforms t = augmenting(ds->sample_shape());
  DataLoader one(ds, DistributedSampler(ds->size(), 8, 1, 0, 5, true), t, 2);
  DataLoader r0(ds, DistributedSampler(ds->size(), 8, 2, 0, 5, true), t, 1);
  DataLoader r1(ds, DistributedSampler(ds->size(), 8, 2, 1, 5, true), t, 0);
  std::vector<Batch> w = epoch_batches(one, 3), a = epoch_batches(r0, 3), b = epoch_batches(r1, 3);
  ASSERT_EQ(w.size(), a.size());
  for (size_t i = 0; i < w.size(); ++i) {
    std::vector<double> joined = a[i].images.to_vector(), rest = b[i].images.to_vector();
    joined.insert(joined.end(), rest.begin(), rest.end());
    EXPECT_EQ(joined, w[i].images.to_vector()) << "batch " << i;
  }
}

TEST(Loader, RestoreMidEpochGivesTheRemainingBatches) {
  auto ds = small_synthetic();
  Transforms t = augmenting(ds->sample_shape());
  DataLoader full(ds, DistributedSampler(ds->size(), 10, 1, 0, 5, true), t, 2);
  std::vector<Batch> all = epoch_batches(full, 6);
  EXPECT_EQ(full.state(), (SamplerState{6, 10}));
  for (int workers : {0, 2}) {
    DataLoader resumed(ds, DistributedSampler(ds->size(), 10, 1, 0, 5, true), t, workers);
    resumed.set_epoch(0);
    resumed.next();  // some prefetching for the old position is under way
    resumed.restore(6, 4);
    EXPECT_EQ(resumed.state(), (SamplerState{6, 4}));
    std::vector<Batch> rest;
    while (std::optional<Batch> b = resumed.next()) rest.push_back(std::move(*b));
    expect_same_batches(rest, std::vector<Batch>(all.begin() + 4, all.end()));
    EXPECT_EQ(resumed.state(), (SamplerState{6, 10}));
  }
}

// Counts get() calls; sleeps in each so that workers are observably busy; fails on one index.
class ProbeDataset : public Dataset {
 public:
  ProbeDataset(std::shared_ptr<const Dataset> base, int64_t fail_index, int sleep_ms)
      : base_(std::move(base)), fail_index_(fail_index), sleep_ms_(sleep_ms) {}
  std::string name() const override { return "probe"; }
  int64_t size() const override { return base_->size(); }
  SampleShape sample_shape() const override { return base_->sample_shape(); }
  int64_t num_classes() const override { return base_->num_classes(); }
  void get(int64_t index, uint8_t* pixels, int64_t* label) const override {
    ++calls;
    if (sleep_ms_ > 0) std::this_thread::sleep_for(std::chrono::milliseconds(sleep_ms_));
    if (index == fail_index_)
      throw IoError("probe: sample " + std::to_string(index) + " is unreadable");
    base_->get(index, pixels, label);
  }
  mutable std::atomic<int64_t> calls{0};

 private:
  std::shared_ptr<const Dataset> base_;
  int64_t fail_index_;
  int sleep_ms_;
};

TEST(Loader, WorkerErrorReachesTheCallerWhenItsBatchIsDue) {
  auto ds = small_synthetic();
  // Sample 35 sits in batch 3 of the unshuffled order (batches of 10).
  for (int workers : {0, 3}) {
    SCOPED_TRACE(workers);
    auto probe = std::make_shared<ProbeDataset>(ds, 35, 0);
    DataLoader loader(probe, DistributedSampler(ds->size(), 10, 1, 0, 0, false),
                      Transforms(ds->sample_shape()), workers);
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(loader.next().has_value());
    for (int attempt = 0; attempt < 2; ++attempt) {  // and again until the epoch restarts
      try {
        loader.next();
        ADD_FAILURE() << "no exception";
      } catch (const IoError& e) {
        EXPECT_STREQ(e.what(), "probe: sample 35 is unreadable");
      }
    }
    EXPECT_EQ(loader.state(), (SamplerState{0, 3}));  // the failed batch is still the next one
    loader.restore(0, 4);
    std::optional<Batch> b = loader.next();
    ASSERT_TRUE(b.has_value());
    EXPECT_EQ(b->indices.front(), 40);
  }
}

TEST(Loader, PrefetchIsBounded) {
  auto probe = std::make_shared<ProbeDataset>(small_synthetic(), -1, 1);
  DataLoader loader(probe, DistributedSampler(probe->size(), 4, 1, 0, 0, true),
                    Transforms(probe->sample_shape()), /*workers=*/2, /*prefetch=*/1);
  ASSERT_TRUE(loader.next().has_value());
  // Holding batch 0, the workers may build batches 1..3 (prefetch 1 + 2 workers) and no more.
  const int64_t limit = (1 + 1 + 2) * 4;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (probe->calls < limit && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(probe->calls, limit);
}

TEST(Loader, DestructionMidEpochDoesNotHang) {
  auto probe = std::make_shared<ProbeDataset>(small_synthetic(1000), -1, 2);
  auto done = std::make_shared<std::promise<void>>();  // shared: the thread may outlive a failure
  std::future<void> finished = done->get_future();
  std::thread([probe, done] {
    {
      DataLoader loader(probe, DistributedSampler(probe->size(), 20, 1, 0, 0, true),
                        Transforms(probe->sample_shape()), 3, 4);
      loader.next();
      loader.next();
    }  // workers are mid-batch here
    done->set_value();
  }).detach();
  ASSERT_EQ(finished.wait_for(std::chrono::seconds(30)), std::future_status::ready)
      << "DataLoader destructor did not return";
  EXPECT_LT(probe->calls, 1000);  // it did not run the epoch to its end first
}

TEST(Loader, RejectsTransformsForAnotherShape) {
  auto ds = small_synthetic();
  try {
    DataLoader loader(ds, DistributedSampler(ds->size(), 10, 1, 0, 0, true),
                      Transforms({1, 28, 28}));
    ADD_FAILURE() << "no exception";
  } catch (const ConfigError& e) {
    EXPECT_STREQ(
        e.what(),
        "data loader: transforms are for 1x28x28 samples but data set synthetic has 3x8x8");
  }
}

}  // namespace
}  // namespace tandem
