// Tensor: a cheap, copyable handle to shared storage plus shape, strides (in elements), offset and
// dtype. Views (reshape of contiguous data, transpose, permute, slice, expand) share storage and
// are recorded by autograd. Copying a Tensor copies the handle, never the data: use clone().
//
// Autograd state lives on the tensor: requires_grad, the node that produced it (grad_fn), the
// accumulated grad of a leaf, and per-leaf post-accumulate hooks.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "core/autograd/hook_handle.h"
#include "core/base/error.h"
#include "core/tensor/device.h"
#include "core/tensor/dtype.h"
#include "core/tensor/storage.h"

namespace tandem {

using Shape = std::vector<int64_t>;

class Node;
class Tensor;
struct TensorImpl;

std::string shape_str(const Shape& s);  // "[2, 3]"
int64_t shape_numel(const Shape& s);    // the product of the sizes; ShapeError past int64
Shape contiguous_strides(const Shape& s);

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  bool defined() const { return impl_ != nullptr; }
  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_shared() const { return impl_; }
  bool is_same(const Tensor& o) const { return impl_ == o.impl_; }

  // ---- metadata
  const Shape& shape() const;
  const Shape& strides() const;
  int64_t dim() const;
  int64_t size(int64_t d) const;  // negative d counts from the end
  int64_t stride(int64_t d) const;
  int64_t offset() const;
  int64_t numel() const;
  DType dtype() const;
  Device device() const;
  bool is_contiguous() const;
  const std::shared_ptr<Storage>& storage() const;
  std::string str() const;  // "Tensor(f32, [2, 3], cpu)"

  // ---- data access. data<T>() and raw_data() point at element 0 of the view in the tensor's own
  // memory (device memory for a CUDA tensor); item(), to_vector() and values() copy a CUDA
  // tensor to the host first.
  void* raw_data() const;
  template <typename T>
  T* data() const {
    TANDEM_CHECK_T(TypeError, DTypeOf<T>::value == dtype(), "expected a ",
                   dtype_name(DTypeOf<T>::value), " tensor, got ", dtype_name(dtype()));
    return static_cast<T*>(raw_data());
  }
  double item() const;                    // one-element tensor as double
  std::vector<double> to_vector() const;  // every element in row-major order, as double
  template <typename T>
  std::vector<T> values() const {  // every element in row-major order, converted to T
    std::vector<double> v = to_vector();
    return std::vector<T>(v.begin(), v.end());
  }

  // ---- views (share storage; differentiable)
  Tensor view(Shape shape) const;     // needs compatible strides; one -1 allowed
  Tensor reshape(Shape shape) const;  // view when possible, else a contiguous copy
  Tensor transpose(int64_t d0, int64_t d1) const;
  Tensor t() const { return transpose(0, 1); }
  Tensor permute(std::vector<int64_t> dims) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor select(int64_t dim, int64_t index) const;  // slice + drop the dim
  Tensor expand(Shape shape) const;                 // broadcast size-1 dims (stride 0)
  Tensor unsqueeze(int64_t dim) const;
  Tensor squeeze(int64_t dim) const;
  Tensor flatten(int64_t start_dim = 0, int64_t end_dim = -1) const;
  Tensor contiguous() const;  // self when already contiguous

  // ---- copies and conversions
  Tensor clone() const;          // contiguous copy (differentiable)
  Tensor to(DType dtype) const;  // converted copy (differentiable between float types)
  // Copy on another device (self when already there; differentiable). Host to device goes through
  // a pinned buffer and does not wait; device to host waits for the data.
  Tensor to(Device device) const;
  bool is_cuda() const { return device().is_cuda(); }
  Tensor detach() const;  // shares storage, no autograd history
  // PyTorch's `t.data = other`: this handle (and every holder of it: modules, optimizers, hooks)
  // now reads and writes other's memory, autograd identity and gradient kept. Same shape, dtype
  // and device; other's values are what this tensor holds afterwards.
  void set_data(const Tensor& other) const;

  // ---- in place (never recorded by autograd; for optimizers, initialisers, buffers)
  Tensor& copy_(const Tensor& src);  // src broadcast to this shape, converted to this dtype
  Tensor& fill_(double value);
  Tensor& zero_() { return fill_(0.0); }

  // ---- autograd
  bool requires_grad() const;
  Tensor& set_requires_grad(bool requires_grad);  // only on leaves
  bool is_leaf() const;
  const std::shared_ptr<Node>& grad_fn() const;
  uint32_t output_nr() const;
  const Tensor& grad() const;  // undefined until a backward reaches this leaf
  void set_grad(const Tensor& grad) const;
  // Where this leaf's next gradient may be computed in place, when it has none (DDP's bucket view):
  // an op whose backward can write a weight gradient straight into memory claims it
  // (claim_grad_destination, core/autograd/node.h), and AccumulateGrad then takes it as the
  // gradient without a copy. Same shape, dtype and device, contiguous; undefined clears it.
  void set_grad_destination(const Tensor& destination) const;
  // Runs backward from this tensor. A non-scalar needs a gradient of its shape.
  void backward(const Tensor& gradient = Tensor(), bool retain_graph = false) const;
  // Called after a backward has accumulated this leaf's gradient for good (DDP's reducer hook).
  // Hooks run in registration order; the handle removes this one (core/autograd/hook_handle.h).
  HookHandle register_post_accumulate_grad_hook(std::function<void(const Tensor&)> hook) const;

 private:
  std::shared_ptr<TensorImpl> impl_;
};

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  Shape strides;
  int64_t offset = 0;
  DType dtype = DType::kF32;

  bool requires_grad = false;
  std::shared_ptr<Node> grad_fn;  // null for leaves
  uint32_t output_nr = 0;
  Tensor grad;
  Tensor grad_destination;                // see Tensor::set_grad_destination
  bool grad_destination_claimed = false;  // handed to an op since grad was last set
  std::vector<std::pair<uint64_t, std::function<void(const Tensor&)>>>
      post_accumulate_hooks;             // (id, hook)
  std::weak_ptr<Node> grad_accumulator;  // cached AccumulateGrad of a leaf
};

// ---- creation
Tensor empty(const Shape& shape, DType dtype = DType::kF32, Device device = Device::cpu());
Tensor zeros(const Shape& shape, DType dtype = DType::kF32, Device device = Device::cpu());
// A contiguous tensor over `storage`'s memory from byte 0 (storage must hold numel x dtype size).
Tensor from_storage(std::shared_ptr<Storage> storage, const Shape& shape, DType dtype);
Tensor ones(const Shape& shape, DType dtype = DType::kF32, Device device = Device::cpu());
Tensor full(const Shape& shape, double value, DType dtype = DType::kF32,
            Device device = Device::cpu());
Tensor arange(double start, double end, double step = 1.0, DType dtype = DType::kF32);
Tensor from_vector(const std::vector<double>& values, const Shape& shape,
                   DType dtype = DType::kF32);
Tensor scalar_tensor(double value, DType dtype = DType::kF32);
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);
Tensor empty_like(const Tensor& t);  // contiguous, same dtype and device

// A view over existing storage (no checks beyond bounds).
Tensor as_strided(const Tensor& base, const Shape& shape, const Shape& strides, int64_t offset);

}  // namespace tandem
