// Optimizer bookkeeping: parameter checks, the step() driver that hands contiguous pointers to the
// fused update, zero_grad, and state export/import with one error naming every bad key.
#include "core/optim/optimizer.h"

#include <cmath>
#include <map>
#include <set>

#include "core/parallel/parallel.h"

namespace tandem {

void for_each_fused_chunk(const std::vector<FusedParam>& params,
                          const std::function<void(const FusedParam&, int64_t, int64_t)>& fn,
                          int64_t chunk_elems) {
  struct Chunk {
    size_t param;
    int64_t begin, end;
  };
  std::vector<Chunk> chunks;
  int64_t total = 0;
  for (size_t i = 0; i < params.size(); ++i) {
    for (int64_t b = 0; b < params[i].numel; b += chunk_elems)
      chunks.push_back({i, b, std::min(params[i].numel, b + chunk_elems)});
    total += params[i].numel;
  }
  const int64_t n = static_cast<int64_t>(chunks.size());
  // Below ~32k elements in all, waking threads costs more than the update (same as the kernels).
  const int64_t grain = total < (1 << 15) ? n : 1;
  parallel_for(0, n, grain, [&](int64_t s, int64_t e) {
    for (int64_t c = s; c < e; ++c) fn(params[chunks[c].param], chunks[c].begin, chunks[c].end);
  });
}

Optimizer::Optimizer(NamedTensors params, double lr, std::vector<std::string> buffer_names)
    : params_(std::move(params)), buffer_names_(std::move(buffer_names)) {
  set_lr(lr);
  TANDEM_CHECK_T(ConfigError, !params_.empty(), "optimizer: no parameters to optimize");
  std::set<std::string> names;
  std::set<const TensorImpl*> impls;
  for (const auto& [name, p] : params_) {
    TANDEM_CHECK_T(ConfigError, !name.empty(), "optimizer: every parameter needs a name");
    TANDEM_CHECK_T(ConfigError, names.insert(name).second, "optimizer: parameter name '", name,
                   "' appears twice");
    TANDEM_CHECK_T(ConfigError, p.defined(), "optimizer: parameter '", name, "' is undefined");
    TANDEM_CHECK_T(ConfigError, impls.insert(p.impl()).second, "optimizer: parameter '", name,
                   "' is the same tensor as an earlier parameter; list shared weights once");
    TANDEM_CHECK_T(TypeError, p.dtype() == DType::kF32 || p.dtype() == DType::kF64,
                   "optimizer: parameter '", name, "' is ", dtype_name(p.dtype()),
                   "; optimizers update f32 or f64 parameters");
  }
  state_.resize(params_.size());
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i].second;
    for (size_t b = 0; b < buffer_names_.size(); ++b)
      state_[i].buffers.push_back(zeros(p.shape(), p.dtype(), p.device()));
  }
}

void Optimizer::set_lr(double lr) {
  TANDEM_CHECK_T(ConfigError, std::isfinite(lr) && lr >= 0.0,
                 "optimizer: learning rate must be finite and >= 0, got ", lr);
  lr_ = lr;
}

std::vector<FusedTensor> fused_tensors(const std::vector<FusedParam>& params) {
  std::vector<FusedTensor> out;
  out.reserve(params.size());
  for (const FusedParam& p : params) {
    FusedTensor t;
    t.param = p.param;
    t.grad = p.grad;
    t.state1 = p.buffers.size() > 0 ? p.buffers[0] : nullptr;
    t.state2 = p.buffers.size() > 1 ? p.buffers[1] : nullptr;
    t.dtype = p.dtype;
    t.numel = p.numel;
    t.step = p.step;
    out.push_back(t);
  }
  return out;
}

void Optimizer::step() {
  step_impl(nullptr);
}

void Optimizer::step_ranges(const std::vector<ElementRange>& ranges) {
  step_impl(&ranges);
}

void Optimizer::step_impl(const std::vector<ElementRange>* ranges) {
  Device device = params_.front().second.device();
  const std::vector<size_t> active = params_with_grads(&device);
  ++step_count_;
  if (active.empty()) return;
  for (size_t i : active) ++state_[i].step;
  if (ranges != nullptr)
    update_ranges(active, *ranges);
  else
    update_whole(active, device);
}

