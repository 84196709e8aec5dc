// Optimizers, schedules and clipping against PyTorch: SGD/Adam/AdamW train the same least-squares
// problem for 10 steps on both sides, schedules give the learning rates of torch's schedulers, and
// clip_grad_norm matches clip_grad_norm_. State export/import resumes bit for bit.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <memory>
#include <string>

#include "core/io/safetensors.h"
#include "core/ops/ops.h"
#include "core/optim/adam.h"
#include "core/optim/clip.h"
#include "core/optim/schedule.h"
#include "core/optim/sgd.h"
#include "core/parallel/parallel.h"
#include "core/random/philox.h"
#include "tests/support/test_support.h"

namespace tandem {
namespace {

using testing::expect_close;
using testing::max_rel_error;
using testing::run_torch;

constexpr int kSteps = 10;

// A double as JSON with every digit (str() streams only 6 significant digits).
std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

// loss = mean((x @ w^T + b - y)^2) with x (8, 4), w (5, 4), b (5), y (8, 5); f64 originals.
struct Problem {
  Tensor x, y, w, b;
};

Problem make_problem() {
  Generator gen(1234);
  return {randn({8, 4}, gen, DType::kF64), randn({8, 5}, gen, DType::kF64),
          randn({5, 4}, gen, DType::kF64), randn({5}, gen, DType::kF64)};
}

using MakeOptimizer = std::function<std::unique_ptr<Optimizer>(NamedTensors)>;

struct TrainRun {
  std::string label;
  std::string optimizer;     // torch's name
  std::string options_json;  // torch's keyword arguments
  MakeOptimizer make;
  int bias_grad_none_steps = 0;  // drop the bias grad for the first steps (the optimizer skips it)
  bool transposed_weight = false;  // tandem's weight is a non-contiguous view
};

// Fresh leaf parameters holding the problem's initial values in dtype.
NamedTensors make_params(const Problem& pb, DType dt, bool transposed_weight = false) {
  // .to() of the same dtype returns the tensor itself: clone so that runs never share parameters.
  Tensor w =
      transposed_weight ? pb.w.t().contiguous().to(dt).t().detach() : pb.w.to(dt).clone().detach();
  Tensor b = pb.b.to(dt).clone().detach();
  w.set_requires_grad(true);
  b.set_requires_grad(true);
  return {{"fc.weight", w}, {"fc.bias", b}};
}

void compute_grads(const Problem& pb, const NamedTensors& params) {
  const Tensor& w = params[0].second;
  const Tensor& b = params[1].second;
  DType dt = w.dtype();
  Tensor r = matmul(pb.x.to(dt), w.t()) + b - pb.y.to(dt);
  mean(r * r).backward();
}

void train(const Problem& pb, Optimizer& opt, int steps, int bias_grad_none_steps = 0) {
  for (int s = 0; s < steps; ++s) {
    opt.zero_grad();
    compute_grads(pb, opt.params());
    if (s < bias_grad_none_steps) opt.params()[1].second.set_grad(Tensor());
    opt.step();
  }
}

// Trains every run in f32 and f64 with tandem and with torch (one python call) and compares.
void expect_runs_match_torch(const std::vector<TrainRun>& runs) {
  Problem pb = make_problem();
  std::string json = "{\"steps\": " + std::to_string(kSteps) + ", \"runs\": [";
  std::vector<std::pair<const TrainRun*, DType>> order;
  for (const TrainRun& run : runs) {
    for (DType dt : {DType::kF32, DType::kF64}) {
      if (!order.empty()) json += ", ";
      json += str("{\"optimizer\": \"", run.optimizer, "\", \"options\": ", run.options_json,
                  ", \"dtype\": \"", dtype_name(dt),
                  "\", \"bias_grad_none_steps\": ", run.bias_grad_none_steps, "}");
      order.emplace_back(&run, dt);
    }
  }
  json += "]}";
  auto ref = run_torch("optim_train", {{"x", pb.x}, {"y", pb.y}, {"w", pb.w}, {"b", pb.b}}, json);
  for (size_t i = 0; i < order.size(); ++i) {
    const TrainRun& run = *order[i].first;
    DType dt = order[i].second;
    SCOPED_TRACE(run.label + " in " + dtype_name(dt));
    NamedTensors params = make_params(pb, dt, run.transposed_weight);
    std::unique_ptr<Optimizer> opt = run.make(params);
    train(pb, *opt, kSteps, run.bias_grad_none_steps);
    EXPECT_EQ(opt->step_count(), kSteps);
    // 1e-6 in f32 (rounding of 10 steps); f64 leaves only summation-order differences.
    const double tol = dt == DType::kF32 ? 1e-6 : 1e-10;
    expect_close(params[0].second, ref.at(str(i, ".weight")), tol, run.label + " weight");
    expect_close(params[1].second, ref.at(str(i, ".bias")), tol, run.label + " bias");
    // The parameters really moved, so matching torch is not matching the start.
    EXPECT_GT(max_rel_error(params[0].second, pb.w.to(dt)), 1e-3);
  }
}

template <typename Opt, typename Options>
MakeOptimizer maker(Options o) {
  return [o](NamedTensors p) { return std::make_unique<Opt>(std::move(p), o); };
}

TEST(Sgd, TenStepsMatchTorchForEveryMomentumVariant) {
  TANDEM_SKIP_WITHOUT_TORCH();
  SgdOptions plain{.lr = 0.1};
  SgdOptions momentum{.lr = 0.05, .momentum = 0.9};
  SgdOptions dampened{.lr = 0.05, .momentum = 0.9, .dampening = 0.1};
  SgdOptions nesterov{.lr = 0.05, .momentum = 0.9, .nesterov = true};
  SgdOptions decay{.lr = 0.05, .momentum = 0.5, .weight_decay = 0.1};
  TrainRun transposed{"momentum, transposed weight", "sgd", R"({"lr": 0.05, "momentum": 0.9})",
                      maker<Sgd>(momentum)};
  transposed.transposed_weight = true;
  expect_runs_match_torch({
      {"plain", "sgd", R"({"lr": 0.1})", maker<Sgd>(plain)},
      {"momentum 0.9", "sgd", R"({"lr": 0.05, "momentum": 0.9})", maker<Sgd>(momentum)},
      {"dampening 0.1", "sgd", R"({"lr": 0.05, "momentum": 0.9, "dampening": 0.1})",
       maker<Sgd>(dampened)},
      {"nesterov", "sgd", R"({"lr": 0.05, "momentum": 0.9, "nesterov": true})",
       maker<Sgd>(nesterov)},
      {"weight decay", "sgd", R"({"lr": 0.05, "momentum": 0.5, "weight_decay": 0.1})",
       maker<Sgd>(decay)},
      transposed,
  });
}

TEST(Adam, TenStepsMatchTorchForAdamAndAdamW) {
  TANDEM_SKIP_WITHOUT_TORCH();
  AdamOptions adam{.lr = 0.05};
  AdamOptions adam_wd{.lr = 0.05, .beta1 = 0.8, .beta2 = 0.99, .eps = 1e-6, .weight_decay = 0.1};
  AdamOptions adamw{.lr = 0.05, .weight_decay = 0.5};
  TrainRun skipped{"adam, bias without grad for 3 steps", "adam", R"({"lr": 0.05})",
                   maker<Adam>(adam)};
  skipped.bias_grad_none_steps = 3;
  expect_runs_match_torch({
      {"adam", "adam", R"({"lr": 0.05})", maker<Adam>(adam)},
      {"adam with weight decay", "adam",
       R"({"lr": 0.05, "betas": [0.8, 0.99], "eps": 1e-6, "weight_decay": 0.1})",
       maker<Adam>(adam_wd)},
      {"adamw", "adamw", R"({"lr": 0.05, "weight_decay": 0.5})", maker<AdamW>(adamw)},
      skipped,
  });
}

TEST(Optimizer, SkipsParametersWithoutGradAndCountsStepsPerParameter) {
  Problem pb = make_problem();
  NamedTensors params = make_params(pb, DType::kF64);
  Adam opt(params, AdamOptions{.lr = 0.1});
  compute_grads(pb, params);
  params[1].second.set_grad(Tensor());
  opt.step();
  EXPECT_EQ(params[1].second.to_vector(), pb.b.to_vector());  // untouched
  EXPECT_GT(max_rel_error(params[0].second, pb.w), 1e-2);
  std::map<std::string, Tensor> state;
  for (auto& [k, t] : opt.state_dict()) state[k] = t;
  EXPECT_EQ(state.at("step").item(), 1.0);
  EXPECT_EQ(state.at("fc.weight.step").item(), 1.0);
  EXPECT_EQ(state.at("fc.bias.step").item(), 0.0);
  EXPECT_EQ(state.at("fc.bias.exp_avg").to_vector(), std::vector<double>(5, 0.0));
  // First Adam step moves every weight by lr * sign(grad) (m / sqrt(v) = g / |g| up to eps).
  Tensor moved = sub(params[0].second, pb.w);
  for (double d : moved.to_vector()) EXPECT_NEAR(std::abs(d), 0.1, 1e-6);
}

TEST(Optimizer, ZeroGradZeroesInPlaceAndKeepsBucketViews) {
  Tensor bucket = full({30}, 7.0);
  Tensor w = zeros({5, 4}), b = zeros({5});
  w.set_requires_grad(true);
  b.set_requires_grad(true);
  w.set_grad(bucket.slice(0, 0, 20).view({5, 4}));
  b.set_grad(bucket.slice(0, 20, 25));
  Tensor w_grad = w.grad();
  Sgd opt({{"w", w}, {"b", b}}, SgdOptions{.lr = 0.1});
  opt.zero_grad();
  EXPECT_TRUE(w.grad().is_same(w_grad));  // the same handle, not a new tensor
  std::vector<double> expect(30, 0.0);
  for (int i = 25; i < 30; ++i) expect[i] = 7.0;  // outside the grads: untouched
  EXPECT_EQ(bucket.to_vector(), expect);
  opt.zero_grad(/*set_to_none=*/true);
  EXPECT_FALSE(w.grad().defined());
  EXPECT_FALSE(b.grad().defined());
  EXPECT_EQ(bucket.to_vector(), expect);
}

// Parameters of several 64k-element chunks take the threaded path: every element is updated,
// and the result does not depend on the thread count.
TEST(Optimizer, FusedUpdateCoversEveryElementOfLargeParametersOnAnyThreadCount) {
  const int threads_before = num_threads();
  Generator gen(5);
  const Shape shapes[] = {{300, 700}, {70001}, {3}};
  std::vector<Tensor> p0, g;
  for (const Shape& s : shapes) {
    p0.push_back(randn(s, gen, DType::kF64));
    g.push_back(randn(s, gen, DType::kF64));
  }
  auto one_adam_step = [&](int threads) {
    set_num_threads(threads);
    NamedTensors params;
    for (size_t i = 0; i < p0.size(); ++i) {
      Tensor p = p0[i].clone();
      p.set_grad(g[i].clone());
      params.emplace_back(str("p", i), p);
    }
    Adam opt(params, AdamOptions{.lr = 0.01, .eps = 1e-12});
    opt.step();
    return params;
  };
  NamedTensors serial = one_adam_step(1), threaded = one_adam_step(2);
  set_num_threads(threads_before);
  for (size_t i = 0; i < p0.size(); ++i) {
    EXPECT_EQ(serial[i].second.to_vector(), threaded[i].second.to_vector()) << serial[i].first;
    // Adam's first step moves each element by lr against the sign of its grad.
    std::vector<double> before = p0[i].to_vector(), after = threaded[i].second.to_vector(),
                        grad = g[i].to_vector();
    int64_t wrong = 0;
    for (size_t k = 0; k < before.size(); ++k)
      wrong += std::abs(before[k] - after[k] - 0.01 * (grad[k] > 0 ? 1 : -1)) > 1e-9;
    EXPECT_EQ(wrong, 0) << serial[i].first << ": elements not moved by lr";
  }
  // The global norm over the same chunks, against tandem's own reduction.
  double sum_sq = 0.0;
  for (const Tensor& t : g) sum_sq += sum(t * t).item();
  std::vector<Tensor> holders;
  for (const Tensor& t : g) {
    Tensor h = zeros(t.shape(), DType::kF64);
    h.set_grad(t.clone());
    holders.push_back(h);
  }
  EXPECT_NEAR(clip_grad_norm(holders, 1.0), std::sqrt(sum_sq), 1e-12 * std::sqrt(sum_sq));
  double clipped_sq = 0.0;
  for (const Tensor& h : holders) clipped_sq += sum(h.grad() * h.grad()).item();
  EXPECT_NEAR(std::sqrt(clipped_sq), 1.0, 1e-6);
}

// Trains `make` for 5 steps, saves the state through safetensors bytes, restores it into a fresh
// optimizer over copies of the parameters, and runs 5 more steps on both.
void expect_resume_is_exact(const MakeOptimizer& make, DType dt) {
  Problem pb = make_problem();
  NamedTensors a = make_params(pb, dt);
  std::unique_ptr<Optimizer> opt_a = make(a);
  train(pb, *opt_a, 5);
  std::string bytes = safetensors_serialize(opt_a->state_dict());
  auto copy_of = [&](const NamedTensors& src) {
    NamedTensors dst = make_params(pb, dt);
    for (size_t i = 0; i < dst.size(); ++i) dst[i].second.copy_(src[i].second);
    return dst;
  };
  NamedTensors b = copy_of(a), c = copy_of(a);
  std::unique_ptr<Optimizer> opt_b = make(b);
  opt_b->load_state_dict(safetensors_parse(bytes, "state").tensors);
  EXPECT_EQ(opt_b->step_count(), 5);
  std::unique_ptr<Optimizer> opt_c = make(c);  // same parameters, no state
  train(pb, *opt_a, 5);
  train(pb, *opt_b, 5);
  train(pb, *opt_c, 5);
  for (size_t i = 0; i < a.size(); ++i)
    EXPECT_EQ(a[i].second.to_vector(), b[i].second.to_vector()) << a[i].first;
  // Without the imported state the run differs, so the equality above is the state's doing.
  EXPECT_GT(max_rel_error(c[0].second, a[0].second), 1e-4);
}

// ddp's sharded update: ranges that together cover every element give step()'s bits (parameters
// and state); a range leaves everything outside it untouched while step counts still advance.
TEST(Optimizer, StepRangesCoveringEveryElementEqualStepAndLeaveTheRestUntouched) {
  for (const std::string algo : {"sgd", "adam", "adamw"}) {
    SCOPED_TRACE(algo);
    auto make_params = [&](uint64_t seed) {
      Generator g(seed);
      NamedTensors p;
      p.emplace_back("w", randn({37, 11}, g).set_requires_grad(true));
      p.emplace_back("b", randn({5}, g).set_requires_grad(true));
      return p;
    };
    auto make_opt = [&](NamedTensors p) -> std::unique_ptr<Optimizer> {
      if (algo == "sgd") {
        SgdOptions o;
        o.lr = 0.1;
        o.momentum = 0.9;
        o.weight_decay = 0.01;
        return std::make_unique<Sgd>(std::move(p), o);
      }
      AdamOptions o;
      o.lr = 0.01;
      o.weight_decay = 0.01;
      if (algo == "adam") return std::make_unique<Adam>(std::move(p), o);
      return std::make_unique<AdamW>(std::move(p), o);
    };
    NamedTensors a = make_params(1), b = make_params(1), c = make_params(1);
    auto full = make_opt(a), pieces = make_opt(b), half = make_opt(c);
    for (int step = 0; step < 3; ++step) {
      for (NamedTensors* set : {&a, &b, &c}) {
        Generator same(100 + step);
        for (auto& [n, t] : *set) t.set_grad(randn(t.shape(), same));
      }
      full->step();
      // Uneven pieces, a boundary inside "w", listed out of order.
      pieces->step_ranges({{1, 0, 5}, {0, 200, 407}, {0, 0, 200}});
      half->step_ranges({{0, 0, 100}});
    }
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_EQ(a[i].second.to_vector(), b[i].second.to_vector()) << a[i].first;
      for (size_t k = 0; k < full->buffer_names().size(); ++k)
        EXPECT_EQ(full->state_buffer(i, k).to_vector(), pieces->state_buffer(i, k).to_vector());
    }
    // half: w[0:100] as in `full`, the rest of w and all of b as they started; counts advanced.
    NamedTensors start = make_params(1);
    const std::vector<double> w_full = a[0].second.to_vector(), w_half = c[0].second.to_vector();
    const std::vector<double> w0 = start[0].second.to_vector();
    for (size_t j = 0; j < w0.size(); ++j) ASSERT_EQ(w_half[j], j < 100 ? w_full[j] : w0[j]) << j;
    EXPECT_EQ(c[1].second.to_vector(), start[1].second.to_vector());
    EXPECT_EQ(full->state_dict().size(), half->state_dict().size());
    for (const auto& [n, t] : half->state_dict()) {
      if (n == "b.step" || n == "w.step") {
        EXPECT_EQ(t.item(), 3.0) << n;
      }
    }
  }
}

TEST(Optimizer, StateRoundTripResumesBitForBit) {
  expect_resume_is_exact(maker<Adam>(AdamOptions{.lr = 0.05, .weight_decay = 0.01}), DType::kF32);
  expect_resume_is_exact(maker<AdamW>(AdamOptions{.lr = 0.05, .weight_decay = 0.1}), DType::kF64);
  expect_resume_is_exact(maker<Sgd>(SgdOptions{.lr = 0.05, .momentum = 0.9, .dampening = 0.2}),
                         DType::kF32);
}

TEST(Optimizer, StateKeysFollowParameterNames) {
  Problem pb = make_problem();
  NamedTensors p = make_params(pb, DType::kF32);
  std::vector<std::string> keys;
  for (auto& [k, t] : Adam(p, AdamOptions{}).state_dict()) keys.push_back(k);
  EXPECT_EQ(keys, (std::vector<std::string>{"step", "fc.weight.step", "fc.weight.exp_avg",
                                            "fc.weight.exp_avg_sq", "fc.bias.step",
                                            "fc.bias.exp_avg", "fc.bias.exp_avg_sq"}));
  keys.clear();
  for (auto& [k, t] : Sgd(p, SgdOptions{.momentum = 0.9}).state_dict()) keys.push_back(k);
  EXPECT_EQ(keys, (std::vector<std::string>{"step", "fc.weight.step", "fc.weight.momentum_buffer",
                                            "fc.bias.step", "fc.bias.momentum_buffer"}));
  EXPECT_EQ(Sgd(p, SgdOptions{}).state_dict().size(), 1u);  // plain SGD: only the step
}

TEST(Optimizer, LoadStateNamesEveryMissingUnexpectedAndMisshapedKeyAtOnce) {
  Problem pb = make_problem();
  NamedTensors p = make_params(pb, DType::kF32);
  Adam opt(p, AdamOptions{.lr = 0.05});
  train(pb, opt, 2);
  NamedTensors state;
  for (auto& [k, t] : opt.state_dict()) {
    if (k == "fc.weight.exp_avg_sq") continue;  // missing
    if (k == "fc.bias.exp_avg")
      state.emplace_back(k, zeros({4}));  // wrong shape
    else
      state.emplace_back(k, t);
  }
  state.emplace_back("fc.extra.exp_avg", zeros({5}));  // unexpected
  Adam fresh(make_params(pb, DType::kF32), AdamOptions{.lr = 0.05});
  try {
    fresh.load_state_dict(state);
    FAIL() << "load_state_dict accepted a state with a missing key and a wrong shape";
  } catch (const ValueError& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("missing keys: fc.weight.exp_avg_sq"), std::string::npos) << msg;
    EXPECT_NE(msg.find("fc.bias.exp_avg (expected shape [5], got [4])"), std::string::npos) << msg;
    EXPECT_NE(msg.find("unexpected keys: fc.extra.exp_avg"), std::string::npos) << msg;
  }
  // Nothing was loaded: the failed import left the fresh state as it was.
  EXPECT_EQ(fresh.step_count(), 0);
  for (auto& [k, t] : fresh.state_dict()) EXPECT_EQ(max(abs(t.to(DType::kF64))).item(), 0.0) << k;
}

