// The autograd graph. Every differentiable op that sees an input requiring grad records a Node
// whose edges point at the nodes of its inputs (or at the AccumulateGrad node of a leaf). Nodes
// hold what backward needs as *detached* tensors, so the graph has no cycles; backward releases
// them unless asked to retain the graph, and a second backward through a released node is an
// error.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor/tensor.h"

namespace tandem {

class Node;

struct Edge {
  std::shared_ptr<Node> fn;  // null: the input does not need a gradient
  uint32_t input_nr = 0;     // which output of fn this edge feeds
};

class Node {
 public:
  Node();
  virtual ~Node() = default;
  // Gradients w.r.t. the inputs, one per next edge (undefined where not needed), given the
  // gradients w.r.t. this node's outputs (undefined for outputs that got none).
  virtual std::vector<Tensor> apply(std::vector<Tensor>&& grad_outputs) = 0;
  virtual std::string name() const = 0;
  virtual void release() { released_ = true; }

  bool released() const { return released_; }
  uint64_t sequence_nr() const { return sequence_nr_; }
  const std::vector<Edge>& next_edges() const { return next_edges_; }
  void set_next_edges(std::vector<Edge> edges) { next_edges_ = std::move(edges); }
  uint32_t num_outputs() const { return num_outputs_; }
  void set_num_outputs(uint32_t n) { num_outputs_ = n; }
  // Shapes of this node's outputs (zeros are filled in for outputs that got no gradient).
  std::vector<Shape> output_shapes;
  std::vector<DType> output_dtypes;
  std::vector<Device> output_devices;  // zeros for an output without a gradient are made there

 protected:
  bool released_ = false;

 private:
  uint64_t sequence_nr_;
  uint32_t num_outputs_ = 1;
  std::vector<Edge> next_edges_;
};

// Sink for the gradient of a leaf: adds into leaf.grad, then runs its post-accumulate hooks.
class AccumulateGrad : public Node {
 public:
  explicit AccumulateGrad(std::shared_ptr<TensorImpl> leaf) : leaf_(std::move(leaf)) {}
  std::vector<Tensor> apply(std::vector<Tensor>&& grad_outputs) override;
  std::string name() const override { return "AccumulateGrad"; }
  void release() override {}  // leaves stay usable across backward calls
  void run_hooks();

 private:
  std::shared_ptr<TensorImpl> leaf_;
};

// For an op's backward closure (which holds the leaf weakly, as it holds nothing else alive): the
// memory the leaf's gradient may be computed in (Tensor::set_grad_destination), or undefined when
// the leaf is gone, has none, already has a gradient, or another use of it in this graph claimed
// it first. The caller writes the whole gradient into it and returns it as that input's gradient;
// AccumulateGrad then keeps it without a copy.
Tensor claim_grad_destination(const std::weak_ptr<TensorImpl>& leaf);

// A node whose backward is a closure: the common case for ops. The closure must capture only
// detached tensors (see the note at the top).
using BackwardFn = std::function<std::vector<Tensor>(const std::vector<Tensor>& grad_outputs)>;

class FunctionNode : public Node {
 public:
  FunctionNode(std::string name, BackwardFn fn) : name_(std::move(name)), fn_(std::move(fn)) {}
  std::vector<Tensor> apply(std::vector<Tensor>&& grad_outputs) override;
  std::string name() const override { return name_; }
  void release() override;

 private:
  std::string name_;
  BackwardFn fn_;
};

// True when grad mode is on and any input requires grad.
bool any_requires_grad(std::initializer_list<const Tensor*> inputs);
bool any_requires_grad(const std::vector<Tensor>& inputs);

// The edge a gradient w.r.t. t should flow into (creating a leaf's AccumulateGrad on first use).
Edge gradient_edge(const Tensor& t);

// Records `outputs` as produced by a FunctionNode with the given inputs and backward closure, if
// any input requires grad in grad mode. The closure receives one gradient per output (zeros for
// outputs that got none) and returns one gradient per input (undefined = none).
void record(const std::string& name, const std::vector<Tensor>& inputs,
            const std::vector<Tensor>& outputs, BackwardFn backward);

// Runs backward from roots with the given gradients (engine.cc).
void run_backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads,
                  bool retain_graph);

}  // namespace tandem
