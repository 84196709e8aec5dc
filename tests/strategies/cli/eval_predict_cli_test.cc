// `tandem eval` and `tandem predict` run as a user runs them: eval of the last checkpoint gives
// the numbers the trainer's own final evaluation printed, with a confusion matrix that adds up;
// predict on PNGs of Fashion-MNIST test images picks the class the checkpoint's model picks on the
// same samples read from the IDX files (in this process); bad paths and checkpoints exit 2.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <string>

#include "core/autograd/grad_mode.h"
#include "core/data/transforms.h"
#include "core/io/checkpoint.h"
#include "core/io/safetensors.h"
#include "core/ops/ops.h"
#include "strategies/trainer/builders.h"
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

// An experiment in `dir`: `data` is the data section's YAML.
std::string experiment(const std::string& dir, const std::string& data, const std::string& model) {
  const std::string path = dir + "/exp.yaml";
  std::ofstream(path) << "seed: 2\nmodel: " << model << "\ndata: " << data
                      << "\noptimizer: {name: sgd, lr: 0.05, momentum: 0.9}\n"
                         "training: {epochs: 1, threads: 1}\n"
                         "checkpoint: {dir: '"
                      << dir << "/ck', every_steps: 0}\nlogging: {dir: '" << dir
                      << "/logs', progress: none, tensorboard: false}\n";
  return path;
}

double field(const std::string& line, const std::string& key) {
  std::smatch m;
  const std::regex re(" " + key + "=([0-9.]+)");
  EXPECT_TRUE(std::regex_search(line, m, re)) << key << " in " << line;
  return m.size() > 1 ? std::stod(m[1]) : NAN;
}

TEST(EvalPredictCli, EvalOfTheLastCheckpointGivesTheTrainersFinalTestMetrics) {
  const std::string dir = testing::temp_dir();
  const std::string exp = experiment(dir,
                                     "{name: synthetic, synthetic_shape: [1, 8, 8], "
                                     "synthetic_samples: 512, batch_size: 16, workers: 1}",
                                     "{name: mlp, hidden: [32], num_classes: 10}");
  Outcome t = tandem("train '" + exp + "'");
  ASSERT_EQ(t.rc, 0) << t.out << t.err;
  Outcome e = tandem("eval '" + exp + "' --json");
  ASSERT_EQ(e.rc, 0) << e.out << e.err;
  const nlohmann::json j = nlohmann::json::parse(e.out);
  EXPECT_EQ(j["checkpoint"], dir + "/ck/step-00000032") << "no best/: the newest step-*";
  EXPECT_EQ(j["samples"], 128);  // synthetic: a quarter of synthetic_samples
  EXPECT_NEAR(j["loss"].get<double>(), field(t.out, "test_loss"), 6e-5);
  EXPECT_NEAR(j["accuracy"].get<double>(), field(t.out, "test_accuracy"), 6e-5);
  int64_t total = 0, diagonal = 0;
  for (size_t c = 0; c < 10; ++c) {
    int64_t row = 0;
    for (size_t p = 0; p < 10; ++p) row += j["confusion_matrix"][c][p].get<int64_t>();
    total += row;
    diagonal += j["confusion_matrix"][c][c].get<int64_t>();
    if (row > 0) {
      EXPECT_DOUBLE_EQ(j["per_class_accuracy"][c].get<double>(),
                       static_cast<double>(j["confusion_matrix"][c][c].get<int64_t>()) / row);
    }
  }
  EXPECT_EQ(total, 128);
  EXPECT_DOUBLE_EQ(j["accuracy"].get<double>(), diagonal / 128.0);
  EXPECT_GE(j["top5_accuracy"].get<double>(), j["accuracy"].get<double>());
  // The table names the same numbers.
  Outcome table = tandem("eval '" + exp + "'");
  ASSERT_EQ(table.rc, 0) << table.err;
  EXPECT_TRUE(contains(table.out, "confusion matrix (rows: true class")) << table.out;
}

