#include "strategies/ddp/ddp_strategy.h"

#include <algorithm>
#include <cstring>

#include "core/autograd/grad_mode.h"
#include "core/base/error.h"
#include "strategies/single/single_strategy.h"
#include "strategies/step_trace.h"

#include <optional>

namespace tandem {

DdpStrategy::DdpStrategy(std::shared_ptr<Communicator> comm, ReducerOptions options,
                         bool shard_optimizer)
    : comm_(std::move(comm)), options_(std::move(options)), shard_optimizer_(shard_optimizer) {}

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
  reducer_->set_trace(trace_);
  if (shard_optimizer_ && comm_->world_size() > 1) plan_shards(optimizer);
}

void DdpStrategy::plan_shards(const Optimizer& optimizer) {
  const NamedTensors& params = optimizer.params();
  const DType dtype = params.empty() ? DType::kF32 : params[0].second.dtype();
  int64_t total = 0;
  for (const auto& [name, p] : params) {
    TANDEM_CHECK_T(
        ConfigError, p.dtype() == dtype && p.is_contiguous(),
        "strategy.shard_optimizer: every parameter must be contiguous and of one dtype; '", name,
        "' is ", dtype_name(p.dtype()), " (first: ", dtype_name(dtype), ")");
    offsets_.push_back(total);
    total += p.numel();
  }
  const int64_t world = comm_->world_size(), rank = comm_->rank();
  block_ = (total + world - 1) / world;
  const int64_t lo = std::min(total, rank * block_), hi = std::min(total, lo + block_);
  for (size_t i = 0; i < params.size(); ++i) {
    const int64_t b = std::max(lo, offsets_[i]),
                  e = std::min(hi, offsets_[i] + params[i].second.numel());
    if (b < e) my_ranges_.push_back({i, b - offsets_[i], e - offsets_[i]});
  }
  send_ = zeros({block_}, dtype);
  receive_ = zeros({block_ * world}, dtype);
  // The parameters become views into one flat buffer of world blocks, allocated where the backend
  // can share it (shm: every rank's copy in one segment): after each rank's update of its block,
  // one in-place all_gather writes every block into every copy -- no staging copies.
  flat_params_ = comm_->allocate_shared(block_ * world, dtype, device_);
  NoGradGuard ng;
  for (size_t i = 0; i < params.size(); ++i) {
    const Tensor& p = params[i].second;
    Tensor view = flat_params_.slice(0, offsets_[i], offsets_[i] + p.numel()).view(p.shape());
    view.copy_(p);
    p.set_data(view);
  }
}

void DdpStrategy::gather_blocks(const std::vector<Tensor>& tensors) {
  NoGradGuard ng;
  const size_t elem = dtype_size(send_.dtype());
  // Each tensor's overlap with flat range [lo, hi): (tensor, first element, block position, count).
  auto for_overlaps = [&](int64_t lo, int64_t hi, auto&& fn) {
    for (size_t i = 0; i < tensors.size(); ++i) {
      const int64_t b = std::max(lo, offsets_[i]),
                    e = std::min(hi, offsets_[i] + tensors[i].numel());
      if (b < e)
        fn(static_cast<char*>(tensors[i].raw_data()) + (b - offsets_[i]) * elem, (b - lo) * elem,
           (e - b) * elem);
    }
  };
  const int64_t total = offsets_.empty() ? 0 : offsets_.back() + tensors.back().numel();
  const int world = comm_->world_size(), rank = comm_->rank();
  auto block_range = [&](int r) {
    const int64_t lo = std::min(total, r * block_);
    return std::make_pair(lo, std::min(total, lo + block_));
  };
  char* send = static_cast<char*>(send_.raw_data());
  auto [my_lo, my_hi] = block_range(rank);
  for_overlaps(my_lo, my_hi, [&](char* data, int64_t at, int64_t bytes) {
    std::memcpy(send + at, data, static_cast<size_t>(bytes));
  });
  comm_->all_gather(send_, receive_)->wait(comm_->options().timeout);
  const char* received = static_cast<const char*>(receive_.raw_data());
  for (int r = 0; r < world; ++r) {
    if (r == rank) continue;
    auto [lo, hi] = block_range(r);
    const char* block = received + static_cast<int64_t>(r) * block_ * elem;
    for_overlaps(lo, hi, [&](char* data, int64_t at, int64_t bytes) {
      std::memcpy(data, block + at, static_cast<size_t>(bytes));
    });
  }
}

void DdpStrategy::apply_update(Module&, Optimizer& optimizer) {
  if (!shard_optimizer_ || comm_->world_size() == 1) return optimizer.step();
  optimizer.step_ranges(my_ranges_);
  const int64_t rank = comm_->rank();
  Tensor mine = flat_params_.slice(0, rank * block_, (rank + 1) * block_);
  std::optional<TraceRecorder::Span> span;
  const std::string backend = trace_ && trace_->on() ? comm_->backend_name() : std::string();
  if (trace_ && trace_->on())
    span.emplace(trace_->recorder(), "allgather", "comm", TraceLane::kCommunication,
                 TraceArgs()
                     .num("bytes", static_cast<double>(flat_params_.numel() *
                                                       dtype_size(flat_params_.dtype())))
                     .text("backend", backend));
  comm_->all_gather(mine, flat_params_)->wait(comm_->options().timeout);
}

void DdpStrategy::before_checkpoint(Module&, Optimizer& optimizer) {
  if (!shard_optimizer_ || comm_->world_size() == 1) return;
  for (size_t k = 0; k < optimizer.buffer_names().size(); ++k) {
    std::vector<Tensor> buffers;
    for (size_t i = 0; i < optimizer.params().size(); ++i)
      buffers.push_back(optimizer.state_buffer(i, k));
    gather_blocks(buffers);
  }
}

double DdpStrategy::forward_backward(Module& model, const MicroBatch& micro) {
  if (micro.micro_index == 0 && comm_->world_size() > 1) {
    NamedTensors buffers = model.named_buffers();
    if (!buffers.empty()) broadcast_tensors(buffers);
  }
  reducer_->prepare_for_backward(/*sync=*/micro.micro_index + 1 == micro.micro_count);
  return replica_forward_backward(model, micro, 1.0 / micro.micro_count);
}

void DdpStrategy::synchronize(Module&) {
  reducer_->finalize();
}

std::vector<double> DdpStrategy::all_reduce_sum(const std::vector<double>& values) {
  Tensor t = from_vector(values, {static_cast<int64_t>(values.size())}, DType::kF64).to(device_);
  all_reduce_sync(*comm_, t, ReduceOp::kSum);
  return t.to_vector();
}

}  // namespace tandem
