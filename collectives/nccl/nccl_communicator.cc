#include "collectives/nccl/nccl_communicator.h"

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <chrono>
#include <cstring>
#include <map>
#include <mutex>

#include "collectives/nccl_factory.h"
#include "core/backends/cuda/cuda_check.h"
#include "core/backends/cuda/cuda_context.h"

#define TANDEM_NCCL_CHECK(call, comm)                                                       \
  do {                                                                                      \
    ncclResult_t tandem_r_ = (call);                                                        \
    if (tandem_r_ != ncclSuccess && tandem_r_ != ncclInProgress)                            \
      throw ::tandem::CommError(::tandem::str(                                              \
          __FILE__, ":", __LINE__, ": ", #call, " failed: ", ncclGetErrorString(tandem_r_), \
          (comm) ? std::string(" (") + ncclGetLastError(comm) + ")" : std::string()));      \
  } while (0)

namespace tandem {

struct NcclCommunicator::Impl {
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;  // NCCL's own stream
  int device = 0;
  uint64_t next_seq = 0;
  std::chrono::milliseconds timeout{600'000};

  ~Impl() {
    if (comm != nullptr) {
      (void)cudaStreamSynchronize(stream);
      (void)ncclCommDestroy(comm);
    }
    if (stream != nullptr) (void)cudaStreamDestroy(stream);
  }
};

namespace {

ncclDataType_t nccl_type(DType dt) {
  switch (dt) {
    case DType::kF32:
      return ncclFloat32;
    case DType::kF64:
      return ncclFloat64;
    case DType::kF16:
      return ncclFloat16;
    case DType::kBF16:
      return ncclBfloat16;
    case DType::kI32:
      return ncclInt32;
    case DType::kI64:
      return ncclInt64;
    case DType::kU8:
      return ncclUint8;
  }
  return ncclFloat32;
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
      return ncclSum;
    case ReduceOp::kAvg:
      return ncclAvg;
    case ReduceOp::kMax:
      return ncclMax;
  }
  return ncclSum;
}

// Counts communicators per (prefix, rank, world), so every rank derives the same key.
std::string next_key(const std::string& prefix, int rank, int world) {
  static std::mutex mu;
  static std::map<std::string, int> counts;
  std::lock_guard<std::mutex> lock(mu);
  const int n = counts[str(prefix, "/", rank, "/", world)]++;
  return str(prefix, "/", n, "/unique_id");
}

class NcclWork final : public Work {
 public:
  NcclWork(std::shared_ptr<NcclCommunicator::Impl> impl, uint64_t seq, std::string what,
           std::vector<Tensor> keep_alive)
      : impl_(std::move(impl)), seq_(seq), what_(std::move(what)), keep_(std::move(keep_alive)) {
    cuda::DeviceGuard guard(impl_->device);
    TANDEM_CUDA_CHECK(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming));
    TANDEM_CUDA_CHECK(cudaEventRecord(done_, impl_->stream));
  }

  ~NcclWork() override {
    // Unwaited: still order the compute stream after the collective, so the allocator cannot
    // hand the tensors' blocks to kernels that would race with NCCL.
    try {
      if (!joined_) (void)cudaStreamWaitEvent(cuda::compute_stream(impl_->device), done_, 0);
    } catch (const Error&) {
      // destructors do not throw; the device is gone if compute_stream failed
    }
    (void)cudaEventDestroy(done_);
  }

  // Joins the collective into the compute stream and returns without a host wait (docs/DESIGN.md
  // section 3.2: never a host sync in the overlap path). An error NCCL has already reported is
  // thrown here; `timeout` is not enforced on the device side (that would need a watchdog thread,
  // as PyTorch's).
  void wait(std::chrono::milliseconds) override {
    ncclResult_t async = ncclSuccess;
    TANDEM_NCCL_CHECK(ncclCommGetAsyncError(impl_->comm, &async), impl_->comm);
    if (async != ncclSuccess && async != ncclInProgress)
      throw CommError(str(what_, " #", seq_, " failed in NCCL: ", ncclGetErrorString(async)));
    TANDEM_CUDA_CHECK(cudaStreamWaitEvent(cuda::compute_stream(impl_->device), done_, 0));
    joined_ = true;
  }

  bool is_completed() override {
    cudaError_t e = cudaEventQuery(done_);
    if (e == cudaErrorNotReady) return false;
    TANDEM_CUDA_CHECK(e);
    return true;
  }

  uint64_t sequence_number() const override { return seq_; }

 private:
  std::shared_ptr<NcclCommunicator::Impl> impl_;
  uint64_t seq_;
  std::string what_;
  std::vector<Tensor> keep_;
  cudaEvent_t done_ = nullptr;
  bool joined_ = false;
};

void check_tensor(const Tensor& t, int device, const char* op) {
  TANDEM_CHECK_T(Unimplemented, t.is_cuda(), op, " on the nccl backend needs a cuda tensor, got ",
                 t.device().str(), " (use backend gloo or mpi for CPU tensors)");
  TANDEM_CHECK(t.device().index == device, op, ": tensor on ", t.device().str(),
               " but this nccl communicator uses cuda:", device);
  TANDEM_CHECK(t.is_contiguous(), op, " on the nccl backend needs a contiguous tensor");
}

// Makes NCCL's stream wait for the work queued on the compute stream so far (the producers).
void after_compute(const NcclCommunicator::Impl& impl) {
  cudaEvent_t ready;
  TANDEM_CUDA_CHECK(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming));
  TANDEM_CUDA_CHECK(cudaEventRecord(ready, cuda::compute_stream(impl.device)));
  TANDEM_CUDA_CHECK(cudaStreamWaitEvent(impl.stream, ready, 0));
  TANDEM_CUDA_CHECK(cudaEventDestroy(ready));  // released once the wait is enqueued
}

}  // namespace

