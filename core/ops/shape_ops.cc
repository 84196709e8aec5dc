// Concatenation and integer indexing on the CPU. Key decision: both view their (contiguous)
// operands as (outer, D, inner) around the dim they act on and move whole inner runs with memcpy,
// so one kernel serves every dtype. The backward of a gather is a scatter-add that is parallel
// only over outer rows (or, with one outer row, over inner columns): two threads never add into
// the same element, so repeated indices sum correctly without atomics.
#include <cstring>

#include "core/autograd/node.h"
#include "core/ops/dispatch.h"
#include "core/ops/ops.h"
#include "core/parallel/parallel.h"

namespace tandem {
namespace {

constexpr int64_t kGrainBytes =
    1 << 17;  // bytes per task below which threads cost more than they give

int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op) {
  const int64_t n = std::max<int64_t>(ndim, 1);
  TANDEM_CHECK_SHAPE(dim >= -n && dim < n, op, ": dimension ", dim, " out of range for a ", ndim,
                     "-d tensor");
  return dim < 0 ? dim + n : dim;
}

int64_t prod(const Shape& s, int64_t begin, int64_t end) {
  int64_t p = 1;
  for (int64_t i = begin; i < end; ++i) p *= s[i];
  return p;
}

// The index as contiguous i64, every entry checked against [0, size) (negatives wrapped first when
// allow_negative, as x[idx] does in PyTorch).
Tensor checked_index(const char* op, const Tensor& index, int64_t size, bool allow_negative) {
  TANDEM_CHECK_T(TypeError, index.dtype() == DType::kI64 || index.dtype() == DType::kI32, op,
                 ": index must be an i32 or i64 tensor, got ", dtype_name(index.dtype()));
  Tensor idx = empty(index.shape(), DType::kI64);  // our own copy: negatives are wrapped in place
  idx.copy_(index.detach());  // on the host (from a device index too): every entry is checked
  int64_t* p = idx.data<int64_t>();
  for (int64_t i = 0; i < idx.numel(); ++i) {
    int64_t v = p[i];
    if (allow_negative && v < 0) v += size;
    TANDEM_CHECK_SHAPE(v >= 0 && v < size, op, ": index ", p[i], " at position ", i,
                       " is out of range for a dimension of size ", size, " (expected ",
                       allow_negative ? -size : 0, " <= index < ", size, ")");
    p[i] = v;
  }
  return idx;
}

// out (outer, K, inner) = x (outer, D, inner)[:, idx, :], raw bytes.
void gather_rows(const Tensor& x, int64_t outer, int64_t d, int64_t inner, const int64_t* idx,
                 int64_t k, Tensor& out) {
  const int64_t row = inner * static_cast<int64_t>(dtype_size(x.dtype()));
  const char* src = static_cast<const char*>(x.raw_data());
  char* dst = static_cast<char*>(out.raw_data());
  const int64_t grain = std::max<int64_t>(1, kGrainBytes / std::max<int64_t>(row, 1));
  parallel_for(0, outer * k, grain, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const int64_t o = t / k, j = t % k;
      std::memcpy(dst + t * row, src + (o * d + idx[j]) * row, static_cast<size_t>(row));
    }
  });
}

// gx (outer, D, inner) += g (outer, K, inner) scattered to rows idx.
template <typename T>
void scatter_add_rows(const T* g, int64_t outer, int64_t d, int64_t inner, const int64_t* idx,
                      int64_t k, T* gx) {
  if (outer > 1) {
    parallel_for(0, outer, std::max<int64_t>(1, (1 << 15) / std::max<int64_t>(k * inner, 1)),
                 [&](int64_t b, int64_t e) {
                   for (int64_t o = b; o < e; ++o)
                     for (int64_t j = 0; j < k; ++j) {
                       const T* src = g + (o * k + j) * inner;
                       T* dst = gx + (o * d + idx[j]) * inner;
                       for (int64_t i = 0; i < inner; ++i) dst[i] += src[i];
                     }
                 });
    return;
  }
  parallel_for(0, inner, std::max<int64_t>(16, (1 << 15) / std::max<int64_t>(k, 1)),
               [&](int64_t b, int64_t e) {
                 for (int64_t j = 0; j < k; ++j) {
                   const T* src = g + j * inner;
                   T* dst = gx + idx[j] * inner;
                   for (int64_t i = b; i < e; ++i) dst[i] += src[i];
                 }
               });
}