TEST(Optimizer, RejectsBadHyperparameters) {
  Problem pb = make_problem();
  NamedTensors p = make_params(pb, DType::kF32);
  EXPECT_THROW(Sgd(p, SgdOptions{.lr = -0.1}), ConfigError);
  EXPECT_THROW(Sgd(p, SgdOptions{.momentum = -0.5}), ConfigError);
  EXPECT_THROW(Sgd(p, SgdOptions{.nesterov = true}), ConfigError);  // nesterov without momentum
  EXPECT_THROW(Sgd(p, SgdOptions{.momentum = 0.9, .dampening = 0.1, .nesterov = true}),
               ConfigError);
  EXPECT_THROW(Sgd(p, SgdOptions{.weight_decay = -1}), ConfigError);
  EXPECT_THROW(Adam(p, AdamOptions{.beta1 = 1.0}), ConfigError);
  EXPECT_THROW(Adam(p, AdamOptions{.beta2 = -0.1}), ConfigError);
  EXPECT_THROW(AdamW(p, AdamOptions{.eps = -1e-8}), ConfigError);
  EXPECT_THROW(Adam(p, AdamOptions{.lr = std::nan("")}), ConfigError);
  EXPECT_THROW(Sgd({}, SgdOptions{}), ConfigError);
  EXPECT_THROW(Sgd({p[0], {"fc.weight", p[1].second}}, SgdOptions{}),
               ConfigError);  // duplicate name
  Sgd ok(p, SgdOptions{.lr = 0.1});
  EXPECT_THROW(ok.set_lr(-1.0), ConfigError);
  ok.set_lr(0.25);
  EXPECT_EQ(ok.lr(), 0.25);
  // A grad of the wrong shape is refused before anything changes.
  p[0].second.set_grad(zeros({4, 5}));
  EXPECT_THROW(ok.step(), ShapeError);
  EXPECT_EQ(ok.step_count(), 0);
}

