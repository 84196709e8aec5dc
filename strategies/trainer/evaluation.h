// Evaluation of a model on a data split, sharded across the strategy's replicas: each rank runs
// its slice of every batch (DistributedSampler without shuffle, the last batch kept) and the sums
// are all-reduced once at the end, so every rank returns the same numbers -- the ones one process
// would compute on the whole split (up to the order of float additions).
//
// The decision: everything is a sum before the one all_reduce_sum (loss x n, hits, counts, the
// confusion matrix), and the size of that vector depends only on `num_classes`, never on the
// shard, so ranks with an empty shard still issue the same collective.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "core/data/dataset.h"
#include "core/data/transforms.h"
#include "core/nn/module.h"
#include "strategies/strategy.h"

namespace tandem {

struct EvalOptions {
  int64_t batch = 256;  // global batch
  int workers = 2;      // loader threads
  // > 0: also top-5 accuracy and a num_classes x num_classes confusion matrix (predictions at or
  // above num_classes are counted in the last column). 0: loss and accuracy only.
  int64_t num_classes = 0;
};

struct EvalMetrics {
  double loss = 0;      // mean cross-entropy
  double accuracy = 0;  // top-1
  double top5 = 0;      // top-min(5, logits) accuracy; with num_classes only
  int64_t count = 0;    // samples evaluated
  int64_t num_classes = 0;
  std::vector<int64_t> confusion;  // [true class][predicted class], row-major; with num_classes

  int64_t confusion_at(int64_t truth, int64_t predicted) const {
    return confusion[static_cast<size_t>(truth * num_classes + predicted)];
  }
  // Per class: hits / samples of that class (NaN for a class with no samples).
  std::vector<double> per_class_accuracy() const;
};

// Puts the model in eval mode (and back in train mode after), without gradients. Every rank must
// call it (it issues one collective).
EvalMetrics evaluate(Module& model, Strategy& strategy, const std::shared_ptr<const Dataset>& data,
                     const Transforms& transforms, const EvalOptions& options);

}  // namespace tandem
