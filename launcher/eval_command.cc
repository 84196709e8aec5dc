// tandem eval / tandem predict: find the checkpoint, rebuild the model from the experiment, load
// the weights strictly, then evaluate a split (sharded) or classify image files (one process).
#include "launcher/eval_command.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "configs/schema/config.h"
#include "core/autograd/grad_mode.h"
#include "core/base/error.h"
#include "core/data/image_crop.h"
#include "core/data/image_decode.h"
#include "core/data/image_folder.h"
#include "core/io/checkpoint.h"
#include "core/ops/ops.h"
#include "core/parallel/parallel.h"
#include "launcher/heartbeat.h"
#include "strategies/process_environment.h"
#include "strategies/single/single_strategy.h"
#include "strategies/strategy_factory.h"
#include "strategies/trainer/builders.h"
#include "strategies/trainer/evaluation.h"

namespace tandem {
namespace {

namespace fs = std::filesystem;

// --checkpoint, else <checkpoint.dir>/best, else the newest step-*; loaded and verified.
LoadedCheckpoint find_checkpoint(const ExperimentConfig& cfg, const std::string& given) {
  std::string path = given;
  if (path.empty()) {
    const std::string best = cfg.checkpoint.dir + "/" + kBestCheckpointName;
    std::error_code ec;
    if (fs::is_directory(best, ec)) {
      path = best;
    } else if (auto latest = find_latest_checkpoint(cfg.checkpoint.dir)) {
      path = *latest;
    } else {
      throw ConfigError(str("no checkpoint in checkpoint.dir '", cfg.checkpoint.dir,
                            "' (neither best/ nor a step-* directory that loads); train first or "
                            "pass --checkpoint DIR"));
    }
  }
  try {
    return load_checkpoint(path);
  } catch (const IoError& e) {
    throw ConfigError(str("--checkpoint: ", e.what()));
  }
}

// The model of the experiment with the checkpoint's weights, on the training device, in eval mode.
std::shared_ptr<Module> load_model(const ExperimentConfig& cfg, const Dataset& data,
                                   const LoadedCheckpoint& ck, int local_rank) {
  const Device device = resolve_training_device(cfg, local_rank);
  std::shared_ptr<Module> model = build_model(cfg, data);
  try {
    model->load_state_dict(ck.model, /*strict=*/true);
  } catch (const ConfigError& e) {
    throw ConfigError(
        str("checkpoint ", ck.path, " does not fit the model of ", "this experiment: ", e.what()));
  }
  model->to(device);
  model->eval();
  return model;
}

// Logits per sample of the model (the width of its output), from one zero sample.
int64_t logits_width(Module& model, const SampleShape& s) {
  NoGradGuard no_grad;
  const std::vector<Tensor> params = model.parameters();
  Tensor x = zeros({1, s.channels, s.height, s.width});
  return model.forward(model_input(x, params)).shape()[1];
}

std::vector<std::string> class_names(const ExperimentConfig& cfg, const Dataset& data,
                                     int64_t count) {
  std::vector<std::string> names;
  if (auto* folder = dynamic_cast<const ImageFolderDataset*>(&data)) names = folder->classes();
  if (cfg.data.name == DatasetName::kFashionMnist)
    names = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
             "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
  if (cfg.data.name == DatasetName::kCifar10)
    names = {"airplane", "automobile", "bird",  "cat",  "deer",
             "dog",      "frog",       "horse", "ship", "truck"};
  for (int64_t i = static_cast<int64_t>(names.size()); i < count; ++i)
    names.push_back(std::to_string(i));
  names.resize(static_cast<size_t>(count));
  return names;
}

std::string fixed(double v, int precision = 4) {
  if (std::isnan(v)) return "-";
  std::ostringstream os;
  os << std::fixed << std::setprecision(precision) << v;
  return os.str();
}

// Under `tandem launch` or mpirun (several processes): ddp's communicator for the sums, whatever
// strategy the experiment trains with; one process: no communication.
std::unique_ptr<Strategy> eval_strategy(ExperimentConfig cfg, const ProcessEnvironment& process,
                                        StrategyBuild* keep) {
  if (process.world_size == 1) return std::make_unique<SingleStrategy>();
  cfg.strategy.name = StrategyName::kDdp;
  *keep = make_strategy(cfg, process);
  return std::move(keep->strategy);
}

void print_eval_text(std::ostream& out, const EvalMetrics& m, const std::vector<std::string>& names,
                     const LoadedCheckpoint& ck, const std::string& split) {
  out << "checkpoint " << ck.path << " (step " << ck.state.step << ", epoch " << ck.state.epoch
      << "), " << split << " split: " << m.count << " samples\n";
  out << "loss " << fixed(m.loss) << "  accuracy " << fixed(m.accuracy) << "  top5 "
      << fixed(m.top5) << "\n";
  size_t width = 5;
  for (const auto& n : names) width = std::max(width, n.size());
  out << "per-class accuracy:\n";
  const std::vector<double> per_class = m.per_class_accuracy();
  for (int64_t c = 0; c < m.num_classes; ++c) {
    int64_t total = 0;
    for (int64_t p = 0; p < m.num_classes; ++p) total += m.confusion_at(c, p);
    out << "  " << std::left << std::setw(static_cast<int>(width)) << names[c] << std::right << " "
        << fixed(per_class[c]) << " (" << total << " samples)\n";
  }
  out << "confusion matrix (rows: true class, columns: predicted class, in the order above):\n";
  for (int64_t c = 0; c < m.num_classes; ++c) {
    out << "  " << std::left << std::setw(static_cast<int>(width)) << names[c] << std::right;
    for (int64_t p = 0; p < m.num_classes; ++p) out << " " << std::setw(6) << m.confusion_at(c, p);
    out << "\n";
  }
}

nlohmann::json eval_json(const EvalMetrics& m, const std::vector<std::string>& names,
                         const LoadedCheckpoint& ck, const std::string& split) {
  nlohmann::json j;
  j["checkpoint"] = ck.path;
  j["step"] = ck.state.step;
  j["epoch"] = ck.state.epoch;
  j["split"] = split;
  j["samples"] = m.count;
  j["loss"] = m.loss;
  j["accuracy"] = m.accuracy;
  j["top5_accuracy"] = m.top5;
  j["classes"] = names;
  nlohmann::json per_class = nlohmann::json::array();
  for (double a : m.per_class_accuracy())
    per_class.push_back(std::isnan(a) ? nlohmann::json() : nlohmann::json(a));
  j["per_class_accuracy"] = per_class;
  nlohmann::json rows = nlohmann::json::array();
  for (int64_t c = 0; c < m.num_classes; ++c) {
    nlohmann::json row = nlohmann::json::array();
    for (int64_t p = 0; p < m.num_classes; ++p) row.push_back(m.confusion_at(c, p));
    rows.push_back(row);
  }
  j["confusion_matrix"] = rows;
  return j;
}

bool is_image_name(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char ch) { return std::tolower(ch); });
  return ext == ".jpg" || ext == ".jpeg" || ext == ".png";
}

