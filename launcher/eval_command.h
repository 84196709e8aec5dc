// `tandem eval` and `tandem predict`: using a trained checkpoint.
//
//   tandem eval CONFIG [--checkpoint DIR] [--split test|validation] [--json] [overrides...]
//     loss, top-1 and top-5 accuracy, per-class accuracy and the confusion matrix on a split.
//     Under `tandem launch --exec -- tandem eval ...` or mpirun each rank evaluates its shard and
//     the sums are all-reduced (strategies/trainer/evaluation.h); rank 0 prints.
//   tandem predict CONFIG [--checkpoint DIR] [--top-k K] [--json] IMAGE|DIR...
//     one line per image (directories: their .jpg/.jpeg/.png files, recursively, sorted) with the
//     top-k classes and their softmax probabilities; class names are image_folder's folder names,
//     the built-in data sets' class names, or indices (synthetic).
//
// The checkpoint is DIR, else <checkpoint.dir>/best (checkpoint.keep_best), else the newest
// step-* in checkpoint.dir. Contract: a missing or unreadable checkpoint, a missing input path or
// an image that cannot be decoded is a ConfigError naming it (one line, exit 2); --json prints
// JSON only on stdout (eval: one object; predict: one object per line).
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace tandem {

struct EvalCommand {
  CLI::App* app = nullptr;
  std::string config_path;
  std::vector<std::string> overrides;
  std::string checkpoint;  // "" = best, else newest
  std::string split = "test";
  bool json = false;
};

struct PredictCommand {
  CLI::App* app = nullptr;
  std::string config_path;
  std::vector<std::string> inputs;
  std::string checkpoint;
  int top_k = 5;
  bool json = false;
};

void add_eval_commands(CLI::App& app, EvalCommand& eval, PredictCommand& predict);
int cmd_eval(EvalCommand& c, std::ostream& out);
int cmd_predict(PredictCommand& c, std::ostream& out);

}  // namespace tandem
