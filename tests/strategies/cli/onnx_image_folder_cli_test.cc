// `tandem train` on a network from ONNX and images from a folder, as a user runs it: a tiny CNN
// exported by PyTorch trains on a generated image folder (Fashion-MNIST as 32x32 color JPEGs and
// PNGs, one corrupt file) and its loss falls; the checkpoint's model.safetensors loads strictly
// into the PyTorch module and gives tandem's logits; mirrored, ddp and parameter_server train the
// same file; and the errors exit 2 before training, naming the key, the node and the operator.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>

#include "core/autograd/grad_mode.h"
#include "core/io/safetensors.h"
#include "core/nn/onnx_model.h"
#include "core/ops/ops.h"
#include "core/random/philox.h"
#include "tests/support/test_support.h"

#ifndef TANDEM_BINARY
#error "TANDEM_BINARY (the path of the tandem executable) must be defined by the build"
#endif

namespace tandem {
namespace {

namespace fs = std::filesystem;

struct Outcome {
  int rc = -1;
  std::string out, err;
};

Outcome run(const std::string& cmd_in) {
  const std::string dir = testing::temp_dir();
  const std::string cmd = cmd_in + " >'" + dir + "/out' 2>'" + dir + "/err' </dev/null";
  const int status = std::system(cmd.c_str());
  Outcome o;
  o.rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  o.out = read_file(dir + "/out");
  o.err = read_file(dir + "/err");
  return o;
}

Outcome tandem(const std::string& args) {
  return run("'" TANDEM_BINARY "' " + args);
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

std::string script(const std::string& name) {
  return "/usr/bin/python3 '" TANDEM_SOURCE_DIR "/tests/reference/" + name + "' ";
}

// The generated folder and the exported network, made once per process.
struct Fixture {
  std::string dir, images, net, bad_op, skip16;
  bool ok = false;
};
const Fixture& fixture() {
  static const Fixture f = [] {
    Fixture x;
    x.dir = testing::temp_dir();
    x.images = x.dir + "/images";
    x.net = x.dir + "/tiny.onnx";
    x.bad_op = x.dir + "/unsupported.onnx";
    x.skip16 = x.dir + "/skip16.onnx";
    x.ok = run(script("image_folder_ref.py") + "fashion '" + x.images + "' 256 32 --corrupt").rc ==
               0 &&
           run(script("onnx_models.py") + "export tiny_cnn '" + x.net + "' --size 32").rc == 0 &&
           run(script("onnx_models.py") + "graph unsupported_op '" + x.bad_op + "'").rc == 0 &&
           run(script("onnx_models.py") + "export skip_cnn '" + x.skip16 + "' --size 16").rc == 0;
    return x;
  }();
  return f;
}

#define SKIP_WITHOUT_PYTHON_TOOLS()                                                             \
  do {                                                                                          \
    TANDEM_SKIP_WITHOUT_TORCH();                                                                \
    if (!fixture().ok) GTEST_SKIP() << "python3-pil / python3-onnx missing: fixture not built"; \
  } while (0)

// An experiment on the fixture; `extra` is appended YAML.
std::string experiment(const std::string& run_dir, const std::string& extra = "") {
  const Fixture& f = fixture();
  fs::create_directories(run_dir);
  const std::string path = run_dir + "/exp.yaml";
  std::ofstream(path) << "seed: 3\n"
                         "model:\n  onnx: "
                      << f.net
                      << "\n"
                         "data:\n  name: image_folder\n  path: "
                      << f.images
                      << "\n"
                         "  image_size: 32\n  batch_size: 32\n  workers: 2\n"
                         "optimizer:\n  name: sgd\n  lr: 0.1\n"
                         "training:\n  epochs: 3\n  threads: 1\n"
                         "logging:\n  dir: "
                      << run_dir
                      << "/logs\n  every_steps: 1\n"
                         "  progress: plain\n  tensorboard: false\n"
                         "checkpoint:\n  dir: "
                      << run_dir << "/ck\n"
                      << extra;
  return path;
}

std::vector<double> logged_losses(const std::string& metrics) {
  std::vector<double> losses;
  std::istringstream in(read_file(metrics));
  std::string line;
  std::regex re(R"("train/loss":([-0-9.eE+]+))");
  std::smatch m;
  while (std::getline(in, line))
    if (std::regex_search(line, m, re)) losses.push_back(std::stod(m[1]));
  return losses;
}

TEST(OnnxImageFolderCli, TinyOnnxCnnTrainsOnAnImageFolderAndItsCheckpointLoadsIntoTorch) {
  SKIP_WITHOUT_PYTHON_TOOLS();
  const std::string run_dir = testing::temp_dir() + "/train";
  Outcome o = tandem("train '" + experiment(run_dir) + "'");
  ASSERT_EQ(o.rc, 0) << o.out << o.err;
  // One warning for the one corrupt file, however often it is met.
  size_t warnings = 0;
  for (size_t at = 0; (at = o.err.find("00000_corrupt.jpg", at)) != std::string::npos; ++at)
    ++warnings;
  EXPECT_EQ(warnings, 1u) << o.err;
  // ... and each epoch's count of the samples it replaced: the file is met once an epoch (unless
  // it falls in the one sample of 257 that drop_last leaves out).
  const std::regex per_epoch(R"(warning: epoch (\d): (\d+) sample\(s\) skipped)");
  int epochs_reported = 0;
  for (std::sregex_iterator it(o.err.begin(), o.err.end(), per_epoch), end; it != end; ++it) {
    EXPECT_EQ((*it)[2].str(), "1") << it->str();
    ++epochs_reported;
  }
  EXPECT_GE(epochs_reported, 2) << o.err;
  EXPECT_TRUE(contains(o.out, "final: epoch=3 step=24 ")) << o.out;
  const std::vector<double> losses = logged_losses(run_dir + "/logs/metrics.jsonl");
  ASSERT_EQ(losses.size(), 24u);
  const double first = (losses[0] + losses[1] + losses[2]) / 3;
  const double last = (losses[21] + losses[22] + losses[23]) / 3;
  EXPECT_LT(last, first - 0.2) << "loss did not fall: " << first << " -> " << last;

  // model.safetensors -> torch's TinyCNN with load_state_dict(strict=True), same eval logits.
  const std::string ck = run_dir + "/ck/step-00000024/model.safetensors";
  ASSERT_TRUE(fs::exists(ck));
  SafetensorsFile saved = safetensors_load(ck);
  OnnxModelOptions oo;
  oo.channels = 3;
  oo.height = oo.width = 32;
  auto m = load_onnx_model(fixture().net, oo);
  m->load_state_dict(saved.tensors, /*strict=*/true);
  m->eval();
  NoGradGuard no_grad;
  Generator gen(4, 7);
  Tensor x = randn({3, 3, 32, 32}, gen);
  testing::TensorMap inputs;
  for (auto& [n, t] : saved.tensors) inputs.emplace_back("state." + n, t);
  inputs.emplace_back("x", x);
  inputs.emplace_back("target", from_vector({1, 2, 3}, {3}, DType::kI64));
  auto ref = testing::run_torch("onnx_model_step", inputs,
                                "{\"model\": \"tiny_cnn\", \"train\": false, \"dtype\": \"f32\", "
                                "\"size\": 32, \"step\": false}");
  testing::expect_close(m->forward(x), ref.at("logits"), 1e-5, "checkpoint logits");
}

TEST(OnnxImageFolderCli, MirroredDdpAndParameterServerTrainTheSameOnnxNetwork) {
  SKIP_WITHOUT_PYTHON_TOOLS();
  const std::string mirrored = testing::temp_dir() + "/mirrored";
  Outcome o =
      tandem("train '" + experiment(mirrored, "strategy:\n  name: mirrored\n  replicas: 2\n") +
             "' training.max_steps=3 data.augment=true");
  ASSERT_EQ(o.rc, 0) << o.out << o.err;
  EXPECT_TRUE(contains(o.out, " step=3 train_loss=")) << o.out;
  const std::string ddp = testing::temp_dir() + "/ddp";
  o = tandem("launch --nproc-per-node 2 '" + experiment(ddp, "strategy:\n  name: ddp\n") +
             "' training.max_steps=3 data.augment=true");
  ASSERT_EQ(o.rc, 0) << o.out << o.err;
  EXPECT_TRUE(contains(o.out, " step=3 train_loss=")) << o.out;
  EXPECT_TRUE(fs::exists(ddp + "/ck/step-00000003/model.safetensors"));
  const std::string ps = testing::temp_dir() + "/ps";
  o = tandem("launch --nproc-per-node 2 --num-ps 1 '" +
             experiment(ps, "strategy:\n  name: parameter_server\n") + "' training.max_steps=3");
  ASSERT_EQ(o.rc, 0) << o.out << o.err;
  EXPECT_TRUE(contains(o.out, " step=3 train_loss=")) << o.out;
}

TEST(OnnxImageFolderCli, UnsupportedOperatorExitsTwoNamingKeyNodeAndOperator) {
  SKIP_WITHOUT_PYTHON_TOOLS();
  const std::string dir = testing::temp_dir() + "/bad_op";
  Outcome o = tandem("train '" + experiment(dir) + "' model.onnx=" + fixture().bad_op +
                     " data.image_size=8");
  EXPECT_EQ(o.rc, 2) << o.out << o.err;
  EXPECT_TRUE(contains(o.err, "model.onnx: " + fixture().bad_op)) << o.err;
  EXPECT_TRUE(contains(o.err, "node 'the_erf' (Erf)")) << o.err;
  EXPECT_TRUE(contains(o.err, "operator Erf is not supported")) << o.err;
  EXPECT_FALSE(fs::exists(dir + "/ck")) << "nothing may be trained or saved";
}

TEST(OnnxImageFolderCli, InputThatDoesNotMatchTheImageSizeExitsTwo) {
  SKIP_WITHOUT_PYTHON_TOOLS();
  const std::string dir = testing::temp_dir() + "/mismatch";
  Outcome o = tandem("train '" + experiment(dir) + "' model.onnx=" + fixture().skip16);
  EXPECT_EQ(o.rc, 2) << o.out << o.err;
  EXPECT_TRUE(contains(o.err, "model.onnx: " + fixture().skip16)) << o.err;
  EXPECT_TRUE(contains(o.err, "input 'input' has shape [?, 3, 16, 16]")) << o.err;
  EXPECT_TRUE(contains(o.err, "3x32x32")) << o.err;
}

TEST(OnnxImageFolderCli, ConfigRulesForTheNewKeysExitTwo) {
  SKIP_WITHOUT_PYTHON_TOOLS();
  const std::string exp = experiment(testing::temp_dir() + "/rules");
  Outcome o = tandem("config validate '" + exp + "' model.name=resnet18");
  EXPECT_EQ(o.rc, 2);
  EXPECT_TRUE(contains(o.err, "conflicts with model.onnx")) << o.err;
  o = tandem("config validate '" + exp + "' model.onnx=" + testing::temp_dir() + "/nope.onnx");
  EXPECT_EQ(o.rc, 2);
  EXPECT_TRUE(contains(o.err, "model.onnx: file")) << o.err;
  o = tandem("config validate '" + exp + "' data.path=null");
  EXPECT_EQ(o.rc, 2);
  EXPECT_TRUE(contains(o.err, "image_folder' needs data.path")) << o.err;
  o = tandem("config show '" + exp + "'");
  EXPECT_EQ(o.rc, 0) << o.err;
  EXPECT_TRUE(contains(o.out, "name: onnx")) << o.out;
  EXPECT_TRUE(contains(o.out, "image_size: 32")) << o.out;
}

}  // namespace
}  // namespace tandem
