// The backward engine: accumulation into leaves, graph release, grad mode, and the post-accumulate
// hooks the DDP reducer hangs on (once per leaf per backward, with the final gradient, last layer
// first, before earlier layers run their backward).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/autograd/grad_mode.h"
#include "core/autograd/node.h"
#include "core/ops/ops.h"
#include "core/random/philox.h"
#include "tests/support/test_support.h"

namespace tandem {
namespace {

Tensor leaf(const std::vector<double>& v, const Shape& s) {
  return from_vector(v, s, DType::kF64).set_requires_grad(true);
}

// Identity whose backward appends `name` to `log`: marks when a layer's backward runs.
Tensor marker(const Tensor& x, const std::string& name, std::vector<std::string>* log) {
  Tensor out = x.detach().clone();
  record("Marker", {x}, {out}, [name, log](const std::vector<Tensor>& g) {
    log->push_back(name);
    return std::vector<Tensor>{g[0]};
  });
  return out;
}

TEST(Engine, GradientsAccumulateIntoLeavesAcrossBackwardCalls) {
  Tensor x = leaf({1, -2, 3}, {3});
  Tensor y = leaf({0.5, 0.5, 0.5}, {3});
  sum(mul(x, x)).backward();
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{2, -4, 6}));
  sum(add(mul(x, 3.0), y)).backward();
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{5, -1, 9}));
  EXPECT_EQ(y.grad().to_vector(), (std::vector<double>{1, 1, 1}));
  // Both operands of one add get the same incoming gradient: their .grad must not share storage.
  sum(add(x, y)).backward();
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{6, 0, 10}));
  EXPECT_EQ(y.grad().to_vector(), (std::vector<double>{2, 2, 2}));
}

TEST(Engine, AccumulationNeverWritesIntoTheCallersGradient) {
  Tensor x = leaf({1, 2}, {2});
  Tensor gy = from_vector({1, 1}, {2}, DType::kF64);
  x.backward(gy);          // the leaf itself is the root
  x.clone().backward(gy);  // the gradient passes through unchanged
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{2, 2}));
  EXPECT_EQ(gy.to_vector(), (std::vector<double>{1, 1}));
}

TEST(Engine, ALeafUsedTwiceGetsTheSumOfBothGradients) {
  Tensor x = leaf({2, 3}, {2});
  // d/dx (3x + x*x) = 3 + 2x; x also reaches the loss through two branches of different depth.
  Tensor y = add(mul(x, 3.0), mul(x, x));
  sum(y).backward();
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{7, 9}));
  Tensor w = leaf({1, 2, 3, 4}, {2, 2});
  sum(matmul(w, w)).backward();  // d/dw sum(w @ w) = 1 w^T + w^T 1
  EXPECT_EQ(w.grad().to_vector(), (std::vector<double>{7, 11, 9, 13}));
}

// A gradient destination (DDP's bucket view): linear computes its weight's gradient in it when
// the weight has none -- same values as without, no other buffer -- and not when the weight
// already holds a gradient (it accumulates) or a second use in the graph comes along (the sum is
// still right).
TEST(Engine, LinearComputesTheWeightGradientInItsDestinationOnlyWhenItMay) {
  Generator gen(5);
  Tensor x = randn({6, 4}, gen), w = randn({3, 4}, gen);
  w.set_requires_grad(true);
  sum(linear(x, w)).backward();
  const std::vector<double> reference = w.grad().to_vector();

  Tensor bucket = full({20}, -7.0);
  Tensor view = bucket.slice(0, 5, 17).view({3, 4});
  w.set_grad(Tensor());
  w.set_grad_destination(view);
  sum(linear(x, w)).backward();
  EXPECT_EQ(w.grad().raw_data(), view.raw_data()) << "computed elsewhere";
  EXPECT_EQ(w.grad().to_vector(), reference);
  EXPECT_EQ(bucket.to_vector()[4], -7.0);  // nothing outside the view
  EXPECT_EQ(bucket.to_vector()[17], -7.0);

  sum(linear(x, w)).backward();  // a gradient is there: accumulate into it
  std::vector<double> twice = view.to_vector();
  for (size_t i = 0; i < twice.size(); ++i) EXPECT_EQ(twice[i], 2 * reference[i]);

  w.set_grad(Tensor());  // zero_grad(set_to_none): the destination may be used again
  sum(add(linear(x, w), linear(x, w))).backward();  // two uses: only one may claim it
  twice = w.grad().to_vector();
  for (size_t i = 0; i < twice.size(); ++i) EXPECT_EQ(twice[i], 2 * reference[i]);
  EXPECT_THROW(w.set_grad_destination(zeros({4, 3})), ShapeError);
}

TEST(Engine, BackwardThroughAFreedGraphThrowsUnlessRetained) {
  Tensor x = leaf({1, 2}, {2});
  Tensor loss = sum(exp(x));
  loss.backward();
  try {
    loss.backward();
    FAIL() << "expected an AutogradError";
  } catch (const AutogradError& e) {
    EXPECT_NE(std::string(e.what()).find("second time"), std::string::npos) << e.what();
  }
  Tensor z = leaf({0, 1}, {2});
  Tensor l2 = sum(mul(z, z));
  l2.backward(Tensor(), true);
  l2.backward();
  EXPECT_EQ(z.grad().to_vector(), (std::vector<double>{0, 4}));
}

