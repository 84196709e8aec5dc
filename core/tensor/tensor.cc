#include "core/tensor/tensor.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <sstream>

#include "core/autograd/grad_mode.h"
#include "core/autograd/node.h"
#include "core/backends/device_backend.h"
#include "core/ops/dispatch.h"
#include "core/ops/ops.h"
#include "core/parallel/parallel.h"

namespace tandem {

std::string shape_str(const Shape& s) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << "]";
  return os.str();
}

int64_t shape_numel(const Shape& s) {
  // Checked: a shape read from a file or the wire must not wrap around to a small count.
  int64_t n = 1;
  for (int64_t d : s)
    TANDEM_CHECK_SHAPE(!__builtin_mul_overflow(n, d, &n), "shape ", shape_str(s),
                       " has more elements than fit in 64 bits");
  return n;
}

Shape contiguous_strides(const Shape& s) {
  // Checked as shape_numel: with a 0 size there are no elements, but the other sizes' strides can
  // still pass int64.
  Shape st(s.size());
  int64_t acc = 1;
  for (int64_t d = static_cast<int64_t>(s.size()) - 1; d >= 0; --d) {
    st[d] = acc;
    TANDEM_CHECK_SHAPE(!__builtin_mul_overflow(acc, std::max<int64_t>(s[d], 1), &acc), "shape ",
                       shape_str(s), " has strides that do not fit in 64 bits");
  }
  return st;
}

namespace {

const TensorImpl& checked(const TensorImpl* impl) {
  TANDEM_CHECK(impl != nullptr, "operation on an undefined tensor");
  return *impl;
}

int64_t wrap_dim(int64_t d, int64_t ndim, const char* op) {
  int64_t n = std::max<int64_t>(ndim, 1);
  TANDEM_CHECK_SHAPE(d >= -n && d < n, op, ": dimension ", d, " out of range for a ", ndim,
                     "-d tensor");
  return d < 0 ? d + n : d;
}

Tensor make_view(const Tensor& base, Shape shape, Shape strides, int64_t offset) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = base.storage();
  impl->shape = std::move(shape);
  impl->strides = std::move(strides);
  impl->offset = offset;
  impl->dtype = base.dtype();
  return Tensor(impl);
}

}  // namespace

// ------------------------------------------------------------------ metadata
const Shape& Tensor::shape() const {
  return checked(impl_.get()).shape;
}
const Shape& Tensor::strides() const {
  return checked(impl_.get()).strides;
}
int64_t Tensor::dim() const {
  return static_cast<int64_t>(shape().size());
}
int64_t Tensor::size(int64_t d) const {
  return shape()[wrap_dim(d, dim(), "size")];
}
int64_t Tensor::stride(int64_t d) const {
  return strides()[wrap_dim(d, dim(), "stride")];
}
int64_t Tensor::offset() const {
  return checked(impl_.get()).offset;
}
int64_t Tensor::numel() const {
  return shape_numel(shape());
}
DType Tensor::dtype() const {
  return checked(impl_.get()).dtype;
}
Device Tensor::device() const {
  return checked(impl_.get()).storage->device();
}
const std::shared_ptr<Storage>& Tensor::storage() const {
  return checked(impl_.get()).storage;
}

bool Tensor::is_contiguous() const {
  const Shape& s = shape();
  const Shape& st = strides();
  int64_t expected = 1;
  for (int64_t d = dim() - 1; d >= 0; --d) {
    if (s[d] == 1) continue;
    if (st[d] != expected) return false;
    expected *= s[d];
  }
  return true;
}

std::string Tensor::str() const {
  if (!defined()) return "Tensor(undefined)";
  return "Tensor(" + std::string(dtype_name(dtype())) + ", " + shape_str(shape()) + ", " +
         device().str() + ")";
}

void* Tensor::raw_data() const {
  const TensorImpl& t = checked(impl_.get());
  return static_cast<char*>(t.storage->data()) +
         t.offset * static_cast<int64_t>(dtype_size(t.dtype));
}

