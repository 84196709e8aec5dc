// The backward engine: counts, for every node reachable from the roots, how many gradients it
// will receive, then runs nodes as their inputs complete. Among ready nodes the most recently
// created runs first (highest sequence number, as in PyTorch), so gradients of the last layers
// are accumulated -- and their post-accumulate hooks fire -- while earlier layers still compute.
#include <atomic>
#include <map>
#include <queue>
#include <unordered_map>

#include "core/autograd/grad_mode.h"
#include "core/autograd/node.h"
#include "core/ops/ops.h"

namespace tandem {
namespace {
thread_local bool t_grad_enabled = true;
std::atomic<uint64_t> g_next_sequence_nr{0};
}  // namespace

bool grad_enabled() {
  return t_grad_enabled;
}
void set_grad_enabled(bool enabled) {
  t_grad_enabled = enabled;
}

Node::Node() : sequence_nr_(g_next_sequence_nr.fetch_add(1)) {}

std::vector<Tensor> AccumulateGrad::apply(std::vector<Tensor>&& grad_outputs) {
  Tensor g = std::move(grad_outputs.at(0));
  if (!g.defined()) return {};
  TensorImpl& leaf = *leaf_;
  const Tensor& dst = leaf.grad_destination;
  if (!leaf.grad.defined() && dst.defined() && g.storage() == dst.storage() &&
      g.offset() == dst.offset() && g.shape() == dst.shape() && g.strides() == dst.strides()) {
    leaf.grad = dst;  // the op computed it in the destination (claim_grad_destination)
  } else if (!leaf.grad.defined()) {
    // Own the gradient: a fresh contiguous buffer unless g is already private to us (no other
    // handle to it -- the caller's gradient, a sibling edge's copy -- and no other view of it).
    const bool private_to_us = g.impl_shared().use_count() == 1 && g.storage().use_count() == 1;
    const bool steal = private_to_us && g.is_contiguous() && g.offset() == 0;
    leaf.grad = steal ? g.detach() : g.detach().clone();
  } else {
    add_(leaf.grad, g);  // the DDP reducer may have made grad a view into a bucket: add in place
  }
  return {};
}

Tensor claim_grad_destination(const std::weak_ptr<TensorImpl>& leaf) {
  std::shared_ptr<TensorImpl> impl = leaf.lock();
  if (!impl || impl->grad.defined() || !impl->grad_destination.defined() ||
      impl->grad_destination_claimed)
    return Tensor();
  impl->grad_destination_claimed = true;
  return impl->grad_destination;
}

void AccumulateGrad::run_hooks() {
  Tensor leaf(leaf_);
  for (auto& [id, hook] : leaf_->post_accumulate_hooks) hook(leaf);
}

std::vector<Tensor> FunctionNode::apply(std::vector<Tensor>&& grad_outputs) {
  TANDEM_CHECK_T(AutogradError, !released_, "trying to backward through the graph a second time (",
                 name_,
                 " was freed after the first backward); pass retain_graph=true to the first "
                 "backward if you need to do this");
  return fn_(grad_outputs);
}

void FunctionNode::release() {
  released_ = true;
  fn_ = nullptr;  // frees the saved tensors
}

bool any_requires_grad(std::initializer_list<const Tensor*> inputs) {
  if (!grad_enabled()) return false;
  for (const Tensor* t : inputs)
    if (t != nullptr && t->defined() && t->requires_grad()) return true;
  return false;
}

bool any_requires_grad(const std::vector<Tensor>& inputs) {
  if (!grad_enabled()) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

Edge gradient_edge(const Tensor& t) {
  if (!t.defined() || !t.requires_grad()) return Edge{};
  if (t.grad_fn()) return Edge{t.grad_fn(), t.output_nr()};
  TensorImpl* impl = t.impl();
  std::shared_ptr<Node> acc = impl->grad_accumulator.lock();
  if (!acc) {
    // The accumulator keeps the leaf alive; the leaf only holds it weakly.
    acc = std::make_shared<AccumulateGrad>(t.impl_shared());
    impl->grad_accumulator = acc;
  }
  return Edge{acc, 0};
}

void record(const std::string& name, const std::vector<Tensor>& inputs,
            const std::vector<Tensor>& outputs, BackwardFn backward) {
  if (!any_requires_grad(inputs)) return;
  auto node = std::make_shared<FunctionNode>(name, std::move(backward));
  std::vector<Edge> edges;
  edges.reserve(inputs.size());
  for (const Tensor& in : inputs) edges.push_back(gradient_edge(in));
  node->set_next_edges(std::move(edges));
  node->set_num_outputs(static_cast<uint32_t>(outputs.size()));
  for (uint32_t i = 0; i < outputs.size(); ++i) {
    TensorImpl* o = outputs[i].impl();
    node->output_shapes.push_back(o->shape);
    node->output_dtypes.push_back(o->dtype);
    node->output_devices.push_back(o->storage->device());
    o->requires_grad = true;
    o->grad_fn = node;
    o->output_nr = i;
  }
}

namespace {

// One backward pass: the nodes reachable from the roots, what each still waits for, the gradients
// each has received so far, and the nodes ready to run.
class GraphTask {
 public:
  // Counts how many edges point at each node from nodes reachable from the roots.
  explicit GraphTask(const std::vector<Tensor>& roots) {
    std::vector<Node*> stack;
    for (const Tensor& r : roots) {
      Edge e = gradient_edge(r);
      if (e.fn && keep_.emplace(e.fn.get(), e.fn).second) stack.push_back(e.fn.get());
    }
    while (!stack.empty()) {
      Node* n = stack.back();
      stack.pop_back();
      for (const Edge& e : n->next_edges()) {
        if (!e.fn) continue;
        deps_[e.fn.get()] += 1;
        if (keep_.emplace(e.fn.get(), e.fn).second) stack.push_back(e.fn.get());
      }
    }
  }

  // Hands the roots their gradients; the roots nothing else points at become ready.
  void seed(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads) {
    for (size_t i = 0; i < roots.size(); ++i) {
      Edge e = gradient_edge(roots[i]);
      if (!e.fn) continue;
      add_to_buffer(e.fn.get(), e.input_nr, grads[i]);
    }
    for (auto& [n, buf] : buffers_)
      if (deps_[n] == 0) push_ready(n);
  }

  // Runs the ready node with the highest priority; false when none is left.
  bool run_next(bool retain_graph) {
    if (ready_.empty()) return false;
    Node* n = ready_.top().second;
    ready_.pop();
    std::vector<Tensor> in = std::move(buffers_[n]);
    buffers_.erase(n);
    in.resize(n->num_outputs());
    for (uint32_t i = 0; i < in.size(); ++i) {
      if (!in[i].defined() && i < n->output_shapes.size())
        in[i] = zeros(n->output_shapes[i], n->output_dtypes[i], n->output_devices[i]);
    }
    std::vector<Tensor> out = n->apply(std::move(in));
    if (auto* acc = dynamic_cast<AccumulateGrad*>(n)) acc->run_hooks();
    if (!retain_graph) n->release();
    const auto& edges = n->next_edges();
    for (size_t i = 0; i < edges.size(); ++i) {
      Node* next = edges[i].fn.get();
      if (next == nullptr) continue;
      if (i < out.size() && out[i].defined()) add_to_buffer(next, edges[i].input_nr, out[i]);
      if (--deps_[next] == 0) {
        // Even when nothing flowed here (all contributions undefined): its subgraph is released.
        buffers_.try_emplace(next);
        push_ready(next);
      }
    }
    return true;
  }

 private:
  void add_to_buffer(Node* n, uint32_t slot, Tensor g) {
    auto& buf = buffers_[n];
    if (buf.size() < n->num_outputs()) buf.resize(n->num_outputs());
    if (!buf[slot].defined())
      buf[slot] = std::move(g);
    else
      buf[slot] = add(buf[slot], g);
  }

  void push_ready(Node* n) {
    ready_.push({{dynamic_cast<AccumulateGrad*>(n) != nullptr, n->sequence_nr()}, n});
  }

  std::unordered_map<Node*, int> deps_;
  std::unordered_map<Node*, std::shared_ptr<Node>> keep_;
  std::unordered_map<Node*, std::vector<Tensor>> buffers_;  // the summed gradients received
  // Ready nodes by priority: accumulators first (as PyTorch gives AccumulateGrad the highest
  // sequence number), so a leaf's hooks fire as soon as its gradient is complete even when its
  // accumulator was created in an earlier step; then the most recently created node.
  using Ready = std::pair<std::pair<bool, uint64_t>, Node*>;
  std::priority_queue<Ready> ready_;
};

}  // namespace

void run_backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads,
                  bool retain_graph) {
  NoGradGuard no_grad;
  GraphTask task(roots);
  task.seed(roots, grads);
  while (task.run_next(retain_graph)) {
  }
}

}  // namespace tandem
