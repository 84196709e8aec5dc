// Reductions on the CPU. Every reduction is brought to one of two contiguous layouts: (outer,
// reduced) -- sum each row -- or (reduced, inner) -- add rows together, the vectorisable layout of
// a bias gradient. Other layouts are permuted into the first with one copy.
#include <algorithm>
#include <cmath>
#include <limits>

#include "core/autograd/node.h"
#include "core/backends/device_backend.h"
#include "core/ops/dispatch.h"
#include "core/ops/ops.h"
#include "core/parallel/parallel.h"

namespace tandem {
namespace {

std::vector<int64_t> normalise_dims(std::vector<int64_t> dims, int64_t ndim, const char* op) {
  if (dims.empty())
    for (int64_t d = 0; d < ndim; ++d) dims.push_back(d);
  for (auto& d : dims) {
    TANDEM_CHECK_SHAPE(d >= -ndim && d < std::max<int64_t>(ndim, 1), op, ": dimension ", d,
                       " out of range for a ", ndim, "-d tensor");
    if (d < 0) d += ndim;
  }
  std::sort(dims.begin(), dims.end());
  dims.erase(std::unique(dims.begin(), dims.end()), dims.end());
  if (ndim == 0) dims.clear();
  return dims;
}

Shape reduced_shape(const Shape& s, const std::vector<int64_t>& dims, bool keepdim) {
  Shape out;
  for (int64_t d = 0; d < static_cast<int64_t>(s.size()); ++d) {
    bool r = std::binary_search(dims.begin(), dims.end(), d);
    if (!r)
      out.push_back(s[d]);
    else if (keepdim)
      out.push_back(1);
  }
  return out;
}

// Sum of x over dims (sorted, unique) into a contiguous tensor of the kept dims' shape.
Tensor sum_kernel(const Tensor& x_in, const std::vector<int64_t>& dims) {
  Tensor x = x_in.detach();
  const int64_t nd = x.dim();
  Shape kept = reduced_shape(x.shape(), dims, false);
  Tensor out = empty(kept, x.dtype(), x.device());
  int64_t red = 1;
  for (int64_t d : dims) red *= x.shape()[d];
  const int64_t outer = out.numel();
  // Reduced dims leading: (red, inner) layout.
  bool leading = x.is_contiguous();
  for (size_t i = 0; i < dims.size() && leading; ++i) leading = dims[i] == static_cast<int64_t>(i);
  if (x.is_cuda()) {
    DeviceBackend& be = backend_for("sum", x.device());
    if (leading && !dims.empty() && static_cast<int64_t>(dims.size()) < nd) {
      be.sum_cols(x, red, outer, out);
      return out;
    }
    std::vector<int64_t> perm;
    for (int64_t d = 0; d < nd; ++d)
      if (!std::binary_search(dims.begin(), dims.end(), d)) perm.push_back(d);
    for (int64_t d : dims) perm.push_back(d);
    be.sum_rows(x.permute(perm).contiguous(), outer, red, out);
    return out;
  }
  TANDEM_DISPATCH_FLOAT(x.dtype(), "sum", [&] {
    scalar_t* o = out.data<scalar_t>();
    if (leading && !dims.empty() && static_cast<int64_t>(dims.size()) < nd) {
      const scalar_t* p = x.data<scalar_t>();
      const int64_t inner = outer;
      parallel_for(0, inner, 256, [&](int64_t b, int64_t e) {
        for (int64_t j = b; j < e; ++j) o[j] = 0;
        for (int64_t r = 0; r < red; ++r) {
          const scalar_t* row = p + r * inner;
          for (int64_t j = b; j < e; ++j) o[j] += row[j];
        }
      });
      return;
    }
    // Move reduced dims last, then sum rows with a double accumulator.
    std::vector<int64_t> perm;
    for (int64_t d = 0; d < nd; ++d)
      if (!std::binary_search(dims.begin(), dims.end(), d)) perm.push_back(d);
    for (int64_t d : dims) perm.push_back(d);
    Tensor xc = x.permute(perm).contiguous();
    const scalar_t* p = xc.data<scalar_t>();
    parallel_for(0, outer, std::max<int64_t>(1, 32768 / std::max<int64_t>(red, 1)),
                 [&](int64_t b, int64_t e) {
                   for (int64_t i = b; i < e; ++i) {
                     const scalar_t* row = p + i * red;
                     double acc = 0;
                     for (int64_t r = 0; r < red; ++r) acc += row[r];
                     o[i] = static_cast<scalar_t>(acc);
                   }
                 });
  });
  return out;
}

}  // namespace

Tensor sum(const Tensor& a, std::vector<int64_t> dims_in, bool keepdim) {
  std::vector<int64_t> dims = normalise_dims(std::move(dims_in), a.dim(), "sum");
  Tensor out = sum_kernel(a, dims);
  if (keepdim) out = out.view(reduced_shape(a.shape(), dims, true));
  Shape in_shape = a.shape(), keep_shape = reduced_shape(a.shape(), dims, true);
  record("SumBackward", {a}, {out}, [in_shape, keep_shape](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{g[0].reshape(keep_shape).expand(in_shape).contiguous()};
  });
  return out;
}

Tensor sum(const Tensor& a) {
  return sum(a, {}, false);
}

Tensor mean(const Tensor& a, std::vector<int64_t> dims_in, bool keepdim) {
  std::vector<int64_t> dims = normalise_dims(dims_in, a.dim(), "mean");
  int64_t count = 1;
  for (int64_t d : dims) count *= a.shape()[d];
  TANDEM_CHECK_SHAPE(count > 0, "mean of an empty tensor");
  return mul(sum(a, dims, keepdim), 1.0 / static_cast<double>(count));
}

Tensor mean(const Tensor& a) {
  return mean(a, {}, false);
}

namespace {

// Max along dim: values and i64 indices (first occurrence; NaN propagates as in PyTorch).
std::pair<Tensor, Tensor> max_kernel(const Tensor& a, int64_t dim) {
  const int64_t nd = a.dim();
  TANDEM_CHECK_SHAPE(nd > 0, "max over a dimension needs at least one dimension");
  TANDEM_CHECK_SHAPE(dim >= -nd && dim < nd, "max: dimension ", dim, " out of range");
  if (dim < 0) dim += nd;
  TANDEM_CHECK_SHAPE(a.shape()[dim] > 0, "max: reduction over an empty dimension");
  std::vector<int64_t> perm;
  for (int64_t d = 0; d < nd; ++d)
    if (d != dim) perm.push_back(d);
  perm.push_back(dim);
  Tensor xc = a.detach().permute(perm).contiguous();
  const int64_t red = a.shape()[dim];
  const int64_t outer = xc.numel() / red;
  Shape kept = reduced_shape(a.shape(), {dim}, false);
  if (a.is_cuda()) {
    Tensor values = empty(kept, a.dtype(), a.device()),
           indices = empty(kept, DType::kI64, a.device());
    backend_for("max", a.device()).max_rows(xc, outer, red, values, indices);
    return {values, indices};
  }
  Tensor values = empty(kept, a.dtype()), indices = empty(kept, DType::kI64);
  TANDEM_DISPATCH_ALL(a.dtype(), "max", [&] {
    const scalar_t* p = xc.data<scalar_t>();
    scalar_t* v = values.data<scalar_t>();
    int64_t* ix = indices.data<int64_t>();
    parallel_for(0, outer, 1024, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const scalar_t* row = p + i * red;
        int64_t best = 0;
        for (int64_t r = 1; r < red; ++r) {
          if constexpr (std::is_floating_point_v<scalar_t>) {
            if (std::isnan(row[best])) break;
            if (std::isnan(row[r]) || row[r] > row[best]) best = r;
          } else {
            if (row[r] > row[best]) best = r;
          }
        }
        v[i] = row[best];
        ix[i] = best;
      }
    });
  });
  return {values, indices};
}

}  // namespace