double Tensor::item() const {
  TANDEM_CHECK_SHAPE(numel() == 1, "item() needs a one-element tensor, got shape ",
                     shape_str(shape()));
  if (is_cuda()) return to(Device::cpu()).item();
  return load_as_double(raw_data(), dtype());
}

std::vector<double> Tensor::to_vector() const {
  if (is_cuda()) return to(Device::cpu()).to_vector();
  std::vector<double> out(static_cast<size_t>(numel()));
  const char* base = static_cast<const char*>(raw_data());
  const size_t es = dtype_size(dtype());
  DType dt = dtype();
  for_each_offset(shape(), strides(), 0, numel(), [&](int64_t i, int64_t off) {
    out[i] = load_as_double(base + off * static_cast<int64_t>(es), dt);
  });
  return out;
}

// ------------------------------------------------------------------ views
Tensor Tensor::view(Shape new_shape) const {
  int64_t infer = -1, known = 1;
  for (size_t i = 0; i < new_shape.size(); ++i) {
    if (new_shape[i] == -1) {
      TANDEM_CHECK_SHAPE(infer < 0, "view: only one dimension can be -1");
      infer = static_cast<int64_t>(i);
    } else {
      TANDEM_CHECK_SHAPE(new_shape[i] >= 0, "view: negative size in ", shape_str(new_shape));
      known *= new_shape[i];
    }
  }
  if (infer >= 0) {
    TANDEM_CHECK_SHAPE(known > 0 && numel() % known == 0, "view: shape ", shape_str(new_shape),
                       " is invalid for ", numel(), " elements");
    new_shape[infer] = numel() / known;
  }
  TANDEM_CHECK_SHAPE(shape_numel(new_shape) == numel(), "view: shape ", shape_str(new_shape),
                     " is invalid for input of shape ", shape_str(shape()));
  // Strides for the new shape exist if every run of merged/split dims is contiguous in memory.
  // Compute them as PyTorch's computeStride does.
  Shape new_strides(new_shape.size());
  const Shape& old_shape = shape();
  const Shape& old_strides = strides();
  bool ok = true;
  if (numel() == 0 || old_shape.empty()) {
    new_strides = contiguous_strides(new_shape);
  } else {
    int64_t view_d = static_cast<int64_t>(new_shape.size()) - 1;
    int64_t chunk_base_stride = old_strides.back();
    int64_t tensor_numel = 1, view_numel = 1;
    for (int64_t tensor_d = static_cast<int64_t>(old_shape.size()) - 1; tensor_d >= 0; --tensor_d) {
      tensor_numel *= old_shape[tensor_d];
      if (tensor_d == 0 || (old_shape[tensor_d - 1] != 1 &&
                            old_strides[tensor_d - 1] != tensor_numel * chunk_base_stride)) {
        while (view_d >= 0 && (view_numel < tensor_numel || new_shape[view_d] == 1)) {
          new_strides[view_d] = view_numel * chunk_base_stride;
          view_numel *= new_shape[view_d];
          --view_d;
        }
        if (view_numel != tensor_numel) {
          ok = false;
          break;
        }
        if (tensor_d > 0) {
          chunk_base_stride = old_strides[tensor_d - 1];
          tensor_numel = 1;
          view_numel = 1;
        }
      }
    }
    if (ok && view_d != -1) ok = false;
  }
  TANDEM_CHECK_SHAPE(ok, "view: shape ", shape_str(new_shape),
                     " is not compatible with the "
                     "strides of a ",
                     shape_str(shape()), " view; use reshape()");
  Tensor out = make_view(*this, new_shape, new_strides, offset());
  Shape in_shape = shape();
  record("ViewBackward", {*this}, {out}, [in_shape](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{g[0].reshape(in_shape)};
  });
  return out;
}

Tensor Tensor::reshape(Shape new_shape) const {
  try {
    return view(new_shape);
  } catch (const ShapeError&) {
    return contiguous().view(new_shape);
  }
}

