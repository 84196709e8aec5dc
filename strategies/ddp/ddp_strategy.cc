#include "strategies/ddp/ddp_strategy.h"

#include "core/autograd/grad_mode.h"
#include "strategies/single/single_strategy.h"

namespace tandem {

DdpStrategy::DdpStrategy(std::shared_ptr<Communicator> comm, ReducerOptions options)
    : comm_(std::move(comm)), options_(std::move(options)) {}

void DdpStrategy::broadcast_tensors(const NamedTensors& tensors) {
  NoGradGuard ng;
  for (const auto& [name, t] : tensors) {
    if (!is_floating(t.dtype())) {
      Tensor f = t.to(DType::kF64);  // integer buffers (num_batches_tracked) travel as f64
      broadcast_sync(*comm_, f, 0);
      Tensor dst = t;
      dst.copy_(f);
      continue;
    }
    Tensor dst = t;
    broadcast_sync(*comm_, dst, 0);
  }
}

void DdpStrategy::prepare(Module& model, Optimizer& optimizer) {
  const std::vector<Tensor> params = model.parameters();
  device_ = params.empty() ? Device::cpu() : params.front().device();
  broadcast_tensors(model.named_parameters());
  broadcast_tensors(model.named_buffers());
  reducer_ = std::make_unique<Reducer>(model.named_parameters(), *comm_, options_);
}

double DdpStrategy::forward_backward(Module& model, const MicroBatch& micro) {
  if (micro.micro_index == 0 && comm_->world_size() > 1) {
    NamedTensors buffers = model.named_buffers();
    if (!buffers.empty()) broadcast_tensors(buffers);
  }
  reducer_->prepare_for_backward(/*sync=*/micro.micro_index + 1 == micro.micro_count);
  return replica_forward_backward(model, micro, 1.0 / micro.micro_count);
}

void DdpStrategy::synchronize(Module&) { reducer_->finalize(); }

std::vector<double> DdpStrategy::all_reduce_sum(const std::vector<double>& values) {
  Tensor t = from_vector(values, {static_cast<int64_t>(values.size())}, DType::kF64).to(device_);
  all_reduce_sync(*comm_, t, ReduceOp::kSum);
  return t.to_vector();
}

}  // namespace tandem