// The files named, directories expanded into their image files (recursively, sorted).
std::vector<std::string> expand_inputs(const std::vector<std::string>& inputs) {
  std::vector<std::string> files;
  for (const std::string& in : inputs) {
    std::error_code ec;
    const fs::file_status st = fs::status(in, ec);
    TANDEM_CHECK_T(ConfigError, fs::exists(st), "predict: '", in, "' does not exist");
    if (!fs::is_directory(st)) {
      files.push_back(in);
      continue;
    }
    std::vector<std::string> found;
    for (fs::recursive_directory_iterator it(in, ec), end; !ec && it != end; it.increment(ec))
      if (it->is_regular_file(ec) && is_image_name(it->path()))
        found.push_back(it->path().string());
    TANDEM_CHECK_T(ConfigError, !ec, "predict: cannot list '", in, "': ", ec.message());
    TANDEM_CHECK_T(ConfigError, !found.empty(), "predict: '", in,
                   "' holds no .jpg, .jpeg or .png file");
    std::sort(found.begin(), found.end());
    files.insert(files.end(), found.begin(), found.end());
  }
  return files;
}

// One image file as the model's u8 input: image_folder's evaluation crop; for the built-in data
// sets the whole image resized to their H x W (and to gray with PIL's "L" weights for 1 channel).
void load_input(const std::string& path, const ExperimentConfig& cfg, const SampleShape& s,
                uint8_t* out) {
  try {
    if (cfg.data.name == DatasetName::kImageFolder) {
      load_eval_image(path, s.height, out);
      return;
    }
    RgbImage img = decode_image_file(path);
    std::vector<uint8_t> rgb(static_cast<size_t>(3 * s.height * s.width));
    std::vector<uint8_t> scratch;
    resize_region(img, {0, 0, img.height, img.width}, s.width, s.height, {0, 0, s.height, s.width},
                  rgb.data(), &scratch);
    const size_t plane = static_cast<size_t>(s.height * s.width);
    if (s.channels == 3) {
      std::copy(rgb.begin(), rgb.end(), out);
      return;
    }
    // PIL's convert("L"): L = R * 299/1000 + G * 587/1000 + B * 114/1000, in 16-bit fixed point.
    for (size_t i = 0; i < plane; ++i)
      out[i] = static_cast<uint8_t>(
          (rgb[i] * 19595 + rgb[plane + i] * 38470 + rgb[2 * plane + i] * 7471 + 0x8000) >> 16);
  } catch (const IoError& e) {
    throw ConfigError(str("predict: ", e.what()));
  }
}

}  // namespace