// On a device: one device copy per selected row (and one add per row in the backward). Correct
// for any index; fast only for short ones (no model of the core indexes on the device per step).
Tensor index_rows_device(const char* op, const Tensor& x, const Tensor& idx, int64_t outer,
                         int64_t d, int64_t inner, const Shape& out_shape) {
  Tensor xc = x.detach().contiguous().view({outer, d, inner});
  const int64_t k = idx.numel();
  const int64_t* p = idx.data<int64_t>();
  Tensor out = empty({outer, k, inner}, x.dtype(), x.device());
  for (int64_t j = 0; j < k; ++j) out.select(1, j).copy_(xc.select(1, p[j]));
  out = out.view(out_shape);
  Shape in_shape = x.shape();
  record(std::string(op) == "index" ? "IndexBackward" : "IndexSelectBackward", {x}, {out},
         [idx, in_shape, outer, d, inner, k](const std::vector<Tensor>& g) {
           Tensor gc = g[0].contiguous().view({outer, k, inner});
           Tensor gx = zeros({outer, d, inner}, gc.dtype(), gc.device());
           const int64_t* p = idx.data<int64_t>();
           for (int64_t j = 0; j < k; ++j) {
             Tensor rows = gx.select(1, p[j]);
             add_(rows, gc.select(1, j));
           }
           return std::vector<Tensor>{gx.view(in_shape)};
         });
  return out;
}

// x.index_select(dim, idx) for a checked 1-D i64 idx; out_shape is the result's shape.
Tensor index_rows(const char* op, const Tensor& x, int64_t dim, const Tensor& idx,
                  const Shape& out_shape) {
  const int64_t outer = prod(x.shape(), 0, dim), d = x.shape()[dim],
                inner = prod(x.shape(), dim + 1, x.dim());
  if (x.is_cuda()) return index_rows_device(op, x, idx, outer, d, inner, out_shape);
  Tensor xc = x.detach().contiguous();
  const int64_t k = idx.numel();
  Tensor out = empty(out_shape, x.dtype());
  gather_rows(xc, outer, d, inner, idx.data<int64_t>(), k, out);
  Shape in_shape = x.shape();
  record(std::string(op) == "index" ? "IndexBackward" : "IndexSelectBackward", {x}, {out},
         [idx, in_shape, outer, d, inner, k](const std::vector<Tensor>& g) {
           Tensor gc = g[0].contiguous();
           Tensor gx = zeros(in_shape, gc.dtype());
           TANDEM_DISPATCH_FLOAT(gc.dtype(), "index_select_backward", [&] {
             scatter_add_rows<scalar_t>(gc.data<scalar_t>(), outer, d, inner, idx.data<int64_t>(),
                                        k, gx.data<scalar_t>());
           });
           return std::vector<Tensor>{gx};
         });
  return out;
}

// The output shape of cat, after checking that every tensor matches tensor 0 except along dim.
Shape cat_shape(const std::vector<Tensor>& tensors, int64_t dim) {
  const Tensor& first = tensors[0];
  Shape out_shape = first.shape();
  out_shape[dim] = 0;
  for (size_t t = 0; t < tensors.size(); ++t) {
    const Tensor& x = tensors[t];
    TANDEM_CHECK_SHAPE(x.defined(), "cat: tensor ", t, " is undefined");
    TANDEM_CHECK(x.device() == first.device(), "cat: tensor ", t, " is on ", x.device().str(),
                 " but tensor 0 is on ", first.device().str());
    TANDEM_CHECK_T(TypeError, x.dtype() == first.dtype(), "cat: tensor ", t, " is ",
                   dtype_name(x.dtype()), " but tensor 0 is ", dtype_name(first.dtype()));
    bool ok = x.dim() == first.dim();
    for (int64_t i = 0; ok && i < x.dim(); ++i) ok = i == dim || x.shape()[i] == first.shape()[i];
    TANDEM_CHECK_SHAPE(ok, "cat: tensor ", t, " has shape ", shape_str(x.shape()),
                       " but tensor 0 has ", shape_str(first.shape()),
                       "; all sizes except dimension ", dim, " must match");
    out_shape[dim] += x.shape()[dim];
  }
  return out_shape;
}