std::pair<Tensor, Tensor> max(const Tensor& a, int64_t dim, bool keepdim) {
  auto [values, indices] = max_kernel(a, dim);
  int64_t d = dim < 0 ? dim + a.dim() : dim;
  if (keepdim) {
    values = values.unsqueeze(d);
    indices = indices.unsqueeze(d);
  }
  Shape in_shape = a.shape();
  Tensor idx = indices.detach();
  record("MaxBackward", {a}, {values}, [in_shape, idx, d](const std::vector<Tensor>& g) {
    // Scatter g into the argmax positions along d.
    if (g[0].is_cuda()) {  // in the layout with d last, then permuted back
      std::vector<int64_t> perm, inverse(in_shape.size());
      Shape ps;
      for (int64_t k = 0; k < static_cast<int64_t>(in_shape.size()); ++k)
        if (k != d) perm.push_back(k);
      perm.push_back(d);
      for (size_t k = 0; k < perm.size(); ++k) {
        ps.push_back(in_shape[perm[k]]);
        inverse[perm[k]] = static_cast<int64_t>(k);
      }
      Tensor gp = zeros(ps, g[0].dtype(), g[0].device());
      backend_for("max_backward", gp.device())
          .scatter_rows(g[0].contiguous(), idx.contiguous(), in_shape[d], gp);
      return std::vector<Tensor>{gp.permute(inverse).contiguous()};
    }
    Tensor gi = zeros(in_shape, g[0].dtype());
    Shape ks = in_shape;
    ks[d] = 1;
    Tensor gk = g[0].reshape(ks).contiguous();
    Tensor ik = idx.reshape(ks).contiguous();
    const int64_t* pi = ik.data<int64_t>();
    TANDEM_DISPATCH_FLOAT(gi.dtype(), "max_backward", [&] {
      scalar_t* pg = gi.data<scalar_t>();
      const scalar_t* src = gk.data<scalar_t>();
      Shape st = gi.strides();
      int64_t n = gk.numel();
      for_each_offset(ks, contiguous_strides(ks), 0, n, [&](int64_t i, int64_t) {
        // Recover the multi-index of i in ks, replace dim d with the argmax.
        int64_t rem = i, off = 0;
        for (int64_t k = static_cast<int64_t>(ks.size()) - 1; k >= 0; --k) {
          int64_t c = rem % ks[k];
          rem /= ks[k];
          off += (k == d ? pi[i] : c) * st[k];
        }
        pg[off] += src[i];
      });
    });
    return std::vector<Tensor>{gi};
  });
  return {values, indices};
}

Tensor max(const Tensor& a) {
  Tensor flat = a.reshape({-1});
  return max(flat, 0, false).first;
}

Tensor argmax(const Tensor& a, int64_t dim, bool keepdim) {
  auto [values, indices] = max_kernel(a, dim);
  if (keepdim) indices = indices.unsqueeze(dim < 0 ? dim + a.dim() : dim);
  return indices;
}

}  // namespace tandem
