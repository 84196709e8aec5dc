// Module bookkeeping: PyTorch's naming and order, modes, state_dict save/load (in place, with one
// error naming every problem), dtype conversion in place.
#include <gtest/gtest.h>

#include "core/io/safetensors.h"
#include "core/nn/layers.h"
#include "core/nn/models.h"
#include "core/nn/sequential.h"
#include "tests/core/nn/nn_test_util.h"

namespace tandem {
namespace {

using nn_test::listing;

// A block with its own parameter registered after its children (PyTorch still lists a module's
// own entries first).
class Block : public Module {
 public:
  explicit Block(Generator& gen) {
    conv_ = register_module("conv", std::make_shared<Conv2d>(gen, 2, 2, 3, 1, 1));
    bn_ = register_module("bn", std::make_shared<BatchNorm2d>(2));
    scale_ = register_parameter("scale", ones({1}));
  }
  Tensor forward(const Tensor& x) override { return bn_->forward(conv_->forward(x)) * scale_; }
  std::string describe() const override { return "Block"; }

 private:
  std::shared_ptr<Conv2d> conv_;
  std::shared_ptr<BatchNorm2d> bn_;
  Tensor scale_;
};

class Net : public Module {
 public:
  explicit Net(Generator& gen) {
    alpha_ = register_parameter("alpha", full({1}, 0.5));
    register_buffer("steps", zeros({}, DType::kI64));
    stem_ = register_module(
        "stem", std::make_shared<Sequential>(std::initializer_list<std::shared_ptr<Module>>{
                    std::make_shared<Block>(gen), std::make_shared<Block>(gen)}));
    head_ = register_module("head", std::make_shared<Linear>(gen, 18, 3));
  }
  Tensor forward(const Tensor& x) override {
    return head_->forward(stem_->forward(x).flatten(1)) * alpha_;
  }
  std::string describe() const override { return "Net"; }