Tensor Tensor::transpose(int64_t d0, int64_t d1) const {
  std::vector<int64_t> perm(static_cast<size_t>(dim()));
  for (int64_t i = 0; i < dim(); ++i) perm[i] = i;
  if (dim() == 0) return permute(perm);
  d0 = wrap_dim(d0, dim(), "transpose");
  d1 = wrap_dim(d1, dim(), "transpose");
  std::swap(perm[d0], perm[d1]);
  return permute(perm);
}

Tensor Tensor::permute(std::vector<int64_t> dims) const {
  TANDEM_CHECK_SHAPE(static_cast<int64_t>(dims.size()) == dim(), "permute: got ", dims.size(),
                     " dims for a ", dim(), "-d tensor");
  Shape s(dims.size()), st(dims.size());
  std::vector<bool> seen(dims.size(), false);
  std::vector<int64_t> inverse(dims.size());
  for (size_t i = 0; i < dims.size(); ++i) {
    int64_t d = wrap_dim(dims[i], dim(), "permute");
    TANDEM_CHECK_SHAPE(!seen[d], "permute: dimension ", d, " repeated");
    seen[d] = true;
    s[i] = shape()[d];
    st[i] = strides()[d];
    inverse[d] = static_cast<int64_t>(i);
  }
  Tensor out = make_view(*this, s, st, offset());
  record("PermuteBackward", {*this}, {out}, [inverse](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{g[0].permute(inverse)};
  });
  return out;
}

Tensor Tensor::slice(int64_t d, int64_t start, int64_t end, int64_t step) const {
  d = wrap_dim(d, dim(), "slice");
  TANDEM_CHECK_SHAPE(step > 0, "slice: step must be positive, got ", step);
  int64_t n = shape()[d];
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  Shape s = shape(), st = strides();
  s[d] = (end - start + step - 1) / step;
  st[d] = strides()[d] * step;
  Tensor out = make_view(*this, s, st, offset() + start * strides()[d]);
  Shape in_shape = shape();
  DType dt = dtype();
  Device dev = device();
  record("SliceBackward", {*this}, {out},
         [in_shape, dt, dev, d, start, end, step](const std::vector<Tensor>& g) {
           Tensor gi = zeros(in_shape, dt, dev);
           Tensor dst = gi.slice(d, start, end, step);
           dst.copy_(g[0]);
           return std::vector<Tensor>{gi};
         });
  return out;
}

Tensor Tensor::select(int64_t d, int64_t index) const {
  d = wrap_dim(d, dim(), "select");
  int64_t n = shape()[d];
  TANDEM_CHECK_SHAPE(index >= -n && index < n, "select: index ", index, " out of range for size ",
                     n);
  if (index < 0) index += n;
  return slice(d, index, index + 1).squeeze(d);
}

Tensor Tensor::expand(Shape new_shape) const {
  TANDEM_CHECK_SHAPE(static_cast<int64_t>(new_shape.size()) >= dim(), "expand: cannot expand ",
                     shape_str(shape()), " to fewer dimensions ", shape_str(new_shape));
  size_t lead = new_shape.size() - shape().size();
  Shape st(new_shape.size(), 0);
  for (size_t i = 0; i < new_shape.size(); ++i) {
    if (i < lead) {
      TANDEM_CHECK_SHAPE(new_shape[i] >= 0, "expand: bad size in ", shape_str(new_shape));
      continue;
    }
    int64_t old = shape()[i - lead];
    if (new_shape[i] == -1) new_shape[i] = old;
    if (old == new_shape[i]) {
      st[i] = strides()[i - lead];
    } else {
      TANDEM_CHECK_SHAPE(old == 1, "expand: cannot expand ", shape_str(shape()), " to ",
                         shape_str(new_shape));
      st[i] = 0;
    }
  }
  Tensor out = make_view(*this, new_shape, st, offset());
  Shape in_shape = shape();
  record("ExpandBackward", {*this}, {out}, [in_shape](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{sum_to(g[0], in_shape)};
  });
  return out;
}