// ------------------------------------------------------------------------------ schedules

TEST(Schedule, LearningRatesMatchTorchSchedulersFor30Steps) {
  TANDEM_SKIP_WITHOUT_TORCH();
  constexpr int kScheduleSteps = 30;
  struct Case {
    std::string name;
    ScheduleOptions o;
    int compare_steps;  // torch's cosine restarts after T_max; tandem holds min_lr (checked below)
  };
  std::vector<Case> cases = {
      {"constant", {.base_lr = 0.1}, 30},
      {"step", {.base_lr = 0.1, .step_size = 7, .gamma = 0.5}, 30},
      {"cosine", {.base_lr = 0.1, .total_steps = 25, .min_lr = 0.001}, 26},
      {"constant", {.base_lr = 0.2, .warmup_steps = 5, .warmup_start_factor = 0.1}, 30},
      {"step",
       {.base_lr = 0.1,
        .step_size = 6,
        .gamma = 0.3,
        .warmup_steps = 4,
        .warmup_start_factor = 0.25},
       30},
      {"cosine", {.base_lr = 0.4, .total_steps = 30, .min_lr = 0.01, .warmup_steps = 5}, 30},
  };
  std::string json = str("{\"steps\": ", kScheduleSteps, ", \"schedules\": [");
  for (size_t i = 0; i < cases.size(); ++i) {
    const ScheduleOptions& o = cases[i].o;
    json += str(i ? ", " : "", "{\"kind\": \"", cases[i].name, "\", \"base_lr\": ", num(o.base_lr),
                ", \"step_size\": ", o.step_size, ", \"gamma\": ", num(o.gamma),
                ", \"total_steps\": ", o.total_steps, ", \"min_lr\": ", num(o.min_lr),
                ", \"warmup_steps\": ", o.warmup_steps,
                ", \"warmup_start_factor\": ", num(o.warmup_start_factor), "}");
  }
  json += "]}";
  auto ref = run_torch("optim_schedules", {}, json);
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(str(cases[i].name, " warmup ", cases[i].o.warmup_steps));
    Schedule sched = make_schedule(cases[i].name, cases[i].o);
    std::vector<double> expected = ref.at(std::to_string(i)).to_vector();
    ASSERT_EQ(expected.size(), static_cast<size_t>(kScheduleSteps));
    for (int s = 0; s < cases[i].compare_steps; ++s)
      EXPECT_NEAR(sched.lr_at(s), expected[s], 1e-12 * std::max(1.0, expected[s])) << "step " << s;
  }
  Schedule cosine = make_schedule("cosine", cases[2].o);
  EXPECT_DOUBLE_EQ(cosine.lr_at(25), 0.001);
  EXPECT_DOUBLE_EQ(cosine.lr_at(29), 0.001);  // held at min_lr after total_steps
}

