// Which CPU convolution backend tandem should use (docs/DESIGN.md section 2.2: convolution runs
// on the faster of im2col + GEMM and oneDNN), and what tandem's conv2d now costs. For the conv
// layers of the benchmark models it times one training step of the layer -- forward, then
// gradients of input, weight and bias -- four ways:
//   im2col   tandem::conv2d + backward forced onto im2col + GEMM (per-sample im2col + single-
//            threaded GEMMs, parallel over N)
//   batched  the alternative im2col scheme: one im2col over the whole batch and one multithreaded
//            GEMM per product (plus the NCHW <-> (C, N*HW) transposes it needs)
//   onednn   raw oneDNN forward_training + backward_data + backward_weights, formats chosen by
//            oneDNN (`any`) with every reorder from and to tandem's NCHW/OIHW tensors counted
//   default  tandem::conv2d + backward as shipped: the backend core/ops/conv.h's rule picks
//            (oneDNN through core/ops/conv_dnnl.cc, cached plans, or im2col)
// Median of --reps timed repetitions after warm-up, interleaved so machine noise hits all four.
//
// usage: conv_backends [--threads 2] [--reps 15] [--cpu-time]
// --cpu-time times process CPU instead of wall-clock: with --threads 1 on a shared, loaded machine
// it is the honest cost of each backend (wall-clock there mostly measures the other tenants).
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <string>
#include <vector>

#include <oneapi/dnnl/dnnl.hpp>

#include "core/ops/blas.h"
#include "core/ops/conv.h"
#include "core/ops/im2col.h"
#include "core/ops/ops.h"
#include "core/parallel/parallel.h"
#include "core/random/philox.h"