Tensor Tensor::unsqueeze(int64_t d) const {
  d = wrap_dim(d, dim() + 1, "unsqueeze");
  Shape s = shape();
  s.insert(s.begin() + d, 1);
  return view(s);
}

Tensor Tensor::squeeze(int64_t d) const {
  d = wrap_dim(d, dim(), "squeeze");
  if (shape()[d] != 1) return *this;
  Shape s = shape(), st = strides();
  s.erase(s.begin() + d);
  st.erase(st.begin() + d);
  Tensor out = make_view(*this, s, st, offset());
  Shape in_shape = shape();
  record("SqueezeBackward", {*this}, {out}, [in_shape](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{g[0].reshape(in_shape)};
  });
  return out;
}

Tensor Tensor::flatten(int64_t start, int64_t end) const {
  if (dim() == 0) return reshape({1});
  start = wrap_dim(start, dim(), "flatten");
  end = wrap_dim(end, dim(), "flatten");
  Shape s;
  for (int64_t i = 0; i < start; ++i) s.push_back(shape()[i]);
  int64_t m = 1;
  for (int64_t i = start; i <= end; ++i) m *= shape()[i];
  s.push_back(m);
  for (int64_t i = end + 1; i < dim(); ++i) s.push_back(shape()[i]);
  return reshape(s);
}

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  return clone();
}

// ------------------------------------------------------------------ copies
Tensor Tensor::clone() const {
  Tensor out = empty(shape(), dtype(), device());
  {
    NoGradGuard g;
    out.copy_(*this);
  }
  record("CloneBackward", {*this}, {out},
         [](const std::vector<Tensor>& g) { return std::vector<Tensor>{g[0]}; });
  return out;
}

Tensor Tensor::to(DType dt) const {
  if (dt == dtype()) return *this;
  Tensor out = empty(shape(), dt, device());
  {
    NoGradGuard g;
    out.copy_(*this);
  }
  if (is_floating(dt) && is_floating(dtype())) {
    DType src = dtype();
    record("ToBackward", {*this}, {out},
           [src](const std::vector<Tensor>& g) { return std::vector<Tensor>{g[0].to(src)}; });
  }
  return out;
}

Tensor Tensor::to(Device dev) const {
  if (dev == device()) return *this;
  Tensor out = empty(shape(), dtype(), dev);
  {
    NoGradGuard g;
    out.copy_(*this);
  }
  if (is_floating(dtype())) {
    Device src = device();
    record("ToDeviceBackward", {*this}, {out},
           [src](const std::vector<Tensor>& g) { return std::vector<Tensor>{g[0].to(src)}; });
  }
  return out;
}

Tensor Tensor::detach() const {
  return make_view(*this, shape(), strides(), offset());
}

void Tensor::set_data(const Tensor& other) const {
  TANDEM_CHECK_SHAPE(other.shape() == shape(), "set_data: shape ", shape_str(other.shape()),
                     " for a tensor of shape ", shape_str(shape()));
  TANDEM_CHECK_T(TypeError, other.dtype() == dtype() && other.device() == device(),
                 "set_data: ", dtype_name(other.dtype()), " on ", other.device().str(), " for a ",
                 dtype_name(dtype()), " tensor on ", device().str());
  TensorImpl* me = impl();
  me->storage = other.storage();
  me->strides = other.strides();
  me->offset = other.offset();
}

namespace {

template <typename D, typename S>
void copy_typed(D* dst, const Shape& shape, const Shape& dst_strides, const S* src,
                const Shape& src_strides, int64_t n, bool dst_contig, bool src_contig) {
  if (dst_contig && src_contig) {
    parallel_for(0, n, 1 << 15, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) dst[i] = static_cast<D>(src[i]);
    });
    return;
  }
  parallel_for(0, n, 1 << 14, [&](int64_t b, int64_t e) {
    if (dst_contig) {
      for_each_offset(shape, src_strides, b, e,
                      [&](int64_t i, int64_t so) { dst[i] = static_cast<D>(src[so]); });
    } else {
      std::vector<int64_t> src_off(static_cast<size_t>(e - b));
      for_each_offset(shape, src_strides, b, e,
                      [&](int64_t i, int64_t so) { src_off[i - b] = so; });
      for_each_offset(shape, dst_strides, b, e, [&](int64_t i, int64_t dof) {
        dst[dof] = static_cast<D>(src[src_off[i - b]]);
      });
    }
  });
}

}  // namespace

