// ONNX import (core/nn/onnx_model.h) against PyTorch: models exported by Debian's torch at test
// time (tests/reference/onnx_models.py) give the logits, buffers, one-step gradients and updated
// parameters of the nn.Module they came from, with that module loading tandem's state_dict
// strictly (so the names are torch's). Tolerances are those of models_test.cc: ResNet-18's
// training forward in f32, its step in f64; the small CNN's step in f32. Errors name the key, the
// node and the operator.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>

#include "core/io/safetensors.h"
#include "core/nn/onnx_model.h"
#include "core/optim/sgd.h"
#include "tests/core/nn/nn_test_util.h"

namespace tandem {
namespace {

std::string python() {
  return "/usr/bin/python3";
}

// Runs tests/reference/onnx_models.py ARGS; fails the test when it does not succeed.
void run_models_script(const std::string& args) {
  const std::string cmd =
      python() + " '" TANDEM_SOURCE_DIR "/tests/reference/onnx_models.py' " + args + " 2>/dev/null";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
}

// Exports `name` and returns the file's path.
std::string exported(const std::string& name, const std::string& flags) {
  const std::string path = testing::temp_dir() + "/" + name + ".onnx";
  run_models_script("export " + name + " '" + path + "' " + flags);
  return path;
}

OnnxModelOptions options(int64_t c, int64_t h, int64_t w) {
  OnnxModelOptions o;
  o.channels = c;
  o.height = h;
  o.width = w;
  return o;
}

enum class Check { kForward, kStep };

// One forward (+ cross-entropy, backward and SGD step with lr 0.1 for kStep) in tandem and in
// torch from the same state, compared as in models_test.cc.
void expect_matches_torch(Module& m, const std::string& model, const Shape& x_shape, bool train,
                          DType dtype, Check check, double logits_tol, double tol,
                          const std::string& extra_args = "") {
  m.train(train);
  m.to(dtype);
  testing::TensorMap inputs = nn_test::snapshot(m.state_dict(), "state.");
  Tensor x = nn_test::random_input(x_shape, 22).to(dtype);
  std::vector<double> labels;
  for (int64_t i = 0; i < x_shape[0]; ++i) labels.push_back(static_cast<double>((i * 7 + 3) % 10));
  Tensor target = from_vector(labels, {x_shape[0]}, DType::kI64);
  inputs.emplace_back("x", x);
  inputs.emplace_back("target", target);
  Tensor logits = m.forward(x);
  Tensor loss = cross_entropy(logits, target);
  if (check == Check::kStep) {
    loss.backward();
    SgdOptions sgd;
    sgd.lr = 0.1;
    Sgd opt(m.named_parameters(), sgd);
    opt.step();
  }
  auto ref = testing::run_torch(
      "onnx_model_step", inputs,
      str("{\"model\": \"", model, "\", \"train\": ", train ? "true" : "false",
          ", \"lr\": 0.1, \"dtype\": \"", dtype_name(dtype), "\", \"size\": ", x_shape[2],
          ", \"in_channels\": ", x_shape[1],
          ", \"step\": ", check == Check::kStep ? "true" : "false", extra_args, "}"));
  testing::expect_close(logits, ref.at("logits"), logits_tol, model + " logits");
  testing::expect_close(loss, ref.at("loss"), tol, model + " loss");
  for (auto& [n, t] : m.named_buffers())
    testing::expect_close(t, ref.at("after." + n), tol, model + " buffer " + n);
  if (check == Check::kForward) return;
  for (auto& [n, p] : m.named_parameters())
    testing::expect_close(p.grad(), ref.at("grad." + n), tol, model + " gradient of " + n);
  for (auto& [n, p] : m.named_parameters())
    testing::expect_close(p, ref.at("after." + n), tol, model + " " + n + " after one step");
}

TEST(OnnxModel, ResNet18KeepsTorchvisionNamesAndBuffers) {
  TANDEM_SKIP_WITHOUT_TORCH();
  auto m = load_onnx_model(exported("resnet18", "--opset 17 --size 64"), options(3, 64, 64));
  const NamedTensors p = m->named_parameters(), b = m->named_buffers();
  EXPECT_EQ(p.size(), 62u);  // torchvision resnet18: 62 parameters
  EXPECT_EQ(b.size(), 60u);  // 20 batch norms x (running_mean, running_var, num_batches_tracked)
  EXPECT_EQ(p.front().first, "conv1.weight");
  EXPECT_EQ(p.back().first, "fc.bias");
  EXPECT_EQ(b[2].first, "bn1.num_batches_tracked");
  EXPECT_EQ(m->num_outputs(), 10);
  EXPECT_EQ(m->num_parameters(), 11181642);
}

TEST(OnnxModel, ResNet18TrainingForwardMatchesTorchInF32) {
  TANDEM_SKIP_WITHOUT_TORCH();
  auto m = load_onnx_model(exported("resnet18", "--opset 17 --size 64"), options(3, 64, 64));
  expect_matches_torch(*m, "resnet18", {4, 3, 64, 64}, true, DType::kF32, Check::kForward, 1e-4,
                       1e-5);
}

TEST(OnnxModel, ResNet18TrainingStepMatchesTorchInF64) {
  TANDEM_SKIP_WITHOUT_TORCH();
  auto m = load_onnx_model(exported("resnet18", "--opset 13 --size 32"), options(3, 32, 32));
  expect_matches_torch(*m, "resnet18", {4, 3, 32, 32}, true, DType::kF64, Check::kStep, 1e-10,
                       1e-10);
}

TEST(OnnxModel, SkipCnnStepMatchesTorchInF32) {
  TANDEM_SKIP_WITHOUT_TORCH();
  // Conv, BatchNormalization, Relu, LeakyRelu, Add, Sigmoid, Tanh, Mul, Constant, MaxPool, Pad,
  // AveragePool, Shape, Gather, Unsqueeze, Concat, Reshape, Dropout, Gemm, LogSoftmax.
  for (int opset : {13, 17}) {
    SCOPED_TRACE(opset);
    auto m = load_onnx_model(exported("skip_cnn", str("--opset ", opset)), options(3, 16, 16));
    expect_matches_torch(*m, "skip_cnn", {4, 3, 16, 16}, true, DType::kF32, Check::kStep, 1e-4,
                         1e-5);
  }
}

TEST(OnnxModel, SkipCnnEvalStepMatchesTorchInF64) {
  TANDEM_SKIP_WITHOUT_TORCH();
  auto m = load_onnx_model(exported("skip_cnn", "--opset 15"), options(3, 16, 16));
  expect_matches_torch(*m, "skip_cnn", {3, 3, 16, 16}, false, DType::kF64, Check::kStep, 1e-10,
                       1e-10);
}

TEST(OnnxModel, EvalModeExportFoldsBatchNormAndStillMatchesTorch) {
  TANDEM_SKIP_WITHOUT_TORCH();
  // torch.onnx folds batch norm into the convolution in eval exports: the module computes the
  // logits of the nn.Module it came from, with the folded weights as parameters.
  const std::string eval_path = testing::temp_dir() + "/skip_cnn_eval.onnx";
  run_models_script("export skip_cnn '" + eval_path + "' --opset 17 --mode eval --seed 4");
  auto m = load_onnx_model(eval_path, options(3, 16, 16));
  EXPECT_EQ(m->named_buffers().size(), 0u);
  m->eval();
  NoGradGuard no_grad;
  Tensor x = nn_test::random_input({2, 3, 16, 16}, 5);
  auto ref =
      testing::run_torch("onnx_fresh_logits", {{"x", x}}, "{\"model\": \"skip_cnn\", \"seed\": 4}");
  testing::expect_close(m->forward(x), ref.at("logits"), 1e-5, "eval export logits");
}

TEST(OnnxModel, Tf2OnnxStyleNhwcGraphMatchesTorch) {
  TANDEM_SKIP_WITHOUT_TORCH();
  const std::string path = testing::temp_dir() + "/nhwc_dense.onnx";
  run_models_script("graph nhwc_dense '" + path + "'");
  auto m = load_onnx_model(path, options(3, 9, 10));
  EXPECT_EQ(m->input_layout(), OnnxModel::Layout::kNHWC);
  EXPECT_EQ(m->named_parameters().front().first, "sequential/conv2d/kernel");
  Tensor x = nn_test::random_input({3, 3, 9, 10}, 6);
  Tensor y = m->forward(x);
  testing::TensorMap inputs = nn_test::snapshot(m->state_dict(), "state.");
  inputs.emplace_back("x", x);
  auto ref = testing::run_torch("onnx_nhwc_dense", inputs);
  testing::expect_close(y, ref.at("logits"), 1e-5, "nhwc_dense logits");
  // It trains: gradients reach every parameter.
  sum(mul(y, y)).backward();
  for (auto& [n, p] : m->named_parameters()) EXPECT_TRUE(p.grad().defined()) << n;
}

TEST(OnnxModel, HandBuiltGraphOfTheRemainingOperatorsMatchesTorch) {
  TANDEM_SKIP_WITHOUT_TORCH();
  // Identity, Sub, Div by a Constant, Concat, MaxPool with asymmetric pads, AveragePool, Gemm
  // with alpha/beta, Unsqueeze/Squeeze, Gather, Softmax; integer initializers stay constants.
  const std::string path = testing::temp_dir() + "/misc_ops.onnx";
  run_models_script("graph misc_ops '" + path + "'");
  auto m = load_onnx_model(path, options(3, 8, 8));
  EXPECT_EQ(m->named_parameters().size(), 4u);  // w1, shift, w2, c2; not axis1 or order
  Tensor x = nn_test::random_input({3, 3, 8, 8}, 9);
  Tensor y = m->forward(x);
  testing::TensorMap inputs;
  for (auto& [n, t] : m->state_dict()) inputs.emplace_back("state." + n, t.detach().clone());
  inputs.emplace_back("x", x);
  auto ref = testing::run_torch("onnx_misc_ops", inputs);
  testing::expect_close(y, ref.at("logits"), 1e-5, "misc_ops logits");
  sum(mul(y, y)).backward();
  for (auto& [n, p] : m->named_parameters()) EXPECT_TRUE(p.grad().defined()) << n;
}

TEST(OnnxModel, StateLoadsBackAfterASaveAndDropoutFollowsTheMode) {
  TANDEM_SKIP_WITHOUT_TORCH();
  const std::string path = exported("skip_cnn", "--opset 17");
  auto a = load_onnx_model(path, options(3, 16, 16));
  auto b = load_onnx_model(path, options(3, 16, 16));
  const std::string st = testing::temp_dir() + "/skip.safetensors";
  for (auto& [n, p] : a->named_parameters()) {
    NoGradGuard no_grad;
    Tensor q = p;
    mul_(q, 1.5);
  }
  safetensors_save(st, a->state_dict());
  b->load_state_dict(safetensors_load(st).tensors, /*strict=*/true);
  a->eval();
  b->eval();
  NoGradGuard no_grad;
  Tensor x = nn_test::random_input({2, 3, 16, 16}, 8);
  testing::expect_close(b->forward(x), a->forward(x), 0.0, "reloaded logits");
}

TEST(OnnxModel, UnsupportedOperatorIsAConfigErrorNamingKeyNodeAndOperator) {
  TANDEM_SKIP_WITHOUT_TORCH();
  const std::string path = testing::temp_dir() + "/unsupported.onnx";
  run_models_script("graph unsupported_op '" + path + "'");
  try {
    load_onnx_model(path, options(3, 8, 8));
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("model.onnx: " + path), std::string::npos) << msg;
    EXPECT_NE(msg.find("node 'the_erf' (Erf)"), std::string::npos) << msg;
    EXPECT_NE(msg.find("operator Erf is not supported"), std::string::npos) << msg;
  }
}

TEST(OnnxModel, InputThatDoesNotFitTheSamplesIsAConfigErrorNamingTheInput) {
  TANDEM_SKIP_WITHOUT_TORCH();
  const std::string path = exported("skip_cnn", "--opset 17");
  try {
    load_onnx_model(path, options(1, 28, 28));
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("model.onnx: " + path), std::string::npos) << msg;
    EXPECT_NE(msg.find("input 'input' has shape [?, 3, 16, 16]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("1x28x28"), std::string::npos) << msg;
  }
}

TEST(OnnxModel, ShapeThatDoesNotResolveIsFoundBeforeTrainingAndNamesTheNode) {
  TANDEM_SKIP_WITHOUT_TORCH();
  // A declared input of 16x16 fed 3x16x16 samples fits; a Gemm sized for 16x16 inputs fed 3x24x24
  // does not fit once the graph runs: found by the dry run, naming the Gemm.
  const std::string path = testing::temp_dir() + "/fixed.onnx";
  run_models_script("export tiny_cnn '" + path + "' --size 16 --fixed-batch");
  auto ok = load_onnx_model(path, options(3, 16, 16));  // a fixed batch of 2: still fine
  EXPECT_EQ(ok->num_outputs(), 10);
  const std::string skip = exported("skip_cnn", "--opset 17");
  // Strip the declared input shape so only the dry run can notice.
  const std::string loose = testing::temp_dir() + "/loose.onnx";
  const std::string cmd =
      python() +
      " -c \"import onnx,sys; m=onnx.load(sys.argv[1]); "
      "[d.ClearField('dim_value') or d.__setattr__('dim_param','d') for d in "
      "m.graph.input[0].type.tensor_type.shape.dim]; onnx.save(m, sys.argv[2])\" '" +
      skip + "' '" + loose + "'";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  try {
    load_onnx_model(loose, options(3, 24, 24));
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("model.onnx: " + loose), std::string::npos) << msg;
    EXPECT_NE(msg.find("(Gemm)"), std::string::npos) << msg;
    EXPECT_NE(msg.find("found by running the graph on 2 samples of 3x24x24"), std::string::npos)
        << msg;
  }
}

TEST(OnnxModel, NotAnOnnxFileIsAConfigError) {
  const std::string path = testing::temp_dir() + "/garbage.onnx";
  { std::ofstream(path) << "this is not protobuf \xff\xff\xff"; }
  EXPECT_THROW(load_onnx_model(path, options(3, 8, 8)), ConfigError);
  EXPECT_THROW(load_onnx_model(testing::temp_dir() + "/missing.onnx", options(3, 8, 8)), IoError);
}

TEST(OnnxModel, OperatorTableListsTheRequiredOperators) {
  std::set<std::string> ops;
  for (const auto& [op, attrs] : onnx_operator_table()) ops.insert(op);
  for (const char* op : {"Conv",
                         "Gemm",
                         "MatMul",
                         "Add",
                         "Mul",
                         "Relu",
                         "LeakyRelu",
                         "Sigmoid",
                         "Tanh",
                         "Softmax",
                         "LogSoftmax",
                         "MaxPool",
                         "AveragePool",
                         "GlobalAveragePool",
                         "BatchNormalization",
                         "Dropout",
                         "Flatten",
                         "Reshape",
                         "Concat",
                         "Identity",
                         "Constant"})
    EXPECT_TRUE(ops.count(op)) << op;
}

}  // namespace
}  // namespace tandem
