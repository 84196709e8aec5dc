// Communicator helpers shared by every backend: names of reduce ops and collectives, the
// description of one call used in cross-rank checks and error messages, and blocking wrappers.
#include "collectives/communicator.h"

#include "core/base/error.h"

namespace tandem {

const char* reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
      return "sum";
    case ReduceOp::kAvg:
      return "avg";
    case ReduceOp::kMax:
      return "max";
  }
  return "unknown";
}

const char* collective_kind_name(CollectiveKind kind) {
  switch (kind) {
    case CollectiveKind::kAllReduce:
      return "all_reduce";
    case CollectiveKind::kBroadcast:
      return "broadcast";
    case CollectiveKind::kAllGather:
      return "all_gather";
    case CollectiveKind::kReduceScatter:
      return "reduce_scatter";
    case CollectiveKind::kBarrier:
      return "barrier";
  }
  return "unknown";
}

std::string CollectiveCall::str() const {
  std::string s = collective_kind_name(kind);
  if (kind == CollectiveKind::kBarrier) return s + "()";
  s += tandem::str("(", dtype_name(dtype), ", ", shape_str(shape));
  if (kind == CollectiveKind::kBroadcast) s += tandem::str(", root ", root);
  if (kind == CollectiveKind::kAllReduce || kind == CollectiveKind::kReduceScatter)
    s += tandem::str(", ", reduce_op_name(op));
  return s + ")";
}

std::string CollectiveCall::brief(uint64_t sequence_number) const {
  std::string s = tandem::str(collective_kind_name(kind), " #", sequence_number);
  if (kind == CollectiveKind::kBarrier) return s;
  return tandem::str(s, " (", dtype_name(dtype), ", ", shape_numel(shape), " elements)");
}

void check_cpu_contiguous(const Tensor& t, const char* backend, const char* what) {
  TANDEM_CHECK(t.defined(), backend, ": ", what, " is an undefined tensor");
  TANDEM_CHECK_T(Unimplemented, t.device().is_cpu(), "backend ", backend, " does not support ",
                 t.device().str(), " tensors (", what, "): use the nccl backend for CUDA tensors");
  TANDEM_CHECK_SHAPE(t.is_contiguous(), backend, ": ", what, " must be contiguous, got ", t.str(),
                     " with strides ", shape_str(t.strides()), ": call .contiguous() first");
}

void all_reduce_sync(Communicator& comm, Tensor& tensor, ReduceOp op) {
  comm.all_reduce(tensor, op)->wait(comm.options().timeout);
}

void broadcast_sync(Communicator& comm, Tensor& tensor, int root) {
  comm.broadcast(tensor, root)->wait(comm.options().timeout);
}

Tensor Communicator::allocate_shared(int64_t numel, DType dtype, Device device) {
  return zeros({numel}, dtype, device);
}

}  // namespace tandem