Tensor& Tensor::copy_(const Tensor& src) {
  Tensor s = src.detach();
  if (s.shape() != shape()) s = s.expand(shape());
  const int64_t n = numel();
  if (n == 0) return *this;
  if (is_cuda() || s.is_cuda()) {
    backend_for("copy_", is_cuda() ? device() : s.device()).copy(*this, s);
    return *this;
  }
  const bool dc = is_contiguous(), sc = s.is_contiguous();
  DType dd = dtype(), sd = s.dtype();
  auto slow = [&] {
    char* dbase = static_cast<char*>(raw_data());
    const char* sbase = static_cast<const char*>(s.raw_data());
    int64_t des = static_cast<int64_t>(dtype_size(dd)), ses = static_cast<int64_t>(dtype_size(sd));
    std::vector<int64_t> src_off(static_cast<size_t>(n));
    for_each_offset(shape(), s.strides(), 0, n, [&](int64_t i, int64_t so) { src_off[i] = so; });
    for_each_offset(shape(), strides(), 0, n, [&](int64_t i, int64_t dof) {
      store_from_double(dbase + dof * des, dd, load_as_double(sbase + src_off[i] * ses, sd));
    });
  };
  bool dfast = dd != DType::kF16 && dd != DType::kBF16;
  bool sfast = sd != DType::kF16 && sd != DType::kBF16;
  if (dfast && sfast) {
    TANDEM_DISPATCH_ALL(dd, "copy_", [&] {
      using D = scalar_t;
      TANDEM_DISPATCH_ALL(sd, "copy_", [&] {
        copy_typed<D, scalar_t>(static_cast<D*>(raw_data()), shape(), strides(),
                                static_cast<const scalar_t*>(s.raw_data()), s.strides(), n, dc, sc);
      });
    });
  } else if (dc && sc && dd == DType::kBF16 && sd == DType::kF32) {
    auto* d = static_cast<BFloat16*>(raw_data());
    const float* f = static_cast<const float*>(s.raw_data());
    parallel_for(0, n, 1 << 15, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) d[i] = float_to_bf16(f[i]);
    });
  } else if (dc && sc && dd == DType::kF32 && sd == DType::kBF16) {
    float* d = static_cast<float*>(raw_data());
    const auto* f = static_cast<const BFloat16*>(s.raw_data());
    parallel_for(0, n, 1 << 15, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) d[i] = bf16_to_float(f[i]);
    });
  } else {
    slow();
  }
  return *this;
}

Tensor& Tensor::fill_(double value) {
  const int64_t n = numel();
  if (is_cuda()) {
    backend_for("fill_", device()).fill(*this, value);
    return *this;
  }
  if (dtype() == DType::kF16 || dtype() == DType::kBF16) {
    char* base = static_cast<char*>(raw_data());
    for_each_offset(shape(), strides(), 0, n, [&](int64_t, int64_t off) {
      store_from_double(base + off * 2, dtype(), value);
    });
    return *this;
  }
  TANDEM_DISPATCH_ALL(dtype(), "fill_", [&] {
    scalar_t v = static_cast<scalar_t>(value);
    scalar_t* p = static_cast<scalar_t*>(raw_data());
    if (is_contiguous()) {
      parallel_for(0, n, 1 << 16, [&](int64_t b, int64_t e) { std::fill(p + b, p + e, v); });
    } else {
      for_each_offset(shape(), strides(), 0, n, [&](int64_t, int64_t off) { p[off] = v; });
    }
  });
  return *this;
}

// ------------------------------------------------------------------ autograd
bool Tensor::requires_grad() const {
  return checked(impl_.get()).requires_grad;
}

