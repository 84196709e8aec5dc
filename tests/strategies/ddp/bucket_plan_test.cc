// The bucket rule shared by the reducer and `tandem scaling`, on hand-made sizes: greedy along the
// order, the first cap for the first bucket only, nothing split, a dtype change closes a bucket.
#include "strategies/ddp/bucket_plan.h"

#include <gtest/gtest.h>

namespace tandem {
namespace {

using Buckets = std::vector<std::vector<int>>;

std::vector<BucketItem> f32(const std::vector<int64_t>& bytes) {
  std::vector<BucketItem> items;
  for (int64_t b : bytes) items.push_back({b, DType::kF32});
  return items;
}

TEST(BucketPlan, FillsReverseOrderGreedilyWithASmallFirstBucket) {
  // Sizes 10, 20, 30, 40, 50 (index order); reverse: 50, 40, 30, 20, 10.
  // First cap 60: 50 fits, 50+40 does not. Then cap 70: 40+30 = 70 fits, +20 does not; 20+10.
  EXPECT_EQ(plan_buckets(f32({10, 20, 30, 40, 50}), reverse_order(5), 60, 70),
            (Buckets{{4}, {3, 2}, {1, 0}}));
}

TEST(BucketPlan, ATensorLargerThanTheCapGetsABucketOfItsOwn) {
  // 5 fits the first cap of 8; 100 exceeds every cap and is not split; 3 + 4 share the next.
  EXPECT_EQ(plan_buckets(f32({4, 3, 100, 5}), reverse_order(4), 8, 10),
            (Buckets{{3}, {2}, {1, 0}}));
}

TEST(BucketPlan, ADtypeChangeClosesTheBucket) {
  std::vector<BucketItem> items = {{4, DType::kF32}, {2, DType::kBF16}, {2, DType::kBF16}};
  EXPECT_EQ(plan_buckets(items, reverse_order(3), 100, 100), (Buckets{{2, 1}, {0}}));
}

TEST(BucketPlan, FollowsTheGivenOrderAfterARePlan) {
  // The re-plan passes the observed arrival order, here 1, 0, 2.
  EXPECT_EQ(plan_buckets(f32({8, 8, 8}), {1, 0, 2}, 8, 16), (Buckets{{1}, {0, 2}}));
}

TEST(BucketPlan, ReverseOrderCountsDown) {
  EXPECT_EQ(reverse_order(3), (std::vector<int>{2, 1, 0}));
  EXPECT_TRUE(reverse_order(0).empty());
}

}  // namespace
}  // namespace tandem