 private:
  Tensor alpha_;
  std::shared_ptr<Sequential> stem_;
  std::shared_ptr<Linear> head_;
};

std::vector<std::string> block_entries(const std::string& p, bool params, bool buffers) {
  std::vector<std::string> v;
  if (params) {
    v.push_back(p + "scale f32 [1]");
    v.push_back(p + "conv.weight f32 [2, 2, 3, 3]");
    v.push_back(p + "conv.bias f32 [2]");
    v.push_back(p + "bn.weight f32 [2]");
    v.push_back(p + "bn.bias f32 [2]");
  }
  if (buffers) {
    v.push_back(p + "bn.running_mean f32 [2]");
    v.push_back(p + "bn.running_var f32 [2]");
    v.push_back(p + "bn.num_batches_tracked i64 []");
  }
  return v;
}

TEST(Module, NamesAreDottedPathsInTorchOrder) {
  Generator gen(1);
  Net net(gen);
  std::vector<std::string> params = {"alpha f32 [1]"}, buffers = {"steps i64 []"},
                           state = {"alpha f32 [1]", "steps i64 []"};
  for (std::string p : {"stem.0.", "stem.1."}) {
    for (auto& s : block_entries(p, true, false)) params.push_back(s);
    for (auto& s : block_entries(p, false, true)) buffers.push_back(s);
    for (auto& s : block_entries(p, true, true)) state.push_back(s);
  }
  for (auto* v : {&params, &state}) {
    v->push_back("head.weight f32 [3, 18]");
    v->push_back("head.bias f32 [3]");
  }
  EXPECT_EQ(listing(net.named_parameters()), params);
  EXPECT_EQ(listing(net.named_buffers()), buffers);
  EXPECT_EQ(listing(net.state_dict()), state);
  EXPECT_EQ(net.num_parameters(), 1 + 2 * (1 + 36 + 2 + 2 + 2) + 54 + 3);
  EXPECT_EQ(net.parameters().size(), params.size());
  for (auto& [n, t] : net.named_parameters()) EXPECT_TRUE(t.requires_grad()) << n;
  for (auto& [n, t] : net.named_buffers()) EXPECT_FALSE(t.requires_grad()) << n;
  std::vector<std::string> modules;
  for (auto& [n, m] : net.named_modules()) modules.push_back(n);
  EXPECT_EQ(modules, (std::vector<std::string>{"stem", "stem.0", "stem.0.conv", "stem.0.bn",
                                               "stem.1", "stem.1.conv", "stem.1.bn", "head"}));
  EXPECT_EQ(net.named_modules()[5].second->path(), "stem.1.conv");
}

TEST(Module, TrainAndEvalReachEveryDescendant) {
  Generator gen(1);
  Net net(gen);
  EXPECT_TRUE(net.is_training());
  net.eval();
  EXPECT_FALSE(net.is_training());
  for (auto& [n, m] : net.named_modules()) EXPECT_FALSE(m->is_training()) << n;
  net.train();
  for (auto& [n, m] : net.named_modules()) EXPECT_TRUE(m->is_training()) << n;
}

TEST(Module, RegisteringANameTwiceOrADottedNameIsAConfigError) {
  Generator gen(1);
  Linear fc(gen, 2, 2);
  EXPECT_THROW(fc.register_parameter("weight", zeros({1})), ConfigError);
  EXPECT_THROW(fc.register_buffer("bias", zeros({1})), ConfigError);
  EXPECT_THROW(fc.register_module("a.b", std::make_shared<ReLU>()), ConfigError);
}

TEST(Module, ZeroGradDropsEveryGradient) {
  Generator gen(2);
  Net net(gen);
  sum(net.forward(nn_test::random_input({2, 2, 3, 3}, 1))).backward();
  for (auto& [n, p] : net.named_parameters()) ASSERT_TRUE(p.grad().defined()) << n;
  net.zero_grad();
  for (auto& [n, p] : net.named_parameters()) EXPECT_FALSE(p.grad().defined()) << n;
}

TEST(Module, StateDictRoundTripsThroughSafetensorsIntoTheSameTensors) {
  Generator g1(1), g2(2);
  Net a(g1), b(g2);
  a.forward(nn_test::random_input({4, 2, 3, 3}, 3));  // moves running stats and counters
  {
    NoGradGuard ng;
    a.named_buffers()[0].second.fill_(5);  // "steps"
  }
  std::string path = testing::temp_dir() + "/net.safetensors";
  safetensors_save(path, a.state_dict());

  Tensor b_head = b.named_parameters().back().second;  // a handle an optimizer might hold
  ASSERT_NE(b_head.to_vector(), a.named_parameters().back().second.to_vector());
  LoadStateResult r = b.load_state_dict(safetensors_load(path).tensors);
  EXPECT_TRUE(r.missing_keys.empty());
  EXPECT_TRUE(r.unexpected_keys.empty());
  NamedTensors sa = a.state_dict(), sb = b.state_dict();
  ASSERT_EQ(sa.size(), sb.size());
  for (size_t i = 0; i < sa.size(); ++i) {
    EXPECT_EQ(sb[i].second.dtype(), sa[i].second.dtype()) << sa[i].first;
    EXPECT_EQ(sb[i].second.to_vector(), sa[i].second.to_vector()) << sa[i].first;
  }
  EXPECT_TRUE(b.named_parameters().back().second.is_same(b_head));
  EXPECT_EQ(b_head.to_vector(), a.named_parameters().back().second.to_vector());
  EXPECT_TRUE(b_head.requires_grad());
  EXPECT_EQ(b.named_buffers()[0].second.item(), 5.0);
  EXPECT_EQ(b.named_buffers()[3].first, "stem.0.bn.num_batches_tracked");
  EXPECT_EQ(b.named_buffers()[3].second.item(), 1.0);
}

TEST(Module, LoadingAnotherModelsWeightsNamesEveryProblemInOneErrorAndChangesNothing) {
  Generator g1(1), g2(2);
  auto cnn = make_model("simple_cnn", {}, g1);
  auto lenet = make_model("lenet", {}, g2);
  NamedTensors entries;
  for (auto& [n, t] : cnn->state_dict())
    if (n != "fc2.bias") entries.emplace_back(n, t);
  entries.emplace_back("extra.weight", zeros({3}));
  std::vector<double> bias_before = lenet->state_dict()[1].second.to_vector();  // conv1.bias [32]
  try {
    lenet->load_state_dict(entries);
    FAIL() << "no ConfigError";
  } catch (const ConfigError& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("missing keys (1): fc2.bias"), std::string::npos) << msg;
    EXPECT_NE(msg.find("unexpected keys (1): extra.weight"), std::string::npos) << msg;
    EXPECT_NE(msg.find("conv1.weight (expected f32 [32, 1, 5, 5], got f32 [32, 3, 3, 3])"),
              std::string::npos)
        << msg;
    EXPECT_NE(msg.find("conv2.weight"), std::string::npos) << msg;
    EXPECT_NE(msg.find("fc1.weight (expected f32 [1024, 3136], got f32 [512, 4096])"),
              std::string::npos)
        << msg;
    EXPECT_NE(msg.find("fc2.weight"), std::string::npos) << msg;
    EXPECT_EQ(msg.find("conv1.bias"), std::string::npos) << msg;  // that one fits
  }
  // conv1.bias fit and still was not copied: nothing changes unless everything fits.
  EXPECT_EQ(lenet->state_dict()[1].second.to_vector(), bias_before);