Tensor& Tensor::set_requires_grad(bool r) {
  TANDEM_CHECK_T(AutogradError, is_leaf(),
                 "set_requires_grad: only leaf tensors can change requires_grad; use detach()");
  TANDEM_CHECK_T(AutogradError, !r || is_floating(dtype()),
                 "only floating-point tensors can require gradients, got ", dtype_name(dtype()));
  impl_->requires_grad = r;
  return *this;
}

bool Tensor::is_leaf() const {
  return checked(impl_.get()).grad_fn == nullptr;
}
const std::shared_ptr<Node>& Tensor::grad_fn() const {
  return checked(impl_.get()).grad_fn;
}
uint32_t Tensor::output_nr() const {
  return checked(impl_.get()).output_nr;
}
const Tensor& Tensor::grad() const {
  return checked(impl_.get()).grad;
}
void Tensor::set_grad(const Tensor& g) const {
  checked(impl_.get());
  impl_->grad = g;
  impl_->grad_destination_claimed = false;
}

void Tensor::set_grad_destination(const Tensor& d) const {
  checked(impl_.get());
  if (d.defined()) {
    TANDEM_CHECK_SHAPE(d.shape() == shape() && d.is_contiguous(),
                       "set_grad_destination: ", shape_str(d.shape()),
                       d.is_contiguous() ? "" : " (not contiguous)", " for a tensor of shape ",
                       shape_str(shape()));
    TANDEM_CHECK_T(TypeError, d.dtype() == dtype() && d.device() == device(),
                   "set_grad_destination: ", dtype_name(d.dtype()), " on ", d.device().str(),
                   " for a ", dtype_name(dtype()), " tensor on ", device().str());
  }
  impl_->grad_destination = d;
  impl_->grad_destination_claimed = false;
}

void Tensor::backward(const Tensor& gradient, bool retain_graph) const {
  TANDEM_CHECK_T(AutogradError, requires_grad(),
                 "backward: tensor does not require grad and has no grad_fn");
  Tensor g = gradient;
  if (!g.defined()) {
    TANDEM_CHECK_T(AutogradError, numel() == 1,
                   "backward: grad can be implicitly created only for scalar outputs; this "
                   "tensor has shape ",
                   shape_str(shape()), ", so pass a gradient of that shape");
    g = ones(shape(), dtype(), device());
  }
  TANDEM_CHECK_SHAPE(g.shape() == shape(), "backward: gradient has shape ", shape_str(g.shape()),
                     ", expected ", shape_str(shape()));
  run_backward({*this}, {g}, retain_graph);
}

HookHandle Tensor::register_post_accumulate_grad_hook(
    std::function<void(const Tensor&)> hook) const {
  TANDEM_CHECK_T(AutogradError, is_leaf() && requires_grad(),
                 "post-accumulate-grad hooks can only be registered on leaves that require grad");
  static std::atomic<uint64_t> next_id{1};
  const uint64_t id = next_id.fetch_add(1);
  impl_->post_accumulate_hooks.emplace_back(id, std::move(hook));
  return HookHandle(impl_, id);
}

void HookHandle::remove() {
  std::shared_ptr<TensorImpl> impl = tensor_.lock();
  tensor_.reset();
  if (!impl) return;
  auto& hooks = impl->post_accumulate_hooks;
  for (auto it = hooks.begin(); it != hooks.end(); ++it) {
    if (it->first != id_) continue;
    hooks.erase(it);
    return;
  }
}

// ------------------------------------------------------------------ creation
Tensor empty(const Shape& shape, DType dtype, Device device) {
  for (int64_t d : shape)
    TANDEM_CHECK_SHAPE(d >= 0, "negative dimension in shape ", shape_str(shape));
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(
      static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype), device);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(impl);
}

