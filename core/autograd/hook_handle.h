// HookHandle: what registering a post-accumulate-grad hook returns, so its owner can take the
// hook off again (PyTorch's RemovableHandle). An object whose hooks capture `this` -- the DDP
// reducer -- must remove them before it dies, or the next backward on a parameter that outlives it
// calls into freed memory.
//
// Not RAII on purpose: dropping a handle leaves the hook in place (most hooks live as long as their
// tensor). remove() is idempotent and a no-op once the tensor is gone. Not thread-safe against a
// backward running on the same tensor.
#pragma once

#include <cstdint>
#include <memory>

namespace tandem {

struct TensorImpl;

class HookHandle {
 public:
  HookHandle() = default;
  HookHandle(std::weak_ptr<TensorImpl> tensor, uint64_t id) : tensor_(std::move(tensor)), id_(id) {}
  void remove();  // tensor.cc

 private:
  std::weak_ptr<TensorImpl> tensor_;
  uint64_t id_ = 0;
};

}  // namespace tandem