void add_eval_commands(CLI::App& app, EvalCommand& e, PredictCommand& p) {
  e.app = app.add_subcommand(
      "eval",
      "Evaluate a checkpoint: loss, accuracy, top-5, per-class accuracy and the confusion matrix "
      "on the test (or validation) split. Several processes (tandem launch --exec, mpirun) each "
      "evaluate a shard; rank 0 prints");
  e.app
      ->add_option("config", e.config_path, "the experiment (YAML) the checkpoint was trained with")
      ->required();
  e.app->add_option("--checkpoint", e.checkpoint,
                    "checkpoint directory (default: <checkpoint.dir>/best, else the newest "
                    "step-*)");
  e.app
      ->add_option("--split", e.split,
                   "test (image_folder: data.path/val) or validation (data.validation_fraction "
                   "held out of the training split)")
      ->check(CLI::IsMember({"test", "validation"}));
  e.app->add_flag("--json", e.json, "print one JSON object instead of the table");
  e.app->add_option("overrides", e.overrides, "key.path=value pairs that override the file");

  p.app = app.add_subcommand(
      "predict",
      "Classify image files with a checkpoint: one line per image with the top-k classes and "
      "their probabilities (class names from image_folder's folders)");
  p.app
      ->add_option("config", p.config_path, "the experiment (YAML) the checkpoint was trained with")
      ->required();
  p.app->add_option("inputs", p.inputs, "image files (.jpg, .jpeg, .png) or folders of them")
      ->required();
  p.app->add_option("--checkpoint", p.checkpoint,
                    "checkpoint directory (default: <checkpoint.dir>/best, else the newest "
                    "step-*)");
  p.app->add_option("--top-k", p.top_k, "classes per image (default 5)")
      ->check(CLI::PositiveNumber);
  p.app->add_flag("--json", p.json,
                  "one JSON object per line: {\"path\", \"top\": [{\"class\", \"index\", "
                  "\"probability\"}...]}");
}

