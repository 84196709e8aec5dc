#include "strategies/ddp/bucket_plan.h"

namespace tandem {

std::vector<std::vector<int>> plan_buckets(const std::vector<BucketItem>& items,
                                           const std::vector<int>& order,
                                           int64_t first_bucket_bytes, int64_t bucket_bytes) {
  std::vector<std::vector<int>> buckets;
  std::vector<int> current;
  int64_t used = 0;
  int64_t cap = first_bucket_bytes;
  DType dtype = DType::kF32;
  for (int i : order) {
    const BucketItem& item = items[static_cast<size_t>(i)];
    if (!current.empty() && (item.dtype != dtype || used + item.bytes > cap)) {
      buckets.push_back(std::move(current));
      current.clear();
      used = 0;
      cap = bucket_bytes;
    }
    dtype = item.dtype;
    current.push_back(i);
    used += item.bytes;
  }
  if (!current.empty()) buckets.push_back(std::move(current));
  return buckets;
}

std::vector<int> reverse_order(int n) {
  std::vector<int> order(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) order[static_cast<size_t>(i)] = n - 1 - i;
  return order;
}

}  // namespace tandem