TEST(EvalPredictCli, MissingCheckpointsPathsAndUnreadableImagesExitTwoNamingThem) {
  const std::string dir = testing::temp_dir();
  const std::string exp = experiment(
      dir, "{name: synthetic, synthetic_shape: [3, 8, 8], synthetic_samples: 64}", "{name: mlp}");
  Outcome o = tandem("eval '" + exp + "'");
  EXPECT_EQ(o.rc, 2);
  EXPECT_TRUE(contains(o.err, "no checkpoint in checkpoint.dir '" + dir + "/ck'")) << o.err;
  o = tandem("eval '" + exp + "' --checkpoint '" + dir + "/nowhere'");
  EXPECT_EQ(o.rc, 2);
  EXPECT_TRUE(contains(o.err, dir + "/nowhere: not a checkpoint directory")) << o.err;
  o = tandem("eval '" + exp + "' --split validation");
  EXPECT_EQ(o.rc, 2);
  EXPECT_TRUE(contains(o.err, "no validation split")) << o.err;
  o = tandem("predict '" + exp + "' '" + dir + "/missing.png'");
  EXPECT_EQ(o.rc, 2);
  EXPECT_TRUE(contains(o.err, "'" + dir + "/missing.png' does not exist")) << o.err;
  std::ofstream(dir + "/bad.png") << "not a png";
  ASSERT_EQ(tandem("train '" + exp + "' training.max_steps=1").rc, 0);
  o = tandem("predict '" + exp + "' '" + dir + "/bad.png'");
  EXPECT_EQ(o.rc, 2);
  EXPECT_TRUE(contains(o.err, dir + "/bad.png")) << o.err;
  EXPECT_EQ(std::count(o.err.begin(), o.err.end(), '\n'), 1) << "one line: " << o.err;
}

TEST(EvalPredictCli, PredictOnFashionMnistPngsPicksTheCheckpointModelsClass) {
  TANDEM_SKIP_WITHOUT_TORCH();  // /usr/bin/python3 with numpy and PIL writes the PNGs
  if (!fs::exists("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"))
    GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  const std::string dir = testing::temp_dir();
  const std::string exp =
      experiment(dir, "{name: fashion_mnist, batch_size: 64, workers: 1}", "{name: mlp}");
  ASSERT_EQ(tandem("train '" + exp + "' training.max_steps=60").rc, 0);
  // The first 8 test images as 28x28 grayscale PNGs, named by index.
  fs::create_directories(dir + "/png");
  ASSERT_EQ(run("/usr/bin/python3 -c \"import gzip, numpy as np; from PIL import Image; "
                "x = np.frombuffer(gzip.open('/usr/share/datasets/fashion-mnist/"
                "t10k-images-idx3-ubyte.gz').read(), np.uint8, offset=16).reshape(-1, 28, 28); "
                "[Image.fromarray(x[i]).save('" +
                dir + "/png/%d.png' % i) for i in range(8)]\"")
                .rc,
            0);
  Outcome o = tandem("predict '" + exp + "' --top-k 2 --json '" + dir + "/png'");
  ASSERT_EQ(o.rc, 0) << o.out << o.err;

  // The reference: the checkpoint's model on the same samples from the IDX file.
  ExperimentConfig cfg = load_config(exp, {});
  std::shared_ptr<const Dataset> test = build_dataset(cfg, "test");
  std::shared_ptr<Module> model = build_model(cfg, *test);
  model->load_state_dict(load_checkpoint(dir + "/ck/step-00000060").model, true);
  model->eval();
  NoGradGuard no_grad;
  const SampleShape s = test->sample_shape();
  Transforms tf(s, transform_options(cfg, s, false));
  Tensor x = zeros({8, 1, 28, 28});
  std::vector<uint8_t> px(784);
  for (int64_t i = 0; i < 8; ++i) {
    int64_t label;
    test->get(i, px.data(), &label);
    tf.apply(px.data(), x.data<float>() + i * 784, 0, i);
  }
  const std::vector<double> probs = softmax(model->forward(x), 1).to_vector();
  std::istringstream lines(o.out);
  int64_t i = 0;
  for (std::string line; std::getline(lines, line); ++i) {
    const nlohmann::json j = nlohmann::json::parse(line);
    ASSERT_LT(i, 8);
    EXPECT_EQ(j["path"], dir + "/png/" + std::to_string(i) + ".png");
    int64_t best = 0;
    for (int64_t c = 1; c < 10; ++c)
      if (probs[i * 10 + c] > probs[i * 10 + best]) best = c;
    EXPECT_EQ(j["top"][0]["index"], best) << line;
    EXPECT_NEAR(j["top"][0]["probability"].get<double>(), probs[i * 10 + best], 1e-6);
    EXPECT_EQ(j["top"].size(), 2u);
  }
  EXPECT_EQ(i, 8);
  const std::vector<std::string> names = {"T-shirt/top", "Trouser",   "Pullover", "Dress",
                                          "Coat",        "Sandal",    "Shirt",    "Sneaker",
                                          "Bag",         "Ankle boot"};
  const nlohmann::json first = nlohmann::json::parse(o.out.substr(0, o.out.find('\n')));
  EXPECT_EQ(first["top"][0]["class"], names[first["top"][0]["index"].get<size_t>()]);
}

}  // namespace
}  // namespace tandem
