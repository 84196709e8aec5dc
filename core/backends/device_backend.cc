#include "core/backends/device_backend.h"

#include "core/base/error.h"

namespace tandem {

bool is_comparison(BinaryOp op) {
  switch (op) {
    case BinaryOp::kEq:
    case BinaryOp::kNe:
    case BinaryOp::kLt:
    case BinaryOp::kLe:
    case BinaryOp::kGt:
    case BinaryOp::kGe:
      return true;
    default:
      return false;
  }
}

DeviceBackend& backend_for(const char* op, Device device) {
  TANDEM_ASSERT(device.is_cuda(), "backend_for is only asked about device tensors");
  DeviceBackend* b = cuda_backend_or_null();
  if (b == nullptr)
    throw Unimplemented(str(op, " on ", device.str(),
                            ": tandem was built without CUDA "
                            "(configure with -DTANDEM_CUDA=ON on a machine with nvcc)"));
  return *b;
}

int cuda_device_count() {
  DeviceBackend* b = cuda_backend_or_null();
  return b == nullptr ? 0 : b->device_count();
}

bool cuda_available() {
  return cuda_device_count() > 0;
}

}  // namespace tandem
