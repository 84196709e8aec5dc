// Which gradients share a DDP bucket: the one rule the reducer (strategies/ddp/reducer.h) follows
// and `tandem scaling` (launcher/scaling/) reproduces to predict a job's communication.
//
// The decision: buckets are filled greedily along a given order (reverse parameter order at first,
// the order gradients arrived in after the re-plan), closing a bucket before a tensor that would
// take it past its cap or that has another dtype. The first bucket's cap is first_bucket_bytes
// (1 MiB: small, so communication starts early), every later one's bucket_bytes (25 MiB). A tensor
// larger than a cap gets a bucket of its own; nothing is ever split. As PyTorch DDP.
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor/dtype.h"

namespace tandem {

struct BucketItem {
  int64_t bytes = 0;  // the gradient's size: numel * dtype size
  DType dtype = DType::kF32;
};

// Buckets as lists of indices into `items`, in launch order. `order` lists every index to place,
// each once (the reducer passes all of them).
std::vector<std::vector<int>> plan_buckets(const std::vector<BucketItem>& items,
                                           const std::vector<int>& order,
                                           int64_t first_bucket_bytes, int64_t bucket_bytes);

// n-1, n-2, ..., 0: the order backward produces gradients in before any was observed.
std::vector<int> reverse_order(int n);

}  // namespace tandem