  NamedTensors wrong_dtype = nn_test::snapshot(lenet->state_dict());
  wrong_dtype[0].second = wrong_dtype[0].second.to(DType::kF64);
  EXPECT_THROW(lenet->load_state_dict(wrong_dtype), ConfigError);
}

TEST(Module, NonStrictLoadReturnsMissingAndUnexpectedKeys) {
  Generator g1(1), g2(2);
  Linear a(g1, 3, 2), b(g2, 3, 2);
  NamedTensors entries = {{"weight", a.weight()}, {"other", zeros({1})}};
  LoadStateResult r = b.load_state_dict(entries, false);
  EXPECT_EQ(r.missing_keys, std::vector<std::string>{"bias"});
  EXPECT_EQ(r.unexpected_keys, std::vector<std::string>{"other"});
  EXPECT_EQ(b.weight().to_vector(), a.weight().to_vector());
  EXPECT_NE(b.bias().to_vector(), a.bias().to_vector());
  EXPECT_THROW(b.load_state_dict(entries, true), ConfigError);
}

TEST(Module, ToConvertsFloatingTensorsInPlaceAndKeepsCounters) {
  Generator gen(3);
  Net net(gen);
  Tensor x = nn_test::random_input({2, 2, 3, 3}, 4);
  Tensor y_train = net.forward(x);  // moves the running statistics once
  NamedTensors before = nn_test::snapshot(net.state_dict());
  Tensor head = net.named_parameters().back().second;
  net.to(DType::kF64);
  EXPECT_TRUE(head.is_same(net.named_parameters().back().second));
  EXPECT_EQ(head.dtype(), DType::kF64);
  EXPECT_TRUE(head.requires_grad());
  for (auto& [n, t] : net.state_dict()) {
    bool counter = n == "steps" || n.find("num_batches_tracked") != std::string::npos;
    EXPECT_EQ(t.dtype(), counter ? DType::kI64 : DType::kF64) << n;
  }
  net.eval();
  Tensor y64 = net.forward(x.to(DType::kF64));
  EXPECT_EQ(y64.dtype(), DType::kF64);
  net.to(DType::kF32);
  NamedTensors after = net.state_dict();
  for (size_t i = 0; i < after.size(); ++i) {  // f32 -> f64 -> f32 is exact
    EXPECT_EQ(after[i].second.dtype(), before[i].second.dtype()) << after[i].first;
    EXPECT_EQ(after[i].second.to_vector(), before[i].second.to_vector()) << after[i].first;
  }
  Tensor y32 = net.forward(x);
  testing::expect_close(y32, y64, 1e-5, "f32 vs f64 eval forward");
  EXPECT_GT(testing::max_rel_error(y32, y_train), 1e-3);  // eval and train batch norm differ
}

}  // namespace
}  // namespace tandem
