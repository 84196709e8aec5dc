// The training loop shared by every strategy: data, learning-rate schedule, gradient
// accumulation and clipping, the NaN/Inf policy, evaluation after each epoch, metrics (progress,
// metrics.jsonl, TensorBoard), and checkpoints with exact resume. With a validation split
// (data.validation_fraction, or image_folder's val/ folder) it also logs val/loss and
// val/accuracy after every epoch, stops early (training.early_stopping) and keeps the best
// checkpoint in <checkpoint.dir>/best (checkpoint.keep_best); both records live in
// trainer_state.json, so they survive a restart.
//
// Exact resume: all randomness is counter-based and keyed by (seed, epoch, step, global sample
// index), so a checkpoint needs no generator state beyond the seed -- only the model, the
// optimizer and the data cursor (epoch, step in epoch). A run stopped after 100 steps and resumed
// for 100 more ends bit-identical to one that ran 200 steps straight.
//
// Only the chief (rank 0) prints, writes metrics and saves checkpoints; every rank restores.
//
// Reading order: run() is the loop -- set up (precision and device, data, model and optimizer,
// restore or initialise), then per step train_step (micro-batches, loss scaling, the non-finite
// check, clipping, update), log_step, checkpoint_or_stop, and per epoch end_epoch (evaluate,
// checkpoint); finish writes the final line. All of its state is one Loop (trainer.cc).
#pragma once

#include <atomic>
#include <iostream>
#include <memory>
#include <string>

#include "configs/schema/config.h"
#include "core/io/checkpoint.h"
#include "core/nn/module.h"
#include "strategies/strategy.h"
#include "strategies/trainer/evaluation.h"

namespace tandem {

struct RunEnvironment {
  std::ostream* out = &std::cout;  // progress and the final line (chief only)
  std::ostream* err = &std::cerr;  // warnings
  bool out_is_terminal = false;    // draw a live progress bar instead of plain lines
  std::string hostname = "localhost";
  int local_rank = 0;  // selects the GPU when training.device is "cuda"
};

struct TrainResult {
  int64_t epoch = 0;      // epochs completed
  int64_t step = 0;       // optimizer steps completed
  double train_loss = 0;  // mean loss over the last epoch's steps (or the steps run)
  double test_loss = 0;
  double test_accuracy = 0;
  double samples_per_sec = 0;
  bool stopped_early = false;   // stop_at_step or request_stop() ended the run
  bool early_stopping = false;  // training.early_stopping ended the run (a normal end)
  std::string final_line;
};

class Trainer {
 public:
  Trainer(ExperimentConfig config, std::unique_ptr<Strategy> strategy, RunEnvironment env = {});
  ~Trainer();

  // Runs to the end of training (epochs / max_steps). With stop_at_step >= 0, stops after that
  // global step instead, saving a checkpoint (as after a graceful stop).
  TrainResult run(int64_t stop_at_step = -1);

  // Asks the loop to save a checkpoint and return after the current step (signal-safe).
  void request_stop() { stop_requested_.store(true); }

  Module& model() { return *model_; }
  Optimizer& optimizer() { return *optimizer_; }

 private:
  struct Loop;
  struct StepOutcome;

  Loop set_up();
  void set_up_precision_and_device(Loop& loop);
  void set_up_data(Loop& loop);
  void restore_or_initialise(Loop& loop);
  void check_same_math(const std::string& path, const TrainerState& saved);
  void set_up_trace(Loop& loop);
  void write_trace(Loop& loop);
  StepOutcome train_step(Loop& loop);
  bool unscale_gradients(Loop& loop);
  void skip_nonfinite_step(Loop& loop, double loss);
  void log_step(Loop& loop, const StepOutcome& step);
  bool checkpoint_or_stop(Loop& loop, const StepOutcome& outcome, int64_t stop_at_step);
  void save(Loop& loop);
  void end_epoch(Loop& loop);
  void evaluate_and_log(Loop& loop, bool with_epoch_loss);
  void report_replaced_samples(Loop& loop);
  EvalMetrics validate_and_log(Loop& loop);
  bool watch_validation(Loop& loop, const EvalMetrics& val);
  void save_best(Loop& loop);
  TrainResult finish(Loop& loop);
  bool max_steps_reached(const Loop& loop) const;
  bool training_done(const Loop& loop) const;

  ExperimentConfig config_;
  std::unique_ptr<Strategy> strategy_;
  RunEnvironment env_;
  std::shared_ptr<Module> model_;
  std::unique_ptr<Optimizer> optimizer_;
  std::atomic<bool> stop_requested_{false};
};

}  // namespace tandem