// Copies each input into its slice of out along dim: one device copy per input on CUDA, one
// memcpy per outer row and input on the CPU.
void cat_into(Tensor& out, const std::vector<Tensor>& tensors, int64_t dim) {
  if (out.is_cuda()) {
    int64_t at = 0;
    for (const Tensor& x : tensors) {
      out.slice(dim, at, at + x.shape()[dim]).copy_(x.detach());
      at += x.shape()[dim];
    }
    return;
  }
  const Shape& out_shape = out.shape();
  const int64_t outer = prod(out_shape, 0, dim), inner = prod(out_shape, dim + 1, out.dim());
  const int64_t es = static_cast<int64_t>(dtype_size(out.dtype()));
  const int64_t out_row = out_shape[dim] * inner * es;
  char* dst = static_cast<char*>(out.raw_data());
  int64_t off = 0;  // bytes into each output row
  for (const Tensor& x_in : tensors) {
    Tensor x = x_in.detach().contiguous();
    const int64_t row = x.shape()[dim] * inner * es;
    const char* src = static_cast<const char*>(x.raw_data());
    if (row > 0) {
      parallel_for(0, outer, std::max<int64_t>(1, kGrainBytes / row), [&](int64_t b, int64_t e) {
        for (int64_t o = b; o < e; ++o)
          std::memcpy(dst + o * out_row + off, src + o * row, static_cast<size_t>(row));
      });
    }
    off += row;
  }
}

}  // namespace

Tensor cat(const std::vector<Tensor>& tensors, int64_t dim_in) {
  TANDEM_CHECK_SHAPE(!tensors.empty(), "cat: expected a non-empty list of tensors");
  const Tensor& first = tensors[0];
  TANDEM_CHECK_SHAPE(first.defined() && first.dim() > 0,
                     "cat: tensors must have at least one dimension");
  const int64_t dim = wrap_dim(dim_in, first.dim(), "cat");
  Tensor out = empty(cat_shape(tensors, dim), first.dtype(), first.device());
  cat_into(out, tensors, dim);
  std::vector<int64_t> starts;  // where each input begins along dim
  int64_t pos = 0;
  Shape sizes;
  std::vector<bool> need;
  for (const Tensor& x : tensors) {
    starts.push_back(pos);
    sizes.push_back(x.shape()[dim]);
    pos += x.shape()[dim];
    need.push_back(x.requires_grad());
  }
  record("CatBackward", tensors, {out}, [dim, starts, sizes, need](const std::vector<Tensor>& g) {
    std::vector<Tensor> r(starts.size());
    for (size_t t = 0; t < starts.size(); ++t)
      if (need[t]) r[t] = g[0].slice(dim, starts[t], starts[t] + sizes[t]);
    return r;
  });
  return out;
}

Tensor index_select(const Tensor& x, int64_t dim_in, const Tensor& index) {
  if (!x.is_cuda()) check_cpu("index_select", {&x, &index});
  TANDEM_CHECK_SHAPE(x.dim() > 0, "index_select: input must have at least one dimension");
  TANDEM_CHECK_SHAPE(index.dim() <= 1, "index_select: index must be 0-d or 1-d, got shape ",
                     shape_str(index.shape()));
  const int64_t dim = wrap_dim(dim_in, x.dim(), "index_select");
  Tensor idx = checked_index("index_select", index, x.shape()[dim], false);
  Shape out_shape = x.shape();
  out_shape[dim] = idx.numel();
  return index_rows("index_select", x, dim, idx, out_shape);
}

Tensor index(const Tensor& x, const Tensor& index) {
  if (!x.is_cuda()) check_cpu("index", {&x, &index});
  TANDEM_CHECK_SHAPE(x.dim() > 0, "index: cannot index a 0-d tensor");
  Tensor idx = checked_index("index", index, x.shape()[0], true);
  Shape out_shape = index.shape();
  out_shape.insert(out_shape.end(), x.shape().begin() + 1, x.shape().end());
  return index_rows("index", x, 0, idx, out_shape);
}

}  // namespace tandem