namespace {

using namespace tandem;

struct Layer {
  const char* name;
  int64_t n, c, h, w, o, k, stride, pad;
};

bool g_cpu_time = false;  // --cpu-time: process CPU time instead of wall-clock time

double now_ms() {
  if (g_cpu_time) {
    timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
  }
  return std::chrono::duration<double, std::milli>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// ---------------------------------------------------------------- tandem::conv2d

struct TandemConv {
  Tensor x, w, b, gout;
  Conv2dOptions opt;
  ConvBackend backend;
  const char* chosen = nullptr;  // what conv2d runs
  TandemConv(const Layer& l, Generator& gen, ConvBackend backend_) : backend(backend_) {
    x = randn({l.n, l.c, l.h, l.w}, gen).set_requires_grad(true);
    w = mul(randn({l.o, l.c, l.k, l.k}, gen), 0.1).detach().set_requires_grad(true);
    b = randn({l.o}, gen).set_requires_grad(true);
    opt.stride_h = opt.stride_w = l.stride;
    opt.pad_h = opt.pad_w = l.pad;
    ScopedConvBackend scoped(backend);
    chosen = conv2d_backend_for(x, w, opt);
    Tensor out = conv2d(x.detach(), w.detach(), b.detach(), opt);
    gout = randn(out.shape(), gen);
  }
  void step() {
    ScopedConvBackend scoped(backend);
    x.set_grad(Tensor());
    w.set_grad(Tensor());
    b.set_grad(Tensor());
    conv2d(x, w, b, opt).backward(gout);
  }
};

// ---------------------------------------------------------------- batch-wide im2col + GEMM

struct BatchedConv {
  ConvGeometry g;
  int64_t n, o;
  Tensor x, w, b, gout, cols, out_t, out, gout_t, gx, gw, gb;
  BatchedConv(const Layer& l, Generator& gen) : n(l.n), o(l.o) {
    g.channels = l.c;
    g.height = l.h;
    g.width = l.w;
    g.kernel_h = g.kernel_w = l.k;
    g.stride_h = g.stride_w = l.stride;
    g.pad_h = g.pad_w = l.pad;
    g.out_h = (l.h + 2 * l.pad - l.k) / l.stride + 1;
    g.out_w = (l.w + 2 * l.pad - l.k) / l.stride + 1;
    x = randn({l.n, l.c, l.h, l.w}, gen);
    w = mul(randn({l.o, l.c * l.k * l.k}, gen), 0.1);
    b = randn({l.o}, gen);
    gout = randn({l.n, l.o, g.out_h, g.out_w}, gen);
  }
  void step() {
    const int64_t K = g.col_rows(), P = g.col_cols(), in_size = g.channels * g.height * g.width;
    cols = empty({K, n * P});
    out_t = empty({o, n * P});
    out = empty({n, o, P});
    gout_t = empty({o, n * P});
    gx = empty({n, in_size});
    gw = empty({o, K});
    gb = empty({o});
    float* pc = cols.data<float>();
    const float* px = x.data<float>();
    // Columns of the whole batch side by side: sample s owns columns [s * P, (s + 1) * P).
    parallel_for(0, n, 1, [&](int64_t s0, int64_t s1) {
      Tensor one = empty({K, P});
      for (int64_t s = s0; s < s1; ++s) {
        im2col(px + s * in_size, g, one.data<float>());
        for (int64_t r = 0; r < K; ++r)
          std::memcpy(pc + r * n * P + s * P, one.data<float>() + r * P, P * sizeof(float));
      }
    });
    gemm(false, false, o, n * P, K, 1.f, w.data<float>(), K, pc, n * P, 0.f, out_t.data<float>(),
         n * P);
    // (O, N*P) -> (N, O, P) with the bias; gout (N, O, P) -> (O, N*P).
    const float* pot = out_t.data<float>();
    float* po = out.data<float>();
    const float* pg = gout.data<float>();
    float* pgt = gout_t.data<float>();
    const float* pb = b.data<float>();
    parallel_for(0, n, 1, [&](int64_t s0, int64_t s1) {
      for (int64_t s = s0; s < s1; ++s)
        for (int64_t c = 0; c < o; ++c) {
          for (int64_t p = 0; p < P; ++p)
            po[(s * o + c) * P + p] = pot[c * n * P + s * P + p] + pb[c];
          std::memcpy(pgt + c * n * P + s * P, pg + (s * o + c) * P, P * sizeof(float));
        }
    });
    gemm(false, true, o, K, n * P, 1.f, pgt, n * P, pc, n * P, 0.f, gw.data<float>(), K);
    float* pgb = gb.data<float>();
    for (int64_t c = 0; c < o; ++c) {
      double acc = 0;
      for (int64_t j = 0; j < n * P; ++j) acc += pgt[c * n * P + j];
      pgb[c] = static_cast<float>(acc);
    }
    gemm(true, false, K, n * P, o, 1.f, w.data<float>(), K, pgt, n * P, 0.f, pc, n * P);
    float* pgx = gx.data<float>();
    parallel_for(0, n, 1, [&](int64_t s0, int64_t s1) {
      Tensor one = empty({K, P});
      for (int64_t s = s0; s < s1; ++s) {
        for (int64_t r = 0; r < K; ++r)
          std::memcpy(one.data<float>() + r * P, pc + r * n * P + s * P, P * sizeof(float));
        std::fill(pgx + s * in_size, pgx + (s + 1) * in_size, 0.f);
        col2im_add(one.data<float>(), g, pgx + s * in_size);
      }
    });
  }
};

// ---------------------------------------------------------------- oneDNN

struct OnednnConv {
  using tag = dnnl::memory::format_tag;
  using dt = dnnl::memory::data_type;
  dnnl::engine eng{dnnl::engine::kind::cpu, 0};
  dnnl::stream strm{eng};
  // User (tandem-layout) memories.
  dnnl::memory src, wei, bias, dst, diff_dst, diff_src, diff_wei, diff_bias;
  // Primitive-layout memories, and the reorders between the two.
  struct Pair {
    dnnl::memory mem;
    bool needs_reorder = false;
  };
  Pair p_src, p_wei, p_dst, p_diff_dst_bd, p_diff_dst_bw, p_wei_bd, p_src_bw, p_diff_src,
      p_diff_wei;
  dnnl::convolution_forward fwd;
  dnnl::convolution_backward_data bwd_data;
  dnnl::convolution_backward_weights bwd_weights;

  static Pair prim_mem(const dnnl::memory::desc& want, const dnnl::memory& user,
                       const dnnl::engine& e) {
    if (want == user.get_desc()) return {user, false};
    return {dnnl::memory(want, e), true};
  }
  // Reorders are created per call, as an integration that caches nothing but primitives would.
  void to_prim(dnnl::memory& user, Pair& p) {
    if (p.needs_reorder) dnnl::reorder(user, p.mem).execute(strm, user, p.mem);
  }
  void from_prim(Pair& p, dnnl::memory& user) {
    if (p.needs_reorder) dnnl::reorder(p.mem, user).execute(strm, p.mem, user);
  }

  OnednnConv(const Layer& l, Generator& gen) {
    const int64_t oh = (l.h + 2 * l.pad - l.k) / l.stride + 1,
                  ow = (l.w + 2 * l.pad - l.k) / l.stride + 1;
    dnnl::memory::dims src_d{l.n, l.c, l.h, l.w}, wei_d{l.o, l.c, l.k, l.k}, bias_d{l.o},
        dst_d{l.n, l.o, oh, ow}, strides{l.stride, l.stride}, dil{0, 0}, pad{l.pad, l.pad};
    auto user = [&](const dnnl::memory::dims& d, tag t) {
      dnnl::memory m({d, dt::f32, t}, eng);
      Tensor v = randn({shape_numel(Shape(d.begin(), d.end()))}, gen);
      std::memcpy(m.get_data_handle(), v.data<float>(), v.numel() * sizeof(float));
      return m;
    };
    src = user(src_d, tag::nchw);
    wei = user(wei_d, tag::oihw);
    bias = user(bias_d, tag::x);
    dst = user(dst_d, tag::nchw);
    diff_dst = user(dst_d, tag::nchw);
    diff_src = user(src_d, tag::nchw);
    diff_wei = user(wei_d, tag::oihw);
    diff_bias = user(bias_d, tag::x);
    dnnl::memory::desc src_any(src_d, dt::f32, tag::any), wei_any(wei_d, dt::f32, tag::any),
        dst_any(dst_d, dt::f32, tag::any), bias_md(bias_d, dt::f32, tag::x);
    dnnl::convolution_forward::primitive_desc fwd_pd(
        dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training,
                                        dnnl::algorithm::convolution_direct, src_any, wei_any,
                                        bias_md, dst_any, strides, dil, pad, pad),
        eng);
    dnnl::convolution_backward_data::primitive_desc bd_pd(
        dnnl::convolution_backward_data::desc(dnnl::algorithm::convolution_direct, src_any, wei_any,
                                              dst_any, strides, dil, pad, pad),
        eng, fwd_pd);
    dnnl::convolution_backward_weights::primitive_desc bw_pd(
        dnnl::convolution_backward_weights::desc(dnnl::algorithm::convolution_direct, src_any,
                                                 wei_any, bias_md, dst_any, strides, dil, pad, pad),
        eng, fwd_pd);
    fwd = dnnl::convolution_forward(fwd_pd);
    bwd_data = dnnl::convolution_backward_data(bd_pd);
    bwd_weights = dnnl::convolution_backward_weights(bw_pd);
    p_src = prim_mem(fwd_pd.src_desc(), src, eng);
    p_wei = prim_mem(fwd_pd.weights_desc(), wei, eng);
    p_dst = prim_mem(fwd_pd.dst_desc(), dst, eng);
    p_diff_dst_bd = prim_mem(bd_pd.diff_dst_desc(), diff_dst, eng);
    p_wei_bd = prim_mem(bd_pd.weights_desc(), wei, eng);
    p_diff_src = prim_mem(bd_pd.diff_src_desc(), diff_src, eng);
    p_diff_dst_bw = prim_mem(bw_pd.diff_dst_desc(), diff_dst, eng);
    p_src_bw = prim_mem(bw_pd.src_desc(), src, eng);
    p_diff_wei = prim_mem(bw_pd.diff_weights_desc(), diff_wei, eng);
  }
  void step() {
    to_prim(src, p_src);
    to_prim(wei, p_wei);
    fwd.execute(strm, {{DNNL_ARG_SRC, p_src.mem},
                       {DNNL_ARG_WEIGHTS, p_wei.mem},
                       {DNNL_ARG_BIAS, bias},
                       {DNNL_ARG_DST, p_dst.mem}});
    from_prim(p_dst, dst);
    to_prim(diff_dst, p_diff_dst_bd);
    to_prim(wei, p_wei_bd);
    bwd_data.execute(strm, {{DNNL_ARG_DIFF_DST, p_diff_dst_bd.mem},
                            {DNNL_ARG_WEIGHTS, p_wei_bd.mem},
                            {DNNL_ARG_DIFF_SRC, p_diff_src.mem}});
    from_prim(p_diff_src, diff_src);
    to_prim(diff_dst, p_diff_dst_bw);
    to_prim(src, p_src_bw);
    bwd_weights.execute(strm, {{DNNL_ARG_SRC, p_src_bw.mem},
                               {DNNL_ARG_DIFF_DST, p_diff_dst_bw.mem},
                               {DNNL_ARG_DIFF_WEIGHTS, p_diff_wei.mem},
                               {DNNL_ARG_DIFF_BIAS, diff_bias}});
    from_prim(p_diff_wei, diff_wei);
    strm.wait();
  }
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 2, reps = 15;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--threads") && i + 1 < argc)
      threads = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--reps") && i + 1 < argc)
      reps = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--cpu-time"))
      g_cpu_time = true;
    else {
      std::fprintf(stderr, "usage: conv_backends [--threads T] [--reps R] [--cpu-time]\n");
      return 2;
    }
  }
  set_num_threads(threads);
  omp_set_num_threads(threads);
  const std::vector<Layer> layers = {
      {"simple_cnn conv1 3->32 3x3 32x32", 64, 3, 32, 32, 32, 3, 1, 1},
      {"simple_cnn conv2 32->64 3x3 16x16", 64, 32, 16, 16, 64, 3, 1, 1},
      {"lenet conv1 1->32 5x5 28x28", 64, 1, 28, 28, 32, 5, 1, 2},
      {"lenet conv2 32->64 5x5 14x14", 64, 32, 14, 14, 64, 5, 1, 2},
      {"resnet18 layer1 64->64 3x3 56x56", 8, 64, 56, 56, 64, 3, 1, 1},
      {"resnet18 layer2 128->128 3x3 28x28", 8, 128, 28, 28, 128, 3, 1, 1},
      {"resnet stem 3->64 7x7/2 224x224", 8, 3, 224, 224, 64, 7, 2, 3},
      {"resnet50 1x1 256->64 56x56", 8, 256, 56, 56, 64, 1, 1, 0},
      {"resnet 1x1/2 64->128 56x56", 8, 64, 56, 56, 128, 1, 2, 0},
      // Where the rule's threshold sits: the same layer with 8 and 16 input channels.
      {"sweep 4->64 3x3 16x16", 64, 4, 16, 16, 64, 3, 1, 1},
      {"sweep 8->64 3x3 16x16", 64, 8, 16, 16, 64, 3, 1, 1},
      {"sweep 16->64 3x3 16x16", 64, 16, 16, 16, 64, 3, 1, 1},
  };
  std::printf(
      "conv fwd+bwd (grad input, weight, bias), f32, %d threads, median of %d reps, ms of %s\n",
      threads, reps, g_cpu_time ? "process CPU time" : "wall-clock time");
  std::printf("%-36s %5s %17s %17s %17s %17s %-7s %14s\n", "layer", "batch", "im2col med (min)",
              "batched med (min)", "onednn med (min)", "default med (min)", "picks",
              "im2col/default");
  for (const Layer& l : layers) {
    Generator gen(1);
    TandemConv im(l, gen, ConvBackend::kIm2col);
    BatchedConv bc(l, gen);
    OnednnConv d(l, gen);
    TandemConv def(l, gen, ConvBackend::kAuto);
    std::vector<std::function<void()>> steps{[&] { im.step(); }, [&] { bc.step(); },
                                             [&] { d.step(); }, [&] { def.step(); }};
    std::vector<std::vector<double>> times(steps.size());
    for (int r = 0; r < reps + 3; ++r)
      for (size_t i = 0; i < steps.size(); ++i) {
        double t0 = now_ms();
        steps[i]();
        if (r >= 3) times[i].push_back(now_ms() - t0);
      }
    std::printf("%-36s %5lld", l.name, static_cast<long long>(l.n));
    for (const auto& t : times)
      std::printf(" %8.2f (%6.2f)", median(t), *std::min_element(t.begin(), t.end()));
    std::printf(" %-7s %13.2fx\n", def.chosen, median(times[0]) / median(times[3]));
  }
  std::printf(
      "im2col/default = the im2col path's median time over tandem's default: > 1 means the "
      "default is faster\n");
  return 0;
}