std::vector<size_t> Optimizer::params_with_grads(Device* device) const {
  std::vector<size_t> active;
  for (size_t i = 0; i < params_.size(); ++i) {
    const auto& [pname, p] = params_[i];
    const Tensor& g = p.grad();
    if (!g.defined()) continue;
    if (active.empty()) *device = p.device();
    TANDEM_CHECK(p.device() == *device && g.device() == *device, name(), ": parameter '", pname,
                 "' is on ", p.device().str(), " with its grad on ", g.device().str(),
                 ", other parameters on ", device->str(), "; one optimizer updates one device");
    TANDEM_CHECK_SHAPE(g.shape() == p.shape(), name(), ": grad of '", pname, "' has shape ",
                       shape_str(g.shape()), ", parameter has ", shape_str(p.shape()));
    TANDEM_CHECK_T(TypeError, g.dtype() == p.dtype(), name(), ": grad of '", pname, "' is ",
                   dtype_name(g.dtype()), ", parameter is ", dtype_name(p.dtype()));
    active.push_back(i);
  }
  return active;
}

void Optimizer::update_ranges(const std::vector<size_t>& active,
                              const std::vector<ElementRange>& ranges) {
  std::vector<bool> is_active(params_.size(), false);
  for (size_t i : active) {
    is_active[i] = true;
    TANDEM_CHECK(params_[i].second.is_contiguous() && params_[i].second.grad().is_contiguous(),
                 name(), ": a sharded step needs contiguous parameters and grads ('",
                 params_[i].first, "' is not)");
  }
  std::vector<FusedParam> fused;
  for (const ElementRange& r : ranges) {
    TANDEM_ASSERT(r.param < params_.size() && r.begin >= 0 && r.begin <= r.end &&
                      r.end <= params_[r.param].second.numel(),
                  "bad element range");
    if (!is_active[r.param] || r.begin == r.end) continue;
    const Tensor& p = params_[r.param].second;
    const size_t skip = static_cast<size_t>(r.begin) * dtype_size(p.dtype());
    FusedParam f;
    f.param = static_cast<char*>(p.raw_data()) + skip;
    f.grad = static_cast<const char*>(p.grad().raw_data()) + skip;
    for (const Tensor& b : state_[r.param].buffers)
      f.buffers.push_back(static_cast<char*>(b.raw_data()) + skip);
    f.dtype = p.dtype();
    f.numel = r.end - r.begin;
    f.step = state_[r.param].step;
    fused.push_back(std::move(f));
  }
  if (!fused.empty()) update(fused);
}

void Optimizer::update_whole(const std::vector<size_t>& active, Device device) {
  // Contiguous copies stand in for non-contiguous parameters and grads; parameters are written
  // back.
  std::vector<FusedParam> fused;
  std::vector<Tensor> keep_alive;
  std::vector<std::pair<Tensor, Tensor>> write_back;  // (parameter, contiguous copy)
  fused.reserve(active.size());
  for (size_t i : active) {
    Tensor p = params_[i].second;
    Tensor g = p.grad();
    if (!g.is_contiguous()) {
      g = g.detach().contiguous();
      keep_alive.push_back(g);
    }
    if (!p.is_contiguous()) {
      Tensor c = p.detach().contiguous();
      write_back.emplace_back(p, c);
      p = c;
    }
    FusedParam f;
    f.param = p.raw_data();
    f.grad = g.raw_data();
    for (Tensor& b : state_[i].buffers) f.buffers.push_back(b.raw_data());
    f.dtype = p.dtype();
    f.numel = p.numel();
    f.step = state_[i].step;
    f.device = device;
    fused.push_back(std::move(f));
  }
  update(fused);
  for (auto& [p, c] : write_back) p.detach().copy_(c);
}

void Optimizer::zero_grad(bool set_to_none) {
  for (auto& [pname, p] : params_) {
    if (!p.grad().defined()) continue;
    if (set_to_none) {
      p.set_grad(Tensor());
    } else {
      Tensor g = p.grad();  // a handle on the same storage: zeroed in place
      g.zero_();
    }
  }
}

NamedTensors Optimizer::state_dict() const {
  NamedTensors out;
  out.emplace_back("step", scalar_tensor(static_cast<double>(step_count_), DType::kI64));
  if (buffer_names_.empty()) return out;
  for (size_t i = 0; i < params_.size(); ++i) {
    const std::string& pname = params_[i].first;
    out.emplace_back(pname + ".step",
                     scalar_tensor(static_cast<double>(state_[i].step), DType::kI64));
    for (size_t b = 0; b < buffer_names_.size(); ++b)
      out.emplace_back(pname + "." + buffer_names_[b], state_[i].buffers[b].clone());
  }
  return out;
}

