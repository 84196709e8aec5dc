// Matrix products on the CPU: every product is one OpenBLAS GEMM per batch entry; transposed
// views are passed to BLAS as transposed operands instead of being copied.
#include <cblas.h>

#include "core/autograd/node.h"
#include "core/backends/autocast.h"
#include "core/backends/device_backend.h"
#include "core/ops/blas.h"
#include "core/ops/dispatch.h"
#include "core/ops/ops.h"

namespace tandem {

void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              static_cast<blasint>(m), static_cast<blasint>(n), static_cast<blasint>(k), alpha, a,
              static_cast<blasint>(lda), b, static_cast<blasint>(ldb), beta, c,
              static_cast<blasint>(ldc));
}

void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a,
          int64_t lda, const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              static_cast<blasint>(m), static_cast<blasint>(n), static_cast<blasint>(k), alpha, a,
              static_cast<blasint>(lda), b, static_cast<blasint>(ldb), beta, c,
              static_cast<blasint>(ldc));
}

namespace {

// A 2-D view BLAS can read directly: row-major (stride(1) == 1) or a transposed row-major matrix
// (stride(0) == 1). Anything else is copied.
struct BlasOperand {
  Tensor t;  // keeps the data alive
  bool trans = false;
  int64_t ld = 0;
};

BlasOperand blas_operand(const Tensor& x) {
  const int64_t r = x.shape()[0], c = x.shape()[1];
  if (x.stride(1) == 1 && (x.stride(0) >= std::max<int64_t>(c, 1) || r <= 1))
    return {x, false, std::max<int64_t>(r <= 1 ? c : x.stride(0), 1)};
  if (x.stride(0) == 1 && (x.stride(1) >= std::max<int64_t>(r, 1) || c <= 1))
    return {x, true, std::max<int64_t>(c <= 1 ? r : x.stride(1), 1)};
  Tensor cx = x.contiguous();
  return {cx, false, std::max<int64_t>(c, 1)};
}

// out (m, n) = a (m, k) @ b (k, n), all 2-D; out contiguous. beta = 1 accumulates into out.
void mm_into(const Tensor& a, const Tensor& b, Tensor& out, double beta) {
  BlasOperand oa = blas_operand(a), ob = blas_operand(b);
  const int64_t m = a.shape()[0], k = a.shape()[1], n = b.shape()[1];
  if (out.is_cuda()) {
    backend_for("matmul", out.device())
        .gemm(oa.trans, ob.trans, m, n, k, oa.t, oa.ld, ob.t, ob.ld, beta, out);
    return;
  }
  TANDEM_DISPATCH_FLOAT(a.dtype(), "matmul", [&] {
    if (k == 0) {
      if (beta == 0.0) out.zero_();
      return;
    }
    gemm(oa.trans, ob.trans, m, n, k, scalar_t(1), static_cast<const scalar_t*>(oa.t.raw_data()),
         oa.ld, static_cast<const scalar_t*>(ob.t.raw_data()), ob.ld, static_cast<scalar_t>(beta),
         out.data<scalar_t>(), std::max<int64_t>(n, 1));
  });
}

Tensor mm(const Tensor& a, const Tensor& b) {
  Tensor out = empty({a.shape()[0], b.shape()[1]}, a.dtype(), a.device());
  mm_into(a, b, out, 0.0);
  return out;
}

// Batched: a (B, m, k), b (B, k, n) -> (B, m, n).
Tensor bmm(const Tensor& a, const Tensor& b) {
  const int64_t batch = a.shape()[0];
  Tensor out = empty({batch, a.shape()[1], b.shape()[2]}, a.dtype(), a.device());
  for (int64_t i = 0; i < batch; ++i) {
    Tensor o = out.select(0, i);
    mm_into(a.select(0, i), b.select(0, i), o, 0.0);
  }
  return out;
}

// a [..., m, k] @ b [..., k, n] with the batch dimensions broadcast, as one bmm.
Tensor broadcast_product(const Tensor& a, const Tensor& b) {
  const int64_t m = a.shape()[a.dim() - 2], k = a.shape()[a.dim() - 1];
  const int64_t n = b.shape()[b.dim() - 1];
  if (a.dim() == 2 && b.dim() == 2) return mm(a, b);
  Shape ba(a.shape().begin(), a.shape().end() - 2), bb(b.shape().begin(), b.shape().end() - 2);
  const Shape batch = broadcast_shapes(ba, bb);
  const int64_t nb = shape_numel(batch);
  Shape sa = batch, sb = batch, os = batch;
  sa.insert(sa.end(), {m, k});
  sb.insert(sb.end(), {k, n});
  os.insert(os.end(), {m, n});
  return bmm(a.expand(sa).reshape({nb, m, k}), b.expand(sb).reshape({nb, k, n})).view(os);
}

void record_matmul_backward(const Tensor& a_in, const Tensor& b_in, const Tensor& out) {
  Tensor ad = a_in.detach(), bd = b_in.detach();
  bool na = a_in.requires_grad(), nb = b_in.requires_grad();
  record("MatmulBackward", {a_in, b_in}, {out}, [ad, bd, na, nb](const std::vector<Tensor>& g) {
    // Work in the promoted shapes, then reduce broadcast batch dims and squeeze back.
    Tensor a = ad, b = bd, go = g[0];
    if (a.dim() == 1) {
      a = a.unsqueeze(0);
      go = go.unsqueeze(go.dim() - (bd.dim() == 1 ? 0 : 1));
    }
    if (b.dim() == 1) {
      b = b.unsqueeze(1);
      go = go.unsqueeze(go.dim());
    }
    Tensor ga, gb;
    if (na) ga = sum_to(matmul(go, b.transpose(-1, -2)), a.shape()).reshape(ad.shape());
    if (nb) gb = sum_to(matmul(a.transpose(-1, -2), go), b.shape()).reshape(bd.shape());
    return std::vector<Tensor>{ga, gb};
  });
}

}  // namespace

