// conv2d through oneDNN (see conv_dnnl.h). Per problem, a Plan holds the primitives: forward
// (forward_training, created on first use), backward-data and backward-weights (each created the
// first time a gradient asks for it), and the reorders between tandem's NCHW / OIHW tensors and
// the blocked layouts (nChw16c, OIhw16i16o, ...) oneDNN picks when asked for `any`. Blocked
// layouts with their reorders counted beat oneDNN on plain NCHW, where it falls back to its own
// im2col + GEMM: one training step at 1 thread, simple_cnn conv2 12.5 vs 20.3 ms, resnet18 layer1
// 31.9 vs 62.1 ms (benchmarks/conv_backends.cc with kBlockedLayouts flipped). Plain was ahead only
// on the stride-1 1x1 256->64 (18.9 vs 24.5 ms), a shape conv.h sends to oneDNN only when
// OpenBLAS runs its AVX2 kernels.
//
// Threads: libdnnl's OpenMP build splits a primitive's work for omp_get_max_threads() threads when
// the primitive is created, and at execution runs that split on the team it opens -- or, inside an
// active parallel region, runs f(0, 1) only, which for the backward-weights kernels is thread 0's
// share of the work. So a Plan is made for one thread count (tandem's num_threads(), or 1 inside a
// parallel region), the count is part of the cache key, and the calling thread's OpenMP thread
// count is set to it while a plan is created or executed.
#include "core/ops/conv_dnnl.h"

#include <omp.h>

#include <array>
#include <list>
#include <memory>
#include <mutex>
#include <oneapi/dnnl/dnnl.hpp>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/base/error.h"
#include "core/parallel/parallel.h"
#include "core/tensor/tensor.h"

namespace tandem::onednn {
namespace {

using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;
using Args = std::unordered_map<int, dnnl::memory>;

// 64 problems: a ResNet-50 has 23 distinct conv shapes, so a model's training and evaluation
// batch sizes, or two thread counts, fit without evicting each other.
constexpr size_t kCacheCapacity = 64;

// Blocked layouts chosen by oneDNN (`any`) plus reorders, rather than plain NCHW/OIHW descs.
constexpr bool kBlockedLayouts = true;

// One engine per process; one stream per thread, so concurrent callers (mirrored replicas) never
// share a stream object. CPU streams are in-order and execution is synchronous.
const dnnl::engine& engine() {
  static const dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}
dnnl::stream& stream() {
  thread_local dnnl::stream s(engine());
  return s;
}

// Sets the calling thread's OpenMP thread count (what oneDNN reads as its max threads) for a scope.
class ScopedOmpThreads {
 public:
  explicit ScopedOmpThreads(int n) : saved_(omp_get_max_threads()) {
    if (n != saved_) omp_set_num_threads(n);
  }
  ~ScopedOmpThreads() {
    if (omp_get_max_threads() != saved_) omp_set_num_threads(saved_);
  }

 private:
  int saved_;
};

int plan_threads() {
  return omp_in_parallel() ? 1 : num_threads();
}

// A reorder between tandem's layout and a primitive's, or nothing when the two are the same.
struct Reorder {
  bool needed = false;
  dnnl::memory::desc prim_md;  // the primitive's side
  dnnl::reorder::primitive_desc pd;
  dnnl::reorder prim;
};

dnnl::primitive_attr user_scratchpad() {
  dnnl::primitive_attr a;
  a.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return a;
}

Reorder make_reorder(const dnnl::memory::desc& from, const dnnl::memory::desc& to,
                     const dnnl::memory::desc& prim_md) {
  Reorder r;
  r.prim_md = prim_md;
  if (from != to) {
    r.needed = true;
    r.pd = dnnl::reorder::primitive_desc(engine(), from, engine(), to, user_scratchpad());
    r.prim = dnnl::reorder(r.pd);
  }
  return r;
}
Reorder reorder_in(const dnnl::memory::desc& user, const dnnl::memory::desc& prim) {
  return make_reorder(user, prim, prim);
}
Reorder reorder_out(const dnnl::memory::desc& prim, const dnnl::memory::desc& user) {
  return make_reorder(prim, user, prim);
}

struct Plan {
  dnnl::memory::desc x_md, w_md, b_md, y_md;  // tandem's layouts
  dnnl::memory::desc x_any, w_any, y_any;     // what the primitives are asked for
  dnnl::memory::dims strides, dilates, pad_l, pad_r;

  dnnl::convolution_forward::primitive_desc fwd_pd;
  dnnl::convolution_forward fwd;
  Reorder fwd_x, fwd_w, fwd_y;

  std::once_flag data_once;  // guards the backward-data members below
  dnnl::convolution_backward_data::primitive_desc data_pd;
  dnnl::convolution_backward_data data;
  Reorder data_gy, data_w, data_gx;