namespace {

// Reads a step count from a one-element tensor; false unless it is a whole number >= 0.
bool read_count(const Tensor& t, int64_t* out) {
  if (t.numel() != 1) return false;
  double v = t.item();
  if (!std::isfinite(v) || v < 0 || v != std::floor(v) || v > 9e15) return false;
  *out = static_cast<int64_t>(v);
  return true;
}

std::string join_capped(const std::vector<std::string>& items) {
  constexpr size_t kMaxListed = 20;  // a resnet50 checkpoint of the wrong model would list ~500
  std::string s;
  for (size_t i = 0; i < items.size() && i < kMaxListed; ++i) s += (i ? ", " : "") + items[i];
  if (items.size() > kMaxListed) s += str(" and ", items.size() - kMaxListed, " more");
  return s;
}

// Checks a state dict key by key against what state_dict() writes, collecting every problem, so
// that one error names them all.
struct StateCheck {
  explicit StateCheck(const NamedTensors& state) : state(state) {
    for (const auto& [key, t] : state) {
      if (!given.emplace(key, &t).second) duplicate.push_back(key);
    }
  }

  const Tensor* find(const std::string& key) {
    expected.insert(key);
    auto it = given.find(key);
    if (it != given.end()) return it->second;
    missing.push_back(key);
    return nullptr;
  }

  void count(const std::string& key, int64_t* out) {
    const Tensor* t = find(key);
    if (t && (!t->defined() || !read_count(*t, out)))
      mismatched.push_back(key + " (expected a whole number >= 0 in a one-element tensor)");
  }

  void buffer(const std::string& key, const Shape& shape) {
    const Tensor* t = find(key);
    if (!t) return;
    if (!t->defined() || !is_floating(t->dtype())) {
      mismatched.push_back(key + " (expected a floating tensor, got " +
                           (t->defined() ? dtype_name(t->dtype()) : "undefined") + ")");
    } else if (t->shape() != shape) {
      mismatched.push_back(key + " (expected shape " + shape_str(shape) + ", got " +
                           shape_str(t->shape()) + ")");
    }
  }

  // Throws ValueError naming every missing, unexpected, mismatched and duplicate key.
  void throw_if_any(const std::string& optimizer, size_t num_params) {
    for (const auto& [key, t] : state) {
      if (!expected.count(key)) unexpected.push_back(key);
    }
    if (duplicate.empty() && missing.empty() && unexpected.empty() && mismatched.empty()) return;
    std::string msg = str(optimizer, ": optimizer state does not fit the ", num_params,
                          " parameters of this optimizer");
    if (!missing.empty()) msg += "; missing keys: " + join_capped(missing);
    if (!unexpected.empty()) msg += "; unexpected keys: " + join_capped(unexpected);
    if (!mismatched.empty()) msg += "; mismatched keys: " + join_capped(mismatched);
    if (!duplicate.empty()) msg += "; duplicate keys: " + join_capped(duplicate);
    msg += " (was the checkpoint written for a different model or optimizer?)";
    throw ValueError(msg);
  }

  const NamedTensors& state;
  std::map<std::string, const Tensor*> given;
  std::set<std::string> expected;
  std::vector<std::string> duplicate, missing, unexpected, mismatched;
};

}  // namespace

void Optimizer::load_state_dict(const NamedTensors& state) {
  StateCheck check(state);
  int64_t new_step_count = 0;
  std::vector<int64_t> new_steps(params_.size(), 0);
  check.count("step", &new_step_count);
  for (size_t i = 0; i < params_.size() && !buffer_names_.empty(); ++i) {
    const auto& [pname, p] = params_[i];
    check.count(pname + ".step", &new_steps[i]);
    for (const std::string& b : buffer_names_) check.buffer(pname + "." + b, p.shape());
  }
  check.throw_if_any(name(), params_.size());

  step_count_ = new_step_count;
  for (size_t i = 0; i < params_.size() && !buffer_names_.empty(); ++i) {
    state_[i].step = new_steps[i];
    for (size_t b = 0; b < buffer_names_.size(); ++b)
      state_[i].buffers[b].copy_(*check.given.at(params_[i].first + "." + buffer_names_[b]));
  }
}

}  // namespace tandem
