#include "strategies/mirrored/mirrored_strategy.h"

#include <omp.h>

#include <exception>

#include "core/autograd/grad_mode.h"
#include "core/backends/device_backend.h"
#include "core/ops/ops.h"
#include "strategies/single/single_strategy.h"

namespace tandem {

MirroredStrategy::MirroredStrategy(int replicas,
                                   std::function<std::shared_ptr<Module>()> make_replica)
    : replicas_(replicas), make_replica_(std::move(make_replica)) {
  TANDEM_CHECK_T(ConfigError, replicas >= 1, "strategy.replicas: must be >= 1, got ", replicas);
}

void MirroredStrategy::copy_state_to_replicas(Module& model, bool buffers_too) {
  NoGradGuard ng;
  NamedTensors src = buffers_too ? model.state_dict() : model.named_parameters();
  for (auto& r : others_) {
    NamedTensors dst = buffers_too ? r->state_dict() : r->named_parameters();
    for (size_t i = 0; i < src.size(); ++i) dst[i].second.copy_(src[i].second);
  }
}

void MirroredStrategy::prepare(Module& model, Optimizer&) {
  others_.clear();
  // On CUDA, replica r runs on cuda:(r mod visible devices): one replica per GPU.
  const std::vector<Tensor> params = model.parameters();
  const Device dev = params.empty() ? Device::cpu() : params.front().device();
  for (int r = 1; r < replicas_; ++r) {
    others_.push_back(make_replica_());
    others_.back()->train(model.is_training());
    if (dev.is_cuda()) others_.back()->to(Device::cuda(r % std::max(cuda_device_count(), 1)));
  }
  copy_state_to_replicas(model, /*buffers_too=*/true);
}

double MirroredStrategy::forward_backward(Module& model, const MicroBatch& micro) {
  const Batch& b = *micro.batch;
  const int64_t rows = b.labels.numel();
  TANDEM_CHECK_T(ConfigError, rows % replicas_ == 0, "strategy.replicas: the batch of ", rows,
                 " rows does not split evenly over ", replicas_, " replicas");
  const int64_t per = rows / replicas_;
  std::vector<Batch> slices(replicas_);
  for (int r = 0; r < replicas_; ++r) {
    Batch& s = slices[r];
    s.images = b.images.slice(0, r * per, (r + 1) * per);
    s.labels = b.labels.slice(0, r * per, (r + 1) * per);
    s.epoch = b.epoch;
    s.step_in_epoch = b.step_in_epoch;
    s.first_global_position = b.first_global_position + r * per;  // dropout keyed by position
    s.global_batch_size = b.global_batch_size;
  }
  std::vector<double> losses(replicas_, 0.0);
  std::vector<std::exception_ptr> errors(replicas_);
  // Each replica's gradient is that of its slice's mean loss / micro_count; the average over
  // replicas (synchronize) is then the gradient of the batch's mean loss.
  const double scale = 1.0 / micro.micro_count;
#pragma omp parallel for num_threads(replicas_) schedule(static, 1)
  for (int r = 0; r < replicas_; ++r) {
    try {
      Module& m = r == 0 ? model : *others_[r - 1];
      MicroBatch mb = micro;
      mb.batch = &slices[r];
      if (r != 0) mb.trace = nullptr;  // replica 0 (on the model the trainer traces) speaks for all
      losses[r] = replica_forward_backward(m, mb, scale);
    } catch (...) {
      errors[r] = std::current_exception();
    }
  }
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
  double mean = 0;
  for (double l : losses) mean += l;
  return mean / replicas_;
}

void MirroredStrategy::synchronize(Module& model) {
  if (others_.empty()) return;
  NoGradGuard ng;
  NamedTensors mine = model.named_parameters();
  std::vector<NamedTensors> theirs;
  for (auto& r : others_) theirs.push_back(r->named_parameters());
  const double inv = 1.0 / replicas_;
  for (size_t i = 0; i < mine.size(); ++i) {
    Tensor g = mine[i].second.grad();
    if (!g.defined()) {  // replica 0 did not reach this parameter; maybe another did
      bool any = false;
      for (auto& t : theirs) any = any || t[i].second.grad().defined();
      if (!any) continue;
      g = zeros_like(mine[i].second);
      mine[i].second.set_grad(g);
    }
    // Sum in replica order, then scale: the same result on every run.
    for (auto& t : theirs) {
      const Tensor& other = t[i].second.grad();
      if (other.defined()) add_(g, other.device() == g.device() ? other : other.to(g.device()));
    }
    mul_(g, inv);
  }
  for (auto& r : others_) r->zero_grad();
}

void MirroredStrategy::apply_update(Module& model, Optimizer& optimizer) {
  optimizer.step();
  copy_state_to_replicas(model, /*buffers_too=*/false);
}

}  // namespace tandem