  std::once_flag weights_once;  // guards the backward-weights members below
  dnnl::convolution_backward_weights::primitive_desc weights_pd;
  dnnl::convolution_backward_weights weights;
  Reorder weights_x, weights_gy, weights_gw;
};

std::shared_ptr<Plan> make_plan(const ConvProblem& p) {
  const ConvGeometry& g = p.geo;
  auto plan = std::make_shared<Plan>();
  Plan& pl = *plan;
  const dnnl::memory::dims x_dims{p.batch, g.channels, g.height, g.width},
      y_dims{p.batch, p.out_channels, g.out_h, g.out_w};
  // Grouped weights (O, C/G, kh, kw) are the same bytes as goihw (G, O/G, C/G, kh, kw).
  const dnnl::memory::dims w_dims =
      p.groups == 1 ? dnnl::memory::dims{p.out_channels, g.channels, g.kernel_h, g.kernel_w}
                    : dnnl::memory::dims{p.groups, p.out_channels / p.groups, g.channels / p.groups,
                                         g.kernel_h, g.kernel_w};
  pl.x_md = dnnl::memory::desc(x_dims, dt::f32, tag::nchw);
  pl.y_md = dnnl::memory::desc(y_dims, dt::f32, tag::nchw);
  pl.w_md = dnnl::memory::desc(w_dims, dt::f32, p.groups == 1 ? tag::oihw : tag::goihw);
  pl.b_md = dnnl::memory::desc({p.out_channels}, dt::f32, tag::x);
  pl.x_any = kBlockedLayouts ? dnnl::memory::desc(x_dims, dt::f32, tag::any) : pl.x_md;
  pl.y_any = kBlockedLayouts ? dnnl::memory::desc(y_dims, dt::f32, tag::any) : pl.y_md;
  pl.w_any = kBlockedLayouts ? dnnl::memory::desc(w_dims, dt::f32, tag::any) : pl.w_md;
  pl.strides = {g.stride_h, g.stride_w};
  pl.dilates = {g.dilation_h - 1, g.dilation_w - 1};  // oneDNN counts the gaps
  pl.pad_l = {g.pad_h, g.pad_w};
  // oneDNN checks out = (in + pad_l + pad_r - dilated kernel) / stride + 1 with floor division,
  // tandem's formula with pad_r = pad_l; the rows the stride skips are never read.
  pl.pad_r = pl.pad_l;
  const auto prop = dnnl::prop_kind::forward_training;
  const auto alg = dnnl::algorithm::convolution_direct;  // not Winograd: it rounds differently
  auto desc =
      p.bias ? dnnl::convolution_forward::desc(prop, alg, pl.x_any, pl.w_any, pl.b_md, pl.y_any,
                                               pl.strides, pl.dilates, pl.pad_l, pl.pad_r)
             : dnnl::convolution_forward::desc(prop, alg, pl.x_any, pl.w_any, pl.y_any, pl.strides,
                                               pl.dilates, pl.pad_l, pl.pad_r);
  pl.fwd_pd = dnnl::convolution_forward::primitive_desc(desc, user_scratchpad(), engine());
  pl.fwd = dnnl::convolution_forward(pl.fwd_pd);
  pl.fwd_x = reorder_in(pl.x_md, pl.fwd_pd.src_desc());
  pl.fwd_w = reorder_in(pl.w_md, pl.fwd_pd.weights_desc());
  pl.fwd_y = reorder_out(pl.fwd_pd.dst_desc(), pl.y_md);
  return plan;
}

void init_backward_data(Plan& pl) {
  const auto alg = dnnl::algorithm::convolution_direct;
  dnnl::convolution_backward_data::desc desc(alg, pl.x_any, pl.w_any, pl.y_any, pl.strides,
                                             pl.dilates, pl.pad_l, pl.pad_r);
  pl.data_pd =
      dnnl::convolution_backward_data::primitive_desc(desc, user_scratchpad(), engine(), pl.fwd_pd);
  pl.data = dnnl::convolution_backward_data(pl.data_pd);
  pl.data_gy = reorder_in(pl.y_md, pl.data_pd.diff_dst_desc());
  pl.data_w = reorder_in(pl.w_md, pl.data_pd.weights_desc());
  pl.data_gx = reorder_out(pl.data_pd.diff_src_desc(), pl.x_md);
}

void init_backward_weights(Plan& pl, bool bias) {
  const auto alg = dnnl::algorithm::convolution_direct;
  auto desc =
      bias ? dnnl::convolution_backward_weights::desc(alg, pl.x_any, pl.w_any, pl.b_md, pl.y_any,
                                                      pl.strides, pl.dilates, pl.pad_l, pl.pad_r)
           : dnnl::convolution_backward_weights::desc(alg, pl.x_any, pl.w_any, pl.y_any, pl.strides,
                                                      pl.dilates, pl.pad_l, pl.pad_r);
  pl.weights_pd = dnnl::convolution_backward_weights::primitive_desc(desc, user_scratchpad(),
                                                                     engine(), pl.fwd_pd);
  pl.weights = dnnl::convolution_backward_weights(pl.weights_pd);
  pl.weights_x = reorder_in(pl.x_md, pl.weights_pd.src_desc());
  pl.weights_gy = reorder_in(pl.y_md, pl.weights_pd.diff_dst_desc());
  pl.weights_gw = reorder_out(pl.weights_pd.diff_weights_desc(), pl.w_md);
}

// ---------------------------------------------------------------- the plan cache

using Key = std::array<int64_t, 16>;

Key key_of(const ConvProblem& p, int threads) {
  const ConvGeometry& g = p.geo;
  return {p.batch,      g.channels, g.height,   g.width, p.out_channels, g.kernel_h,
          g.kernel_w,   g.stride_h, g.stride_w, g.pad_h, g.pad_w,        g.dilation_h,
          g.dilation_w, p.groups,   p.bias,     threads};
}

struct PlanCache {
  std::mutex mu;
  std::list<std::pair<Key, std::shared_ptr<Plan>>> lru;  // guarded by mu; most recent first
};

PlanCache& plan_cache() {
  static PlanCache c;
  return c;
}

// The plan for p at `threads` threads (the caller has set the OpenMP thread count to it). Plans
// are created under the lock: two replicas asking for the same new shape build it once.
std::shared_ptr<Plan> get_plan(const ConvProblem& p, int threads) {
  const Key key = key_of(p, threads);
  PlanCache& c = plan_cache();
  std::lock_guard<std::mutex> lock(c.mu);
  for (auto it = c.lru.begin(); it != c.lru.end(); ++it) {
    if (it->first == key) {
      c.lru.splice(c.lru.begin(), c.lru, it);
      return it->second;
    }
  }
  c.lru.emplace_front(key, make_plan(p));
  if (c.lru.size() > kCacheCapacity) c.lru.pop_back();  // a caller may still hold it
  return c.lru.front().second;
}

// ---------------------------------------------------------------- execution

// Buffers live in `hold` until the call has waited on its stream.
struct Buffers {
  std::vector<Tensor> hold;
  void* get(const dnnl::memory::desc& md) {
    const int64_t floats =
        static_cast<int64_t>((md.get_size() + sizeof(float) - 1) / sizeof(float));
    hold.push_back(empty({floats}));
    return hold.back().data<float>();
  }
};

void run(const dnnl::primitive& prim, const dnnl::memory::desc& scratchpad, Args args,
         Buffers& buf) {
  if (scratchpad.get_size() > 0)
    args.emplace(DNNL_ARG_SCRATCHPAD, dnnl::memory(scratchpad, engine(), buf.get(scratchpad)));
  prim.execute(stream(), args);
}

// An input in the primitive's layout: tandem's buffer itself, or a reordered copy.
dnnl::memory input(const Reorder& r, const dnnl::memory::desc& user_md, const float* data,
                   Buffers& buf) {
  dnnl::memory user(user_md, engine(), const_cast<float*>(data));
  if (!r.needed) return user;
  dnnl::memory m(r.prim_md, engine(), buf.get(r.prim_md));
  run(r.prim, r.pd.scratchpad_desc(), {{DNNL_ARG_FROM, user}, {DNNL_ARG_TO, m}}, buf);
  return m;
}

// Where the primitive writes an output: tandem's buffer itself, or a temporary that
// finish_output reorders into it.
dnnl::memory output(const Reorder& r, const dnnl::memory::desc& user_md, float* data,
                    Buffers& buf) {
  if (!r.needed) return dnnl::memory(user_md, engine(), data);
  return dnnl::memory(r.prim_md, engine(), buf.get(r.prim_md));
}
void finish_output(const Reorder& r, const dnnl::memory& m, const dnnl::memory::desc& user_md,
                   float* data, Buffers& buf) {
  if (!r.needed) return;
  run(r.prim, r.pd.scratchpad_desc(),
      {{DNNL_ARG_FROM, m}, {DNNL_ARG_TO, dnnl::memory(user_md, engine(), data)}}, buf);
}

std::string problem_str(const ConvProblem& p) {
  const ConvGeometry& g = p.geo;
  return str("input [", p.batch, ", ", g.channels, ", ", g.height, ", ", g.width, "], ",
             p.out_channels, " output channels, kernel ", g.kernel_h, "x", g.kernel_w, ", stride (",
             g.stride_h, ", ", g.stride_w, "), padding (", g.pad_h, ", ", g.pad_w, "), dilation (",
             g.dilation_h, ", ", g.dilation_w, "), groups ", p.groups,
             p.bias ? ", bias" : ", no bias");
}

// Runs fn with the OpenMP thread count the plan is made for; a oneDNN failure becomes an Error
// naming the step, the problem and oneDNN's status.
template <typename F>
void with_plan(const char* step, const ConvProblem& p, F fn) {
  const int threads = plan_threads();
  ScopedOmpThreads scoped(threads);
  try {
    std::shared_ptr<Plan> plan = get_plan(p, threads);
    fn(*plan);
  } catch (const dnnl::error& e) {
    throw Error(str("conv2d (oneDNN ", step, "): ", e.what(), " (status ", e.status, ") for ",
                    problem_str(p), " (", __FILE__, ":", __LINE__, ")"));
  }
}

}  // namespace

void conv_forward(const ConvProblem& p, const float* x, const float* weight, const float* bias,
                  float* out) {
  with_plan("forward", p, [&](Plan& pl) {
    Buffers buf;
    Args args{{DNNL_ARG_SRC, input(pl.fwd_x, pl.x_md, x, buf)},
              {DNNL_ARG_WEIGHTS, input(pl.fwd_w, pl.w_md, weight, buf)}};
    if (p.bias)
      args.emplace(DNNL_ARG_BIAS, dnnl::memory(pl.b_md, engine(), const_cast<float*>(bias)));
    dnnl::memory y = output(pl.fwd_y, pl.y_md, out, buf);
    args.emplace(DNNL_ARG_DST, y);
    run(pl.fwd, pl.fwd_pd.scratchpad_desc(), std::move(args), buf);
    finish_output(pl.fwd_y, y, pl.y_md, out, buf);
    stream().wait();
  });
}

void conv_backward_data(const ConvProblem& p, const float* weight, const float* grad_out,
                        float* grad_x) {
  with_plan("backward data", p, [&](Plan& pl) {
    std::call_once(pl.data_once, [&] { init_backward_data(pl); });
    Buffers buf;
    dnnl::memory gx = output(pl.data_gx, pl.x_md, grad_x, buf);
    run(pl.data, pl.data_pd.scratchpad_desc(),
        {{DNNL_ARG_DIFF_DST, input(pl.data_gy, pl.y_md, grad_out, buf)},
         {DNNL_ARG_WEIGHTS, input(pl.data_w, pl.w_md, weight, buf)},
         {DNNL_ARG_DIFF_SRC, gx}},
        buf);
    finish_output(pl.data_gx, gx, pl.x_md, grad_x, buf);
    stream().wait();
  });
}

void conv_backward_weights(const ConvProblem& p, const float* x, const float* grad_out,
                           float* grad_weight, float* grad_bias) {
  TANDEM_ASSERT(grad_bias == nullptr || p.bias, "a bias gradient for a problem without bias");
  if (grad_weight == nullptr && grad_bias == nullptr) return;
  with_plan("backward weights", p, [&](Plan& pl) {
    std::call_once(pl.weights_once, [&] { init_backward_weights(pl, p.bias); });
    Buffers buf;
    // The primitive computes both; an unwanted one goes to a temporary.
    float* gw_data = grad_weight != nullptr ? grad_weight : static_cast<float*>(buf.get(pl.w_md));
    dnnl::memory gw = output(pl.weights_gw, pl.w_md, gw_data, buf);
    Args args{{DNNL_ARG_SRC, input(pl.weights_x, pl.x_md, x, buf)},
              {DNNL_ARG_DIFF_DST, input(pl.weights_gy, pl.y_md, grad_out, buf)},
              {DNNL_ARG_DIFF_WEIGHTS, gw}};
    if (p.bias) {
      float* gb = grad_bias != nullptr ? grad_bias : static_cast<float*>(buf.get(pl.b_md));
      args.emplace(DNNL_ARG_DIFF_BIAS, dnnl::memory(pl.b_md, engine(), gb));
    }
    run(pl.weights, pl.weights_pd.scratchpad_desc(), std::move(args), buf);
    if (grad_weight != nullptr) finish_output(pl.weights_gw, gw, pl.w_md, grad_weight, buf);
    stream().wait();
  });
}

int64_t cached_problems() {
  PlanCache& c = plan_cache();
  std::lock_guard<std::mutex> lock(c.mu);
  return static_cast<int64_t>(c.lru.size());
}

std::string forward_implementation(const ConvProblem& p) {
  std::string name;
  with_plan("forward", p, [&](Plan& pl) { name = pl.fwd_pd.impl_info_str(); });
  return name;
}

}  // namespace tandem::onednn
