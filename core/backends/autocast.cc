#include "core/backends/autocast.h"

#include <atomic>

#include "core/base/error.h"

namespace tandem {
namespace {

std::atomic<DType>& current() {
  static std::atomic<DType> dt{DType::kF32};
  return dt;
}

}  // namespace

DType autocast_dtype() {
  return current().load(std::memory_order_relaxed);
}

void set_autocast_dtype(DType dt) {
  TANDEM_CHECK_T(TypeError, dt == DType::kF32 || dt == DType::kBF16 || dt == DType::kF16,
                 "autocast: expected bf16, f16 or f32 (off), got ", dtype_name(dt));
  current().store(dt, std::memory_order_relaxed);
}

bool autocast_applies(std::initializer_list<const Tensor*> tensors) {
  if (autocast_dtype() == DType::kF32) return false;
  bool any = false;
  for (const Tensor* t : tensors) {
    if (t == nullptr || !t->defined()) continue;
    if (!t->is_cuda() || t->dtype() != DType::kF32) return false;
    any = true;
  }
  return any;
}

}  // namespace tandem