TEST(Schedule, UnknownNamesAndBadOptionsAreConfigErrors) {
  try {
    make_schedule("cosin", ScheduleOptions{});
    FAIL() << "unknown schedule accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("(valid: constant, step, cosine)"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(make_schedule("cosine", ScheduleOptions{.total_steps = 0}), ConfigError);
  EXPECT_THROW(make_schedule("cosine", ScheduleOptions{.total_steps = 5, .warmup_steps = 5}),
               ConfigError);
  EXPECT_THROW(make_schedule("step", ScheduleOptions{.step_size = 0}), ConfigError);
  EXPECT_THROW(make_schedule("constant", ScheduleOptions{.base_lr = -1}), ConfigError);
  EXPECT_THROW(make_schedule("constant", ScheduleOptions{.warmup_start_factor = 1.5}), ConfigError);
  EXPECT_THROW(make_schedule("constant", ScheduleOptions{}).lr_at(-1), ValueError);
}

// ------------------------------------------------------------------------------ clipping

TEST(ClipGradNorm, MatchesTorchWhenClippingAndWhenNot) {
  TANDEM_SKIP_WITHOUT_TORCH();
  // Four sets (f32/f64 x clipping/not), all in one torch call: set k's grads are "k.g0".. "k.g2".
  struct Set {
    DType dt;
    double max_norm;
    std::vector<Tensor> grads;
  };
  Generator gen(99);
  std::vector<Set> sets;
  for (DType dt : {DType::kF32, DType::kF64}) {
    std::vector<Tensor> grads = {randn({5, 4}, gen, dt), randn({5}, gen, dt),
                                 randn({3, 2, 2}, gen, dt)};
    for (double max_norm : {1.0, 100.0}) sets.push_back({dt, max_norm, grads});
  }
  testing::TensorMap inputs;
  std::string json = "{\"sets\": [";
  for (size_t k = 0; k < sets.size(); ++k) {
    for (size_t i = 0; i < sets[k].grads.size(); ++i)
      inputs.emplace_back(str(k, ".g", i), sets[k].grads[i]);
    json +=
        str(k ? ", " : "", "{\"prefix\": \"", k, "\", \"max_norm\": ", num(sets[k].max_norm), "}");
  }
  auto ref = run_torch("optim_clip_grad_norm", inputs, json + "]}");
  for (size_t k = 0; k < sets.size(); ++k) {
    const Set& set = sets[k];
    SCOPED_TRACE(str(dtype_name(set.dt), ", max_norm ", set.max_norm));
    NamedTensors params;
    for (size_t i = 0; i < set.grads.size(); ++i) {
      Tensor p = zeros(set.grads[i].shape(), set.dt);
      p.set_grad(set.grads[i].clone());
      params.emplace_back(str("p", i), p);
    }
    // A transposed (non-contiguous) grad is scaled through its strides.
    params[0].second.set_grad(set.grads[0].t().contiguous().t());
    params.emplace_back("no_grad", zeros({7}, set.dt));  // ignored
    double total = clip_grad_norm(params, set.max_norm);
    const double tol = set.dt == DType::kF32 ? 1e-6 : 1e-12;
    EXPECT_NEAR(total, ref.at(str(k, ".total_norm")).item(), tol * total);
    EXPECT_GT(total, 1.0);
    EXPECT_LT(total, 100.0);  // so that one max_norm clips and the other does not
    for (size_t i = 0; i < set.grads.size(); ++i)
      expect_close(params[i].second.grad(), ref.at(str(k, ".g", i)), tol, str("grad ", i));
  }
}

TEST(ClipGradNorm, LeavesGradsAloneWhenTheNormIsNotFinite) {
  Tensor p = zeros({3});
  p.set_grad(from_vector({1.0, std::numeric_limits<double>::infinity(), 2.0}, {3}));
  Tensor q = zeros({2});
  q.set_grad(from_vector({30.0, 40.0}, {2}));
  EXPECT_TRUE(std::isinf(clip_grad_norm(std::vector<Tensor>{p, q}, 1.0)));
  EXPECT_EQ(q.grad().to_vector(), (std::vector<double>{30.0, 40.0}));
  // Finite: norm 50 -> scaled by 1 / (50 + 1e-6).
  EXPECT_NEAR(clip_grad_norm(std::vector<Tensor>{q}, 1.0), 50.0, 1e-5);
  EXPECT_NEAR(q.grad().to_vector()[1], 0.8, 1e-6);
  EXPECT_THROW(clip_grad_norm(std::vector<Tensor>{q}, 0.0), ConfigError);
}

}  // namespace
}  // namespace tandem
