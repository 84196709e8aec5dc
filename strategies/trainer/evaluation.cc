// evaluate(): the sharded loop and the single all-reduce of its sums.
#include "strategies/trainer/evaluation.h"

#include <algorithm>
#include <cmath>

#include "core/autograd/grad_mode.h"
#include "core/data/loader.h"
#include "core/data/sampler.h"
#include "core/ops/ops.h"
#include "strategies/single/single_strategy.h"

namespace tandem {

std::vector<double> EvalMetrics::per_class_accuracy() const {
  std::vector<double> out(static_cast<size_t>(num_classes), NAN);
  for (int64_t c = 0; c < num_classes; ++c) {
    int64_t total = 0;
    for (int64_t p = 0; p < num_classes; ++p) total += confusion_at(c, p);
    if (total > 0) out[static_cast<size_t>(c)] = static_cast<double>(confusion_at(c, c)) / total;
  }
  return out;
}

EvalMetrics evaluate(Module& model, Strategy& strategy, const std::shared_ptr<const Dataset>& data,
                     const Transforms& transforms, const EvalOptions& options) {
  model.eval();
  NoGradGuard no_grad;
  DistributedSampler sampler(data->size(), options.batch, strategy.world_size(), strategy.rank(), 0,
                             /*shuffle=*/false, /*drop_last=*/false);
  DataLoader loader(data, sampler, transforms, options.workers);
  loader.set_epoch(0);
  const int64_t k = options.num_classes;
  // [loss x n, top-1 hits, n, top-5 hits, confusion matrix...]
  std::vector<double> sums(k > 0 ? 4 + static_cast<size_t>(k * k) : 3, 0.0);
  while (auto b = loader.next()) {
    const int64_t n = b->labels.numel();
    if (n == 0) continue;
    const std::vector<Tensor> params = model.parameters();
    const Device dev = params.empty() ? Device::cpu() : params.front().device();
    Tensor labels = b->labels.to(dev);
    Tensor logits = model.forward(model_input(b->images, params));
    sums[0] += cross_entropy(logits, labels).item() * static_cast<double>(n);
    sums[1] += sum(eq(argmax(logits, 1), labels).to(DType::kF64)).item();
    sums[2] += static_cast<double>(n);
    if (k == 0) continue;
    const std::vector<double> z = logits.to_vector();
    const std::vector<double> y = b->labels.to_vector();
    const int64_t width = logits.shape()[1];
    for (int64_t i = 0; i < n; ++i) {
      const double* row = z.data() + i * width;
      const int64_t truth = static_cast<int64_t>(y[static_cast<size_t>(i)]);
      // Rank of the true class: how many logits beat it (ties go to the lower index, as argmax).
      int64_t above = 0, predicted = 0;
      for (int64_t j = 0; j < width; ++j) {
        if (row[j] > row[truth] || (row[j] == row[truth] && j < truth)) ++above;
        if (row[j] > row[predicted]) predicted = j;
      }
      if (above < 5) sums[3] += 1;
      predicted = std::min(predicted, k - 1);
      sums[4 + static_cast<size_t>(std::min(truth, k - 1) * k + predicted)] += 1;
    }
  }
  std::vector<double> total = strategy.all_reduce_sum(sums);
  model.train();
  EvalMetrics m;
  m.count = static_cast<int64_t>(total[2]);
  m.num_classes = k;
  if (k > 0) {
    m.confusion.resize(static_cast<size_t>(k * k));
    for (size_t i = 0; i < m.confusion.size(); ++i)
      m.confusion[i] = static_cast<int64_t>(std::llround(total[4 + i]));
  }
  if (total[2] == 0) return m;
  m.loss = total[0] / total[2];
  m.accuracy = total[1] / total[2];
  if (k > 0) m.top5 = total[3] / total[2];
  return m;
}

}  // namespace tandem