Tensor matmul(const Tensor& a_in, const Tensor& b_in) {
  if (autocast_applies({&a_in, &b_in})) {
    const DType lo = autocast_dtype();
    return matmul(a_in.to(lo), b_in.to(lo)).to(DType::kF32);
  }
  check_same_device("matmul", {&a_in, &b_in});
  check_same_dtype("matmul", {&a_in, &b_in});
  TANDEM_CHECK_SHAPE(a_in.dim() >= 1 && b_in.dim() >= 1,
                     "matmul: both operands need at least 1 "
                     "dimension, got ",
                     shape_str(a_in.shape()), " and ", shape_str(b_in.shape()));
  // Promote vectors to matrices, as torch.matmul does, and undo it at the end.
  Tensor a = a_in.detach(), b = b_in.detach();
  const bool squeeze_row = a.dim() == 1, squeeze_col = b.dim() == 1;
  if (squeeze_row) a = a.unsqueeze(0);
  if (squeeze_col) b = b.unsqueeze(1);
  const int64_t k = a.shape()[a.dim() - 1], k2 = b.shape()[b.dim() - 2];
  TANDEM_CHECK_SHAPE(k == k2, "matmul: shapes ", shape_str(a_in.shape()), " and ",
                     shape_str(b_in.shape()), " cannot be multiplied (", k, " != ", k2, ")");
  Tensor out = broadcast_product(a, b);
  Shape out_shape = out.shape();
  if (squeeze_row) out_shape.erase(out_shape.end() - 2);
  if (squeeze_col) out_shape.erase(out_shape.end() - 1);
  out = out.view(out_shape);
  record_matmul_backward(a_in, b_in, out);
  return out;
}

