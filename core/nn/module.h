// Module: the base of every layer and model. A module owns named parameters (leaf tensors that
// require grad), named buffers (running statistics, counters) and named child modules, all kept
// in registration order, so that dotted names and their order are PyTorch's exactly
// ("layer1.0.bn1.running_mean"): checkpoints map one-to-one onto torch state_dicts.
//
// Decision: initialisation happens in constructors, from a Generator& the caller passes (layers
// with random parameters take it as their first argument; models get it from make_model). A
// module therefore never exists with uninitialised weights, and the weights are a function of the
// generator's (seed, stream) alone — not of the world size, rank or thread count.
//
// Ownership: modules are held by std::shared_ptr and are not copyable. A parent owns its children;
// a child knows its parent (non-owning) only to name itself in error messages. Tensors returned by
// named_parameters()/state_dict() are handles to the module's own storage: load_state_dict() and
// to() change them in place, so an optimizer holding them sees the new values. Not thread-safe:
// one module tree is used by one thread at a time (replicas get their own trees).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor/named_tensors.h"
#include "core/tensor/tensor.h"

namespace tandem {

// What a non-strict load_state_dict left out (a strict one throws instead).
struct LoadStateResult {
  std::vector<std::string> missing_keys;
  std::vector<std::string> unexpected_keys;
};

class Module {
 public:
  Module() = default;
  virtual ~Module();
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  virtual Tensor forward(const Tensor& x) = 0;
  Tensor operator()(const Tensor& x) { return forward(x); }

  // PyTorch-style one-line description of this module alone, e.g. "Linear(in_features=4, ...)".
  virtual std::string describe() const = 0;

  // ---- registration (names must be non-empty, without '.', unique within this module)
  // The parameter's requires_grad is set; returns the registered handle.
  Tensor register_parameter(const std::string& name, Tensor value);
  Tensor register_buffer(const std::string& name, Tensor value);
  template <typename M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> child) {
    add_child(name, child);
    return child;
  }

  // ---- traversal, with dotted names in PyTorch's order: this module's own entries first, then
  // each child's, recursively, in registration order.
  NamedTensors named_parameters() const;
  NamedTensors named_buffers() const;
  std::vector<Tensor> parameters() const;
  std::vector<Tensor> buffers() const;
  const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& named_children() const {
    return children_;
  }
  // Every descendant (not this module) with its dotted path, in pre-order.
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_modules() const;
  int64_t num_parameters() const;

  // ---- modes (recursive)
  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // Sets every parameter's gradient to undefined (PyTorch's zero_grad(set_to_none=True)).
  void zero_grad();

  // ---- state. state_dict(): per module (pre-order), its parameters then its buffers — torch's
  // key order. The tensors are the live handles (clone them to keep a snapshot).
  NamedTensors state_dict() const;
  // Copies values in place into the live tensors. Every problem is collected first and reported
  // in one ConfigError (missing keys, unexpected keys, shape or dtype mismatches), before anything
  // is copied. With strict=false, missing and unexpected keys are returned instead of thrown;
  // mismatches still throw.
  LoadStateResult load_state_dict(const NamedTensors& entries, bool strict = true);

  // Converts every floating parameter and buffer (and gradient) to `dtype` in place: the tensor
  // handles stay the same, their storage and dtype change. Integer buffers are left alone.
  void to(DType dtype);
  // Moves every parameter and buffer (and gradient) to `device` in place, the same way.
  void to(Device device);

  // Dotted path from the root of the tree this module was registered in ("" for a root), and
  // "path (describe())" for error messages.
  std::string path() const;
  std::string where() const;

 protected:
  bool training_ = true;

 private:
  void add_child(const std::string& name, std::shared_ptr<Module> child);
  void check_new_name(const std::string& name, const char* what) const;
  void collect(const std::string& prefix, bool params, bool buffers, NamedTensors& out) const;

  NamedTensors params_;
  NamedTensors buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  const Module* parent_ = nullptr;  // non-owning; cleared by the parent's destructor
  std::string name_in_parent_;
};

}  // namespace tandem