int cmd_eval(EvalCommand& c, std::ostream& out) {
  ExperimentConfig cfg = load_config(c.config_path, c.overrides);
  const ProcessEnvironment process = detect_environment(current_environment());
  auto heartbeat = WorkerHeartbeat::start_under_launcher(process);
  set_num_threads(cfg.training.threads);
  const DataSplits splits = build_data_splits(cfg);
  std::shared_ptr<const Dataset> data = c.split == "test" ? splits.test : splits.validation;
  TANDEM_CHECK_T(ConfigError, data != nullptr,
                 "--split validation: the experiment has no "
                 "validation split (set data.validation_fraction)");
  const LoadedCheckpoint ck = find_checkpoint(cfg, c.checkpoint);
  StrategyBuild keep;
  std::unique_ptr<Strategy> strategy = eval_strategy(cfg, process, &keep);
  std::shared_ptr<Module> model = load_model(cfg, *data, ck, process.local_rank);
  const SampleShape shape = data->sample_shape();
  EvalOptions eo;
  eo.batch =
      std::max<int64_t>(cfg.data.batch_size, 256) / strategy->world_size() * strategy->world_size();
  eo.workers = cfg.data.workers;
  eo.num_classes = std::max(data->num_classes(), logits_width(*model, shape));
  Transforms tf(shape, transform_options(cfg, shape, false));
  const EvalMetrics m = evaluate(*model, *strategy, data, tf, eo);
  strategy->finish();
  if (!strategy->is_chief()) return 0;
  const std::vector<std::string> names = class_names(cfg, *splits.test, eo.num_classes);
  if (c.json)
    out << eval_json(m, names, ck, c.split).dump() << "\n";
  else
    print_eval_text(out, m, names, ck, c.split);
  out << std::flush;
  return 0;
}

int cmd_predict(PredictCommand& c, std::ostream& out) {
  ExperimentConfig cfg = load_config(c.config_path, {});
  set_num_threads(cfg.training.threads);
  const std::vector<std::string> files = expand_inputs(c.inputs);
  std::shared_ptr<const Dataset> train = build_dataset(cfg, "train");
  const LoadedCheckpoint ck = find_checkpoint(cfg, c.checkpoint);
  std::shared_ptr<Module> model = load_model(cfg, *train, ck, 0);
  const SampleShape s = train->sample_shape();
  const int64_t width = std::max(train->num_classes(), logits_width(*model, s));
  const std::vector<std::string> names = class_names(cfg, *train, width);
  Transforms tf(s, transform_options(cfg, s, false));
  NoGradGuard no_grad;
  const std::vector<Tensor> params = model->parameters();
  std::vector<uint8_t> pixels(static_cast<size_t>(s.numel()));
  constexpr size_t kBatch = 64;
  for (size_t first = 0; first < files.size(); first += kBatch) {
    const size_t n = std::min(kBatch, files.size() - first);
    Tensor x = zeros({static_cast<int64_t>(n), s.channels, s.height, s.width});
    for (size_t i = 0; i < n; ++i) {
      load_input(files[first + i], cfg, s, pixels.data());
      tf.apply(pixels.data(), x.data<float>() + i * s.numel(), 0, 0);
    }
    const std::vector<double> probs =
        softmax(model->forward(model_input(x, params)).to(DType::kF32), 1).to_vector();
    const int64_t k = std::min<int64_t>(c.top_k, width);
    for (size_t i = 0; i < n; ++i) {
      std::vector<int64_t> order(static_cast<size_t>(width));
      for (int64_t j = 0; j < width; ++j) order[j] = j;
      const double* row = probs.data() + i * width;
      std::stable_sort(order.begin(), order.end(),
                       [&](int64_t a, int64_t b) { return row[a] > row[b]; });
      const std::string& path = files[first + i];
      if (c.json) {
        nlohmann::json top = nlohmann::json::array();
        for (int64_t r = 0; r < k; ++r)
          top.push_back(
              {{"class", names[order[r]]}, {"index", order[r]}, {"probability", row[order[r]]}});
        out << nlohmann::json{{"path", path}, {"top", top}}.dump() << "\n";
      } else {
        out << path << ":";
        for (int64_t r = 0; r < k; ++r)
          out << (r ? ", " : " ") << names[order[r]] << " " << fixed(row[order[r]]);
        out << "\n";
      }
    }
  }
  out << std::flush;
  return 0;
}

}  // namespace tandem