namespace {

// linear under autocast: as 2-D products in the low dtype (their backward needs no reduction in
// it), the bias added in f32.
Tensor linear_autocast(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  const DType lo = autocast_dtype();
  Shape os = x.shape();
  os.back() = weight.shape()[0];
  Tensor y = matmul(x.reshape({-1, weight.shape()[1]}).to(lo), weight.to(lo).t())
                 .to(DType::kF32)
                 .reshape(os);
  return bias.defined() ? add(y, bias) : y;
}

// Records linear's backward; x2 is x as rows (x2 @ weight^T + bias = out).
void record_linear_backward(const Tensor& x, const Tensor& x2, const Tensor& weight,
                            const Tensor& bias, const Tensor& out) {
  const int64_t outf = weight.shape()[0];
  Tensor xd = x2, wd = weight.detach();
  bool nx = x.requires_grad(), nw = weight.requires_grad(),
       nbias = bias.defined() && bias.requires_grad();
  Shape xs = x.shape();
  std::vector<Tensor> inputs{x, weight};
  if (bias.defined()) inputs.push_back(bias);
  // A weight that is a leaf may have its gradient computed straight into DDP's bucket.
  std::weak_ptr<TensorImpl> wleaf;
  if (weight.is_leaf()) wleaf = weight.impl_shared();
  record("LinearBackward", inputs, {out},
         [xd, wd, nx, nw, nbias, xs, outf, wleaf](const std::vector<Tensor>& g) {
           Tensor g2 = g[0].reshape({-1, outf});
           std::vector<Tensor> r(3);
           if (nx) r[0] = mm(g2, wd).view(xs);
           if (nw) {
             Tensor dst = claim_grad_destination(wleaf);
             if (dst.defined()) {
               mm_into(g2.t(), xd, dst, 0.0);
               r[1] = dst;
             } else {
               r[1] = mm(g2.t(), xd);
             }
           }
           if (nbias) r[2] = sum(g2, {0});
           return r;
         });
}

}  // namespace

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  if (autocast_applies({&x, &weight, &bias}) && x.dim() >= 1 && weight.dim() == 2 &&
      x.shape().back() == weight.shape()[1])
    return linear_autocast(x, weight, bias);
  check_same_device("linear", {&x, &weight, &bias});
  check_same_dtype("linear", {&x, &weight, &bias});
  TANDEM_CHECK_SHAPE(x.dim() >= 1 && weight.dim() == 2 && x.shape().back() == weight.shape()[1],
                     "linear: input ", shape_str(x.shape()), " does not match weight ",
                     shape_str(weight.shape()), " (expected last dim ",
                     weight.dim() == 2 ? weight.shape()[1] : -1, ")");
  const int64_t in = weight.shape()[1], outf = weight.shape()[0];
  TANDEM_CHECK_SHAPE(!bias.defined() || (bias.dim() == 1 && bias.shape()[0] == outf),
                     "linear: bias ", bias.defined() ? shape_str(bias.shape()) : "",
                     " does not match ", outf, " outputs");
  Tensor x2 = x.detach().reshape({-1, in});
  const int64_t rows = x2.shape()[0];
  Tensor out = empty({rows, outf}, x.dtype(), x.device());
  double beta = 0.0;
  if (bias.defined() && x.is_cuda()) {
    out.copy_(bias.detach());  // broadcast over the rows
    beta = 1.0;
  } else if (bias.defined()) {
    // Fold the bias into the GEMM: start from the bias in every row and accumulate (beta = 1).
    TANDEM_DISPATCH_FLOAT(x.dtype(), "linear", [&] {
      Tensor bc = bias.detach().contiguous();
      const scalar_t* pb = bc.data<scalar_t>();
      scalar_t* po = out.data<scalar_t>();
      for (int64_t r = 0; r < rows; ++r) std::copy(pb, pb + outf, po + r * outf);
    });
    beta = 1.0;
  }
  mm_into(x2, weight.detach().t(), out, beta);
  Shape os = x.shape();
  os.back() = outf;
  out = out.view(os);
  record_linear_backward(x, x2, weight, bias, out);
  return out;
}

}  // namespace tandem