NcclCommunicator::NcclCommunicator(StoreClient* store, int rank, int world_size, int device,
                                   const NcclOptions& nccl, const CommOptions& options)
    : rank_(rank), world_size_(world_size), device_(device), impl_(std::make_shared<Impl>()) {
  TANDEM_CHECK(world_size >= 1 && rank >= 0 && rank < world_size, "nccl: rank ", rank,
               " out of range for world size ", world_size);
  options_ = options;
  impl_->device = device;
  impl_->timeout = options.timeout;
  cuda::compute_stream(device);  // checks the device and makes it current
  const std::string key = next_key(nccl.key_prefix, rank, world_size);
  ncclUniqueId id;
  TANDEM_CHECK_T(ConfigError, store != nullptr || world_size == 1, "nccl: ", world_size,
                 " ranks need the rendezvous store (start the job with tandem launch)");
  if (rank == 0) {
    TANDEM_NCCL_CHECK(ncclGetUniqueId(&id), nullptr);
    if (store != nullptr)
      store->set(key, std::string(reinterpret_cast<const char*>(&id), sizeof(id)));
  } else {
    const std::string bytes = store->get(key, options.timeout);
    TANDEM_CHECK_T(CommError, bytes.size() == sizeof(id), "nccl: the unique id under '", key,
                   "' has ", bytes.size(), " bytes, expected ", sizeof(id));
    std::memcpy(&id, bytes.data(), sizeof(id));
  }
  cuda::DeviceGuard guard(device);
  TANDEM_CUDA_CHECK(cudaStreamCreateWithFlags(&impl_->stream, cudaStreamNonBlocking));
  TANDEM_NCCL_CHECK(ncclCommInitRank(&impl_->comm, world_size, id, rank), nullptr);
}

NcclCommunicator::~NcclCommunicator() = default;

std::unique_ptr<Work> NcclCommunicator::all_reduce(Tensor& t, ReduceOp op) {
  check_tensor(t, device_, "all_reduce");
  cuda::DeviceGuard guard(device_);
  after_compute(*impl_);
  TANDEM_NCCL_CHECK(ncclAllReduce(t.raw_data(), t.raw_data(), static_cast<size_t>(t.numel()),
                                  nccl_type(t.dtype()), nccl_op(op), impl_->comm, impl_->stream),
                    impl_->comm);
  return std::make_unique<NcclWork>(impl_, impl_->next_seq++, "all_reduce", std::vector<Tensor>{t});
}

std::unique_ptr<Work> NcclCommunicator::broadcast(Tensor& t, int root) {
  check_tensor(t, device_, "broadcast");
  TANDEM_CHECK(root >= 0 && root < world_size_, "broadcast: root ", root, " out of range");
  cuda::DeviceGuard guard(device_);
  after_compute(*impl_);
  TANDEM_NCCL_CHECK(ncclBroadcast(t.raw_data(), t.raw_data(), static_cast<size_t>(t.numel()),
                                  nccl_type(t.dtype()), root, impl_->comm, impl_->stream),
                    impl_->comm);
  return std::make_unique<NcclWork>(impl_, impl_->next_seq++, "broadcast", std::vector<Tensor>{t});
}

std::unique_ptr<Work> NcclCommunicator::all_gather(const Tensor& input, Tensor& output) {
  check_tensor(input, device_, "all_gather");
  check_tensor(output, device_, "all_gather");
  TANDEM_CHECK_SHAPE(output.numel() == input.numel() * world_size_, "all_gather: output has ",
                     output.numel(), " elements, expected ", input.numel() * world_size_);
  cuda::DeviceGuard guard(device_);
  after_compute(*impl_);
  TANDEM_NCCL_CHECK(
      ncclAllGather(input.raw_data(), output.raw_data(), static_cast<size_t>(input.numel()),
                    nccl_type(input.dtype()), impl_->comm, impl_->stream),
      impl_->comm);
  return std::make_unique<NcclWork>(impl_, impl_->next_seq++, "all_gather",
                                    std::vector<Tensor>{input, output});
}

std::unique_ptr<Work> NcclCommunicator::reduce_scatter(const Tensor& input, Tensor& output,
                                                       ReduceOp op) {
  check_tensor(input, device_, "reduce_scatter");
  check_tensor(output, device_, "reduce_scatter");
  TANDEM_CHECK_SHAPE(input.numel() == output.numel() * world_size_, "reduce_scatter: input has ",
                     input.numel(), " elements, expected ", output.numel() * world_size_);
  cuda::DeviceGuard guard(device_);
  after_compute(*impl_);
  TANDEM_NCCL_CHECK(
      ncclReduceScatter(input.raw_data(), output.raw_data(), static_cast<size_t>(output.numel()),
                        nccl_type(input.dtype()), nccl_op(op), impl_->comm, impl_->stream),
      impl_->comm);
  return std::make_unique<NcclWork>(impl_, impl_->next_seq++, "reduce_scatter",
                                    std::vector<Tensor>{input, output});
}

std::unique_ptr<Work> NcclCommunicator::barrier() {
  Tensor one = zeros({1}, DType::kF32, Device::cuda(device_));
  return all_reduce(one, ReduceOp::kSum);
}

}  // namespace tandem

namespace tandem {

std::unique_ptr<Communicator> make_nccl_communicator(StoreClient* store, int rank, int world_size,
                                                     int device, const std::string& key_prefix,
                                                     const CommOptions& options) {
  NcclOptions o;
  o.key_prefix = key_prefix;
  return std::make_unique<NcclCommunicator>(store, rank, world_size, device, o, options);
}

}  // namespace tandem