Tensor from_storage(std::shared_ptr<Storage> storage, const Shape& shape, DType dtype) {
  const size_t need = static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype);
  TANDEM_CHECK_SHAPE(storage && storage->nbytes() >= need, "from_storage: ", shape_str(shape), " ",
                     dtype_name(dtype), " needs ", need, " bytes, the storage has ",
                     storage ? storage->nbytes() : 0);
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::move(storage);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(impl);
}

Tensor zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.fill_(0.0);
  return t;
}

Tensor ones(const Shape& shape, DType dtype, Device device) {
  return full(shape, 1.0, dtype, device);
}

Tensor full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.fill_(value);
  return t;
}

Tensor arange(double start, double end, double step, DType dtype) {
  TANDEM_CHECK(step != 0.0, "arange: step must be non-zero");
  int64_t n = static_cast<int64_t>(std::ceil((end - start) / step));
  if (n < 0) n = 0;
  Tensor t = empty({n}, dtype);
  char* p = static_cast<char*>(t.raw_data());
  for (int64_t i = 0; i < n; ++i)
    store_from_double(p + i * static_cast<int64_t>(dtype_size(dtype)), dtype,
                      start + step * static_cast<double>(i));
  return t;
}

Tensor from_vector(const std::vector<double>& values, const Shape& shape, DType dtype) {
  TANDEM_CHECK_SHAPE(static_cast<int64_t>(values.size()) == shape_numel(shape),
                     "from_vector: ", values.size(), " values do not fill shape ",
                     shape_str(shape));
  Tensor t = empty(shape, dtype);
  char* p = static_cast<char*>(t.raw_data());
  for (size_t i = 0; i < values.size(); ++i)
    store_from_double(p + i * dtype_size(dtype), dtype, values[i]);
  return t;
}

Tensor scalar_tensor(double value, DType dtype) {
  return full({}, value, dtype);
}
Tensor zeros_like(const Tensor& t) {
  return zeros(t.shape(), t.dtype(), t.device());
}
Tensor ones_like(const Tensor& t) {
  return ones(t.shape(), t.dtype(), t.device());
}
Tensor empty_like(const Tensor& t) {
  return empty(t.shape(), t.dtype(), t.device());
}

Tensor as_strided(const Tensor& base, const Shape& shape, const Shape& strides, int64_t offset) {
  TANDEM_CHECK_SHAPE(shape.size() == strides.size(),
                     "as_strided: shape and strides differ in rank");
  int64_t max_off = offset;
  for (size_t i = 0; i < shape.size(); ++i)
    if (shape[i] > 0) max_off += (shape[i] - 1) * strides[i];
  TANDEM_CHECK_SHAPE(offset >= 0 && (shape_numel(shape) == 0 ||
                                     static_cast<size_t>(max_off + 1) * dtype_size(base.dtype()) <=
                                         base.storage()->nbytes()),
                     "as_strided: view exceeds the storage");
  return make_view(base, shape, strides, offset);
}

void check_cpu(const char* op, std::initializer_list<const Tensor*> tensors) {
  for (const Tensor* t : tensors)
    if (t != nullptr && t->defined() && !t->device().is_cpu())
      throw Unimplemented(str(op, " on ", t->device().str(), ": no kernel for this device"));
}

void check_same_device(const char* op, std::initializer_list<const Tensor*> tensors) {
  const Tensor* first = nullptr;
  for (const Tensor* t : tensors) {
    if (t == nullptr || !t->defined()) continue;
    if (first == nullptr) first = t;
    TANDEM_CHECK(t->device() == first->device(), op, ": operands on ", first->device().str(),
                 " and ", t->device().str(), "; move them to one device with .to()");
  }
}

void check_same_dtype(const char* op, std::initializer_list<const Tensor*> tensors) {
  const Tensor* first = nullptr;
  for (const Tensor* t : tensors) {
    if (t == nullptr || !t->defined()) continue;
    if (first == nullptr) {
      first = t;
      continue;
    }
    TANDEM_CHECK_T(TypeError, t->dtype() == first->dtype(), op, ": dtype mismatch, ",
                   dtype_name(first->dtype()), " and ", dtype_name(t->dtype()));
  }
}

}  // namespace tandem