TEST(Engine, BackwardFromANonScalarNeedsAGradient) {
  Tensor x = leaf({1, 2, 3}, {3});
  Tensor y = mul(x, 2.0);
  EXPECT_THROW(y.backward(), AutogradError);
  EXPECT_THROW(y.backward(ones({2}, DType::kF64)), ShapeError);
  y.backward(from_vector({1, 0, -1}, {3}, DType::kF64));
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{2, 0, -2}));
  EXPECT_THROW(from_vector({1}, {1}).backward(), AutogradError);  // nothing requires grad
}

TEST(Engine, NoGradGuardRecordsNothing) {
  Tensor x = leaf({1, 2}, {2});
  {
    NoGradGuard guard;
    EXPECT_FALSE(grad_enabled());
    Tensor y = sum(mul(exp(x), x.view({2, 1}).view({2})));
    EXPECT_FALSE(y.requires_grad());
    EXPECT_EQ(y.grad_fn(), nullptr);
    EXPECT_THROW(y.backward(), AutogradError);
  }
  EXPECT_TRUE(grad_enabled());
  Tensor y = mul(x, x);
  EXPECT_TRUE(y.requires_grad());
  EXPECT_NE(y.grad_fn(), nullptr);
  EXPECT_FALSE(mul(x.detach(), 2.0).requires_grad());
}

TEST(Engine, PostAccumulateHooksFireOncePerBackwardWithTheFinalGradient) {
  Tensor x = leaf({1, 2, 3}, {3});
  std::vector<std::vector<double>> seen;
  x.register_post_accumulate_grad_hook(
      [&](const Tensor& t) { seen.push_back(t.grad().to_vector()); });
  // x reaches the loss along three paths; the hook must see the sum of all three.
  Tensor loss = sum(add(add(mul(x, x), exp(x)), mul(x, 2.0)));
  loss.backward();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0], x.grad().to_vector());
  std::vector<double> expected{2 + std::exp(1.0) + 2, 4 + std::exp(2.0) + 2, 6 + std::exp(3.0) + 2};
  for (size_t i = 0; i < 3; ++i) EXPECT_DOUBLE_EQ(seen[0][i], expected[i]);
  sum(x).backward();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[1], x.grad().to_vector());
  EXPECT_DOUBLE_EQ(seen[1][0], expected[0] + 1);
}

TEST(Engine, ARemovedHookNoLongerFiresAndTheOthersStillDo) {
  Tensor x = leaf({1, 2}, {2});
  std::vector<std::string> log;
  HookHandle a = x.register_post_accumulate_grad_hook([&](const Tensor&) { log.push_back("a"); });
  HookHandle b = x.register_post_accumulate_grad_hook([&](const Tensor&) { log.push_back("b"); });
  x.register_post_accumulate_grad_hook([&](const Tensor&) { log.push_back("c"); });
  sum(x).backward();
  EXPECT_EQ(log, (std::vector<std::string>{"a", "b", "c"}));
  b.remove();
  b.remove();  // idempotent: must not take off another hook
  log.clear();
  sum(x).backward();
  EXPECT_EQ(log, (std::vector<std::string>{"a", "c"}));
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{2, 2}));
  // A handle whose tensor is gone is harmless.
  HookHandle orphan;
  {
    Tensor y = leaf({1}, {1});
    orphan = y.register_post_accumulate_grad_hook([&](const Tensor&) { log.push_back("y"); });
  }
  orphan.remove();
  a.remove();
  log.clear();
  sum(x).backward();
  EXPECT_EQ(log, (std::vector<std::string>{"c"}));
}

TEST(Engine, HooksFireLastLayerFirstWhileEarlierLayersStillCompute) {
  Generator g(3);
  const int64_t width = 4;
  std::vector<Tensor> weights, biases;
  for (int i = 0; i < 3; ++i) {
    weights.push_back(randn({width, width}, g, DType::kF64).set_requires_grad(true));
    biases.push_back(randn({width}, g, DType::kF64).set_requires_grad(true));
  }
  std::vector<std::string> log;
  for (int i = 0; i < 3; ++i) {
    weights[i].register_post_accumulate_grad_hook(
        [&log, i](const Tensor&) { log.push_back("w" + std::to_string(i)); });
    biases[i].register_post_accumulate_grad_hook(
        [&log, i](const Tensor&) { log.push_back("b" + std::to_string(i)); });
  }
  Tensor x = randn({5, width}, g, DType::kF64);
  // Like a training loop: the previous step's loss (and graph) is still alive while the next
  // forward records, so the leaves' accumulators are reused across steps.
  Tensor loss;
  for (int step = 0; step < 2; ++step) {
    log.clear();
    Tensor h = x;
    for (int i = 0; i < 3; ++i)
      h = marker(relu(linear(h, weights[i], biases[i])), "layer" + std::to_string(i), &log);
    loss = sum(h);
    loss.backward();
    std::vector<std::string> weights_only;
    for (const auto& e : log)
      if (e[0] == 'w' || e[0] == 'l') weights_only.push_back(e);
    EXPECT_EQ(weights_only,
              (std::vector<std::string>{"layer2", "w2", "layer1", "w1", "layer0", "w0"}))
        << "step " << step;
    ASSERT_EQ(log.size(), 9u) << "every hook exactly once, step " << step;
    // Each bias hook fires right beside its weight's, before the earlier layer's backward.
    for (int i = 0; i < 3; ++i) {
      auto pos = [&](const std::string& s) {
        return std::find(log.begin(), log.end(), s) - log.begin();
      };
      EXPECT_LT(pos("b" + std::to_string(i)), i == 0 ? 9 : pos("layer" + std::to_string(i - 1)))
          << "step " << step;
    }
  }
}

}  // namespace
}  // namespace tandem
