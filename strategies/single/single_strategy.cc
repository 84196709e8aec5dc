#include "strategies/single/single_strategy.h"

#include "core/nn/random_context.h"
#include "core/ops/ops.h"
#include "strategies/step_trace.h"

#include <optional>

namespace tandem {

Tensor model_input(const Tensor& images, const std::vector<Tensor>& params) {
  if (params.empty()) return images;
  const Tensor& p = params.front();
  // The batch goes where the model is (host to device through pinned memory on CUDA), and is
  // widened to f64 for an fp64 model (training.precision: fp64).
  Tensor x = images.to(p.device());
  if (p.dtype() == DType::kF64 && x.dtype() != DType::kF64) x = x.to(DType::kF64);
  return x;
}

double replica_forward_backward(Module& model, const MicroBatch& micro, double grad_scale) {
  const Batch& b = *micro.batch;
  const std::vector<Tensor> params = model.parameters();
  const Device dev = params.empty() ? Device::cpu() : params.front().device();
  Tensor loss;
  {
    DropoutScope scope(micro.seed, static_cast<uint64_t>(micro.step), b.first_global_position);
    std::optional<TraceRecorder::Span> span;
    if (micro.trace && micro.trace->on())
      span.emplace(micro.trace->recorder(), "forward", "compute", TraceLane::kCompute);
    loss = cross_entropy(model.forward(model_input(b.images, params)), b.labels.to(dev));
  }
  double value = loss.item();
  grad_scale *= micro.loss_scale;
  if (micro.trace) micro.trace->begin_backward();
  if (grad_scale == 1.0)
    loss.backward();
  else
    mul(loss, grad_scale).backward();
  if (micro.trace) micro.trace->end_backward();
  return value;
}

double SingleStrategy::forward_backward(Module& model, const MicroBatch& micro) {
  return replica_forward_backward(model, micro, 1.0 / micro.micro_count);
}

}  // namespace tandem
