// Module bookkeeping: registration, PyTorch-ordered traversal, modes, state_dict load/save, and
// in-place dtype conversion.
#include "core/nn/module.h"

#include <map>
#include <set>

#include "core/autograd/grad_mode.h"

namespace tandem {

Module::~Module() {
  for (auto& [name, child] : children_)
    if (child && child->parent_ == this) child->parent_ = nullptr;
}

void Module::check_new_name(const std::string& name, const char* what) const {
  TANDEM_CHECK_T(ConfigError, !name.empty() && name.find('.') == std::string::npos, "register_",
                 what, ": bad name '", name, "' (names are non-empty, without '.')");
  auto taken = [&](const auto& list) {
    for (const auto& e : list)
      if (e.first == name) return true;
    return false;
  };
  TANDEM_CHECK_T(ConfigError, !taken(params_) && !taken(buffers_) && !taken(children_), "register_",
                 what, ": '", name, "' is already registered in ", where());
}

Tensor Module::register_parameter(const std::string& name, Tensor value) {
  check_new_name(name, "parameter");
  TANDEM_CHECK(value.defined(), "register_parameter: '", name, "' is undefined");
  TANDEM_CHECK(value.is_leaf(), "register_parameter: '", name,
               "' must be a leaf tensor (detach() it first)");
  value.set_requires_grad(true);
  params_.emplace_back(name, value);
  return value;
}

Tensor Module::register_buffer(const std::string& name, Tensor value) {
  check_new_name(name, "buffer");
  TANDEM_CHECK(value.defined(), "register_buffer: '", name, "' is undefined");
  buffers_.emplace_back(name, value);
  return value;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> child) {
  check_new_name(name, "module");
  TANDEM_CHECK(child != nullptr, "register_module: '", name, "' is null");
  child->parent_ = this;
  child->name_in_parent_ = name;
  children_.emplace_back(name, std::move(child));
}

void Module::collect(const std::string& prefix, bool params, bool buffers,
                     NamedTensors& out) const {
  if (params)
    for (const auto& [n, t] : params_) out.emplace_back(prefix + n, t);
  if (buffers)
    for (const auto& [n, t] : buffers_) out.emplace_back(prefix + n, t);
  for (const auto& [n, child] : children_) child->collect(prefix + n + ".", params, buffers, out);
}

NamedTensors Module::named_parameters() const {
  NamedTensors out;
  collect("", true, false, out);
  return out;
}

NamedTensors Module::named_buffers() const {
  NamedTensors out;
  collect("", false, true, out);
  return out;
}

NamedTensors Module::state_dict() const {
  NamedTensors out;
  collect("", true, true, out);
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [n, t] : named_parameters()) out.push_back(t);
  return out;
}

std::vector<Tensor> Module::buffers() const {
  std::vector<Tensor> out;
  for (auto& [n, t] : named_buffers()) out.push_back(t);
  return out;
}

std::vector<std::pair<std::string, std::shared_ptr<Module>>> Module::named_modules() const {
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> out;
  for (const auto& [n, child] : children_) {
    out.emplace_back(n, child);
    for (auto& [sub, m] : child->named_modules()) out.emplace_back(n + "." + sub, m);
  }
  return out;
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (auto& [name, t] : named_parameters()) n += t.numel();
  return n;
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [n, child] : children_) child->train(on);
}

void Module::zero_grad() {
  for (auto& [n, t] : named_parameters()) t.set_grad(Tensor());
}

LoadStateResult Module::load_state_dict(const NamedTensors& entries, bool strict) {
  NamedTensors own = state_dict();
  std::map<std::string, const Tensor*> given;
  std::vector<std::string> duplicates;
  for (const auto& [n, t] : entries)
    if (!given.emplace(n, &t).second) duplicates.push_back(n);

  LoadStateResult result;
  std::vector<std::string> mismatched;
  std::set<std::string> known;
  for (const auto& [n, t] : own) {
    known.insert(n);
    auto it = given.find(n);
    if (it == given.end()) {
      result.missing_keys.push_back(n);
      continue;
    }
    const Tensor& src = *it->second;
    if (!src.defined() || src.shape() != t.shape() || src.dtype() != t.dtype()) {
      mismatched.push_back(
          str(n, " (expected ", dtype_name(t.dtype()), " ", shape_str(t.shape()), ", got ",
              src.defined() ? str(dtype_name(src.dtype()), " ", shape_str(src.shape()))
                            : std::string("undefined"),
              ")"));
    }
  }
  for (const auto& [n, t] : entries)
    if (!known.count(n)) result.unexpected_keys.push_back(n);

  auto join = [](const std::vector<std::string>& v) {
    std::string s;
    for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + v[i];
    return s;
  };
  std::string problems;
  auto add = [&](const char* what, const std::vector<std::string>& v) {
    if (v.empty()) return;
    problems += str(problems.empty() ? "" : "; ", what, " (", v.size(), "): ", join(v));
  };
  if (strict) {
    add("missing keys", result.missing_keys);
    add("unexpected keys", result.unexpected_keys);
  }
  add("mismatched keys", mismatched);
  add("duplicate keys", duplicates);
  TANDEM_CHECK_T(ConfigError, problems.empty(), "load_state_dict into ",
                 path().empty() ? describe() : where(), ": ", problems);

  NoGradGuard no_grad;
  for (auto& [n, t] : own) {
    auto it = given.find(n);
    if (it != given.end()) t.copy_(*it->second);
  }
  return result;
}

namespace {

// Replaces t's storage with a converted copy; the handle (and everyone sharing it) stays valid.
void convert_in_place(const Tensor& t, DType dtype) {
  if (!is_floating(t.dtype()) || t.dtype() == dtype) return;
  Tensor c;
  {
    NoGradGuard no_grad;
    c = t.detach().to(dtype).contiguous();
  }
  TensorImpl* impl = t.impl();
  impl->storage = c.storage();
  impl->strides = c.strides();
  impl->offset = c.offset();
  impl->dtype = dtype;
  if (impl->grad.defined()) {
    NoGradGuard no_grad;
    impl->grad = impl->grad.to(dtype);
  }
}

// Replaces t's storage with a copy on `device`; the handle stays valid.
void move_in_place(const Tensor& t, Device device) {
  if (t.device() == device) return;
  Tensor c;
  {
    NoGradGuard no_grad;
    c = t.detach().contiguous().to(device);
  }
  TensorImpl* impl = t.impl();
  impl->storage = c.storage();
  impl->strides = c.strides();
  impl->offset = c.offset();
  if (impl->grad.defined()) {
    NoGradGuard no_grad;
    impl->grad = impl->grad.to(device);
  }
}

}  // namespace

void Module::to(Device device) {
  for (auto& [n, t] : state_dict()) move_in_place(t, device);
}

void Module::to(DType dtype) {
  TANDEM_CHECK_T(TypeError, is_floating(dtype),
                 "Module::to: parameters need a floating dtype, got ", dtype_name(dtype));
  for (auto& [n, t] : state_dict()) convert_in_place(t, dtype);
}

std::string Module::path() const {
  if (parent_ == nullptr) return "";
  std::string up = parent_->path();
  return up.empty() ? name_in_parent_ : up + "." + name_in_parent_;
}

std::string Module::where() const {
  std::string p = path();
  return p.empty() ? describe() : p + " (" + describe() + ")";
}

}  // namespace tandem
