#include "core/optim/loss_scaler.h"

#include <gtest/gtest.h>

#include <cmath>

#include "core/ops/ops.h"

namespace tandem {
namespace {

TEST(LossScaler, HalvesOnOverflowAndDoublesAfterTheGrowthInterval) {
  LossScalerOptions o;
  o.init_scale = 1024;
  o.growth_interval = 3;
  LossScaler s(o);
  EXPECT_EQ(s.scale(), 1024);
  EXPECT_FALSE(s.update(true));  // overflow: skip, halve
  EXPECT_EQ(s.scale(), 512);
  EXPECT_TRUE(s.update(false));
  EXPECT_TRUE(s.update(false));
  EXPECT_EQ(s.scale(), 512);
  EXPECT_TRUE(s.update(false));  // third clean step in a row: grow
  EXPECT_EQ(s.scale(), 1024);
  EXPECT_EQ(s.clean_steps(), 0);
  EXPECT_TRUE(s.update(false));
  EXPECT_FALSE(s.update(true));  // an overflow resets the clean run
  EXPECT_EQ(s.scale(), 512);
  EXPECT_EQ(s.clean_steps(), 0);
}

TEST(LossScaler, RejectsNonsenseOptions) {
  LossScalerOptions o;
  o.backoff_factor = 1.5;
  EXPECT_THROW(LossScaler{o}, ConfigError);
  o = LossScalerOptions{};
  o.init_scale = 0;
  EXPECT_THROW(LossScaler{o}, ConfigError);
}

TEST(LossScaler, FindsNonFiniteGradientsAndUnscales) {
  Tensor a = ones({3}), b = ones({2, 2});
  a.set_requires_grad(true);
  b.set_requires_grad(true);
  a.set_grad(from_vector({1, 2, 3}, {3}));
  b.set_grad(from_vector({4, 5, 6, 7}, {2, 2}));
  EXPECT_TRUE(grads_finite({a, b}));
  scale_grads({a, b}, 0.5);
  EXPECT_EQ(a.grad().to_vector(), (std::vector<double>{0.5, 1, 1.5}));
  EXPECT_EQ(b.grad().to_vector(), (std::vector<double>{2, 2.5, 3, 3.5}));
  b.set_grad(from_vector({4, INFINITY, 6, 7}, {2, 2}));
  EXPECT_FALSE(grads_finite({a, b}));
  b.set_grad(from_vector({4, NAN, 6, 7}, {2, 2}));
  EXPECT_FALSE(grads_finite({a, b}));
  Tensor c = ones({1});  // no gradient: ignored
  EXPECT_TRUE(grads_finite({a, c}));
}

}  // namespace
}  // namespace tandem
