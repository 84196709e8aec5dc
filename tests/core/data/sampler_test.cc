// DistributedSampler: what each rank sees does not depend on the world size, only on
// (seed, epoch); epochs reshuffle; a run resumes mid-epoch exactly.
#include "core/data/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>

#include "core/base/error.h"
#include "core/data/random_streams.h"
#include "core/random/philox.h"

namespace tandem {
namespace {

std::vector<int64_t> concat(const std::vector<int64_t>& a, const std::vector<int64_t>& b) {
  std::vector<int64_t> r = a;
  r.insert(r.end(), b.begin(), b.end());
  return r;
}

TEST(Sampler, TwoRanksTogetherSeeExactlyTheSingleProcessBatchInOrder) {
  DistributedSampler one(100, 64, 1, 0, 7, true);
  DistributedSampler r0(100, 64, 2, 0, 7, true), r1(100, 64, 2, 1, 7, true);
  for (int64_t epoch : {0, 3}) {
    one.set_epoch(epoch);
    r0.set_epoch(epoch);
    r1.set_epoch(epoch);
    ASSERT_EQ(one.steps_per_epoch(), 1);
    ASSERT_EQ(r0.steps_per_epoch(), 1);
    LocalBatch w = one.next(), a = r0.next(), b = r1.next();
    ASSERT_EQ(a.indices.size(), 32u);
    EXPECT_EQ(concat(a.indices, b.indices), w.indices);
    EXPECT_EQ(a.first_global_position, 0);
    EXPECT_EQ(b.first_global_position, 32);
    EXPECT_EQ(a.global_batch_size, 64);
    EXPECT_EQ(b.epoch, epoch);
  }
}

TEST(Sampler, FourRanksSliceEveryGlobalBatch) {
  DistributedSampler one(1000, 40, 1, 0, 1, true);
  std::vector<DistributedSampler> ranks;
  for (int r = 0; r < 4; ++r) ranks.emplace_back(1000, 40, 4, r, 1, true);
  for (int64_t step = 0; step < one.steps_per_epoch(); ++step) {
    std::vector<int64_t> joined;
    for (int r = 0; r < 4; ++r) {
      LocalBatch b = ranks[r].batch(step);
      EXPECT_EQ(b.first_global_position, step * 40 + r * 10);
      EXPECT_EQ(b.step_in_epoch, step);
      joined = concat(joined, b.indices);
    }
    ASSERT_EQ(joined, one.batch(step).indices) << "step " << step;
  }
}

TEST(Sampler, EpochPermutationIsTheShuffleStreamAndSameOnEveryInstance) {
  DistributedSampler a(500, 10, 2, 0, 11, true), b(500, 10, 2, 1, 11, true);
  a.set_epoch(2);
  b.set_epoch(2);
  EXPECT_EQ(a.permutation(), b.permutation());
  Generator gen(11, kStreamShuffle << 32 | 2);
  EXPECT_EQ(a.permutation(), randperm(500, gen));
  std::vector<int64_t> sorted = a.permutation();
  std::sort(sorted.begin(), sorted.end());
  std::vector<int64_t> iota(500);
  std::iota(iota.begin(), iota.end(), 0);
  EXPECT_EQ(sorted, iota);
  EXPECT_NE(a.permutation(), iota);
}

TEST(Sampler, PermutationChangesWithEpochAndSeed) {
  DistributedSampler a(500, 10, 1, 0, 11, true), c(500, 10, 1, 0, 12, true);
  const std::vector<int64_t> e0 = a.permutation();
  a.set_epoch(1);
  const std::vector<int64_t> e1 = a.permutation();
  EXPECT_NE(e0, e1);
  EXPECT_NE(e0, c.permutation());
  int fixed = 0;  // a random permutation has about one fixed point relative to another
  for (size_t i = 0; i < e0.size(); ++i) fixed += e0[i] == e1[i];
  EXPECT_LT(fixed, 10);
  a.set_epoch(0);
  EXPECT_EQ(a.permutation(), e0);
}

TEST(Sampler, WithoutShuffleTheOrderIsTheDataSetOrder) {
  DistributedSampler s(10, 4, 2, 1, 5, /*shuffle=*/false, /*drop_last=*/false);
  s.set_epoch(9);
  EXPECT_EQ(s.batch(0).indices, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(s.batch(1).indices, (std::vector<int64_t>{6, 7}));
  EXPECT_EQ(s.batch(2).indices, (std::vector<int64_t>{9}));  // last batch {8, 9}: rank 1 gets 9
}

TEST(Sampler, StepsPerEpochDropOrKeepTheLastPartialBatch) {
  EXPECT_EQ(DistributedSampler(100, 8, 2, 0, 0, true, true).steps_per_epoch(), 12);
  EXPECT_EQ(DistributedSampler(100, 8, 2, 0, 0, true, false).steps_per_epoch(), 13);
  EXPECT_EQ(DistributedSampler(96, 8, 2, 0, 0, true, false).steps_per_epoch(), 12);
  EXPECT_EQ(DistributedSampler(7, 8, 1, 0, 0, true, true).steps_per_epoch(), 0);
  EXPECT_EQ(DistributedSampler(60000, 64, 4, 3, 0, true, true).steps_per_epoch(), 937);
  EXPECT_EQ(DistributedSampler(10000, 1000, 4, 3, 0, false, false).steps_per_epoch(), 10);
}

TEST(Sampler, LastPartialBatchIsSplitProportionallyAcrossRanks) {
  // 99 samples, global batch 8: the last batch holds 3 samples, positions 96..98.
  DistributedSampler one(99, 8, 1, 0, 3, false, false);
  DistributedSampler r0(99, 8, 2, 0, 3, false, false), r1(99, 8, 2, 1, 3, false, false);
  LocalBatch a = r0.batch(12), b = r1.batch(12);
  EXPECT_EQ(a.indices, (std::vector<int64_t>{96}));
  EXPECT_EQ(b.indices, (std::vector<int64_t>{97, 98}));
  EXPECT_EQ(a.first_global_position, 96);
  EXPECT_EQ(b.first_global_position, 97);
  EXPECT_EQ(a.global_batch_size, 3);
  EXPECT_EQ(concat(a.indices, b.indices), one.batch(12).indices);
  // Four ranks, 2 samples: two ranks get an empty slice but still take the step.
  DistributedSampler q0(98, 8, 4, 0, 3, false, false), q3(98, 8, 4, 3, 3, false, false);
  EXPECT_TRUE(q0.batch(12).indices.empty());
  EXPECT_EQ(q3.batch(12).indices, (std::vector<int64_t>{97}));
}

TEST(Sampler, RestoreContinuesMidEpochExactly) {
  DistributedSampler run(1000, 32, 2, 1, 9, true);
  run.set_epoch(4);
  for (int i = 0; i < 5; ++i) run.next();
  EXPECT_EQ(run.state(), (SamplerState{4, 5}));
  // A fresh sampler (a restarted process) resumes at the recorded position.
  DistributedSampler resumed(1000, 32, 2, 1, 9, true);
  resumed.restore(4, 5);
  while (run.has_next()) {
    ASSERT_TRUE(resumed.has_next());
    LocalBatch a = run.next(), b = resumed.next();
    EXPECT_EQ(a.indices, b.indices);
    EXPECT_EQ(a.first_global_position, b.first_global_position);
    EXPECT_EQ(a.step_in_epoch, b.step_in_epoch);
  }
  EXPECT_FALSE(resumed.has_next());
  EXPECT_EQ(resumed.state(), (SamplerState{4, 31}));
  // The position does not depend on the world size: resume on one rank with the same batch.
  DistributedSampler single(1000, 32, 1, 0, 9, true);
  single.restore(4, 5);
  LocalBatch s = single.next();
  DistributedSampler other(1000, 32, 2, 0, 9, true);
  other.restore(4, 5);
  EXPECT_EQ(concat(other.next().indices, resumed.batch(5).indices), s.indices);
}

TEST(Sampler, BadArgumentsAreConfigErrors) {
  try {
    DistributedSampler(100, 10, 4, 0, 0, true);
    ADD_FAILURE() << "no exception";
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(),
                 "global batch size 10 is not divisible by the world size 4: expected equal "
                 "per-rank batches");
  }
  EXPECT_THROW(DistributedSampler(100, 8, 2, 2, 0, true), ConfigError);
  DistributedSampler s(100, 10, 1, 0, 0, true);
  try {
    s.restore(0, 11);
    ADD_FAILURE() << "no exception";
  } catch (const ValueError& e) {
    EXPECT_STREQ(e.what(),
                 "sampler: cannot resume at batch 11 of epoch 0: expected 0..10 (global batch 10, "
                 "100 samples)");
  }
  s.restore(0, 10);
  EXPECT_FALSE(s.has_next());
  EXPECT_THROW(s.next(), ValueError);
}

}  // namespace
}  // namespace tandem
