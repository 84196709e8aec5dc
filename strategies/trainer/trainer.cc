// The training loop (see trainer.h): Trainer::run is the loop itself, a few lines over named
// steps; each step is a member function below, and everything the loop reads and changes lives in
// one Trainer::Loop.
#include "strategies/trainer/trainer.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <sstream>

#include "configs/schema/config.h"
#include "core/autograd/grad_mode.h"
#include "core/backends/autocast.h"
#include "core/backends/device_backend.h"
#include "core/base/error.h"
#include "core/data/loader.h"
#include "core/data/sampler.h"
#include "core/data/transforms.h"
#include "core/io/checkpoint.h"
#include "core/io/safetensors.h"
#include "core/metrics/metrics_log.h"
#include "core/metrics/progress.h"
#include "core/metrics/tensorboard.h"
#include "core/metrics/trace.h"
#include "core/ops/ops.h"
#include "core/optim/clip.h"
#include "core/optim/loss_scaler.h"
#include "core/parallel/parallel.h"
#include "core/tensor/allocator.h"
#include "strategies/single/single_strategy.h"
#include "strategies/step_trace.h"
#include "strategies/trainer/builders.h"
#include "strategies/trainer/evaluation.h"
#include "strategies/trainer/metric_watch.h"

namespace tandem {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

std::string format_double(double v, int precision) {
  std::ostringstream os;
  os.setf(std::ios::fixed);
  os.precision(precision);
  os << v;
  return os.str();
}

// Where the chief's metrics go: metrics.jsonl and (logging.tensorboard) TensorBoard get the same
// values. Other ranks' sink is empty and logs nothing. A write that fails (a full disk, a file
// system gone read-only) is a warning, once per file, and training goes on: losing metrics must
// not cost a run (or start a restart loop that fails the same way every time).
class MetricsSink {
 public:
  MetricsSink(const ExperimentConfig& cfg, const std::string& hostname, bool chief,
              std::ostream* err)
      : err_(err) {
    if (!chief) return;
    std::filesystem::create_directories(cfg.logging.dir);
    jsonl_ = std::make_unique<MetricsLog>(cfg.logging.dir + "/metrics.jsonl");
    if (cfg.logging.tensorboard)
      tensorboard_ = std::make_unique<TensorBoardWriter>(cfg.logging.dir, hostname);
  }
  void log(int64_t step, int64_t epoch, const MetricValues& values) {
    if (jsonl_) {
      try {
        jsonl_->log(step, epoch, values);
      } catch (const IoError& e) {
        warn_once(jsonl_warned_, e);
      }
    }
    if (!tensorboard_) return;
    try {
      for (const auto& [tag, v] : values) tensorboard_->add_scalar(tag, v, step);
      tensorboard_->flush();
    } catch (const IoError& e) {
      warn_once(tensorboard_warned_, e);
    }
  }

 private:
  void warn_once(bool& warned, const IoError& e) {
    if (warned) return;
    warned = true;
    *err_ << "warning: metrics not written (" << e.what()
          << "); training goes on, further failures of this file are not reported\n";
  }

  std::ostream* err_;
  std::unique_ptr<MetricsLog> jsonl_;
  std::unique_ptr<TensorBoardWriter> tensorboard_;
  bool jsonl_warned_ = false;
  bool tensorboard_warned_ = false;
};

void add_memory_metrics(const Device& device, MetricValues& mv) {
  AllocatorStats st = cpu_allocator_stats();
  mv.push_back({"memory/cpu_peak_allocated_mb", st.peak_allocated_bytes / 1048576.0});
  if (!device.is_cuda()) return;
  DeviceMemoryStats ds = backend_for("log_memory", device).memory_stats(device.index);
  mv.push_back({"memory/cuda_peak_allocated_mb", ds.peak_allocated_bytes / 1048576.0});
  mv.push_back({"memory/cuda_reserved_mb", ds.reserved_bytes / 1048576.0});
}

}  // namespace

// What one optimizer step produced.
struct Trainer::StepOutcome {
  double loss = 0;
  double lr = 0;
  double grad_norm = 0;
  bool finite = true;
  bool stop = false;  // some rank was asked to stop: every rank stops after this step
};

// Everything one run of the loop reads (fixed at set-up) and changes (as it trains).
struct Trainer::Loop {
  // Fixed for the run.
  Device device;
  uint64_t seed = 0;
  int accumulate = 1;
  int64_t steps_per_epoch = 0;
  int64_t total_steps = 0;  // min(max_steps, epochs x steps_per_epoch)
  int64_t global_batch = 0;
  std::shared_ptr<const Dataset> train_data, test_data;
  std::shared_ptr<const Dataset> validation_data;  // null: none; may be test_data (image_folder)
  std::unique_ptr<Transforms> test_transforms;
  std::unique_ptr<DataLoader> loader;
  std::optional<Schedule> schedule;
  std::optional<LossScaler> scaler;  // fp16 only
  std::unique_ptr<MetricsSink> metrics;
  std::unique_ptr<ProgressDisplay> progress;      // chief only, unless logging.progress is none
  std::unique_ptr<TraceRecorder> trace_recorder;  // logging.trace only
  std::unique_ptr<StepTrace> trace;
  bool trace_written = false;

  // Changed as it trains. `state` is what a checkpoint saves.
  TrainerState state;
  int nonfinite_in_a_row = 0;
  double epoch_loss_sum = 0;
  int64_t epoch_loss_count = 0;
  double interval_loss = 0;  // since the last metrics line
  int64_t interval_steps = 0;
  double train_time = 0;  // seconds inside steps (evaluation and checkpoints excluded)
  int64_t samples_done = 0;
  int64_t epoch_samples = 0;
  EvalMetrics last_eval;
  std::optional<MetricWatch> early_stopping;  // training.early_stopping
  std::optional<MetricWatch> best;            // checkpoint.keep_best
  bool stopped_by_early_stopping = false;
  int64_t replaced_before = 0;  // train_data->replaced_samples() when the epoch began
  int64_t last_eval_step = -1;  // the step last_eval measured
  double elapsed_before = 0;    // of the runs this one resumed
  int64_t start_step = 0;
  Clock::time_point run_start, epoch_start;
  bool stopped = false;  // stop_at_step or request_stop() ended the run
  TrainResult result;

  double epoch_mean_loss() const {
    return epoch_loss_count ? epoch_loss_sum / epoch_loss_count : 0;
  }
  void stamp_elapsed() { state.elapsed_s = elapsed_before + seconds_since(run_start); }
};

Trainer::Trainer(ExperimentConfig config, std::unique_ptr<Strategy> strategy, RunEnvironment env)
    : config_(std::move(config)), strategy_(std::move(strategy)), env_(env) {}

Trainer::~Trainer() = default;

TrainResult Trainer::run(int64_t stop_at_step) {
  Loop loop = set_up();
  while (!training_done(loop)) {
    loop.loader->restore(loop.state.epoch, loop.state.step_in_epoch * loop.accumulate);
    loop.epoch_start = Clock::now();
    loop.epoch_samples = 0;
    loop.replaced_before = loop.train_data->replaced_samples();
    while (loop.state.step_in_epoch < loop.steps_per_epoch && !max_steps_reached(loop)) {
      const StepOutcome step = train_step(loop);
      log_step(loop, step);
      if (checkpoint_or_stop(loop, step, stop_at_step)) break;
    }
    end_epoch(loop);
  }
  return finish(loop);
}

bool Trainer::max_steps_reached(const Loop& loop) const {
  return config_.training.max_steps > 0 && loop.state.step >= config_.training.max_steps;
}

bool Trainer::training_done(const Loop& loop) const {
  return loop.stopped || loop.stopped_by_early_stopping ||
         loop.state.epoch >= config_.training.epochs || max_steps_reached(loop);
}

// ---- set up: precision and device, data, model and optimizer, restore or initialise.

Trainer::Loop Trainer::set_up() {
  Loop loop;
  set_up_precision_and_device(loop);
  validate_world(config_, strategy_->world_size());
  set_num_threads(config_.training.threads);
  set_up_data(loop);
  model_ = build_model(config_, *loop.train_data);
  model_->to(loop.device);  // before the optimizer, so its state is created on the device too
  optimizer_ = build_optimizer(config_, model_->named_parameters());
  // The schedule spans the steps this run will take: min(max_steps, epochs x steps per epoch).
  loop.schedule.emplace(build_schedule(config_, loop.total_steps));
  restore_or_initialise(loop);
  set_up_trace(loop);
  strategy_->set_start_step(loop.state.step);
  strategy_->prepare(*model_, *optimizer_);
  loop.metrics =
      std::make_unique<MetricsSink>(config_, env_.hostname, strategy_->is_chief(), env_.err);
  const ProgressMode progress = config_.logging.progress;
  if (strategy_->is_chief() && progress != ProgressMode::kNone) {
    ProgressOptions po;
    po.live =
        progress == ProgressMode::kBar || (progress == ProgressMode::kAuto && env_.out_is_terminal);
    po.print_every_steps = config_.logging.every_steps;
    loop.progress = std::make_unique<ProgressDisplay>(*env_.out, po);
  }
  loop.elapsed_before = loop.state.elapsed_s;
  loop.start_step = loop.state.step;
  loop.run_start = Clock::now();
  return loop;
}

// tf32: f32 storage, TF32 tensor cores in GEMMs and convolutions. bf16/fp16: autocast of
// matmul/linear/conv2d (core/backends/autocast.h) with f32 master weights; fp16 adds the dynamic
// loss scaler. fp64: everything in f64, on the CPU.
void Trainer::set_up_precision_and_device(Loop& loop) {
  const TrainingConfig& t = config_.training;
  const bool fp64 = t.precision == Precision::kFp64;
  TANDEM_CHECK_T(ConfigError, !fp64 || t.device == "cpu",
                 "training.precision: 'fp64' runs on the CPU only (training.device is '", t.device,
                 "'); use fp32 or tf32 on GPUs");
  loop.device = resolve_training_device(config_, env_.local_rank);
  TANDEM_CHECK_T(ConfigError, t.precision == Precision::kFp32 || fp64 || loop.device.is_cuda(),
                 "training.precision: '", t.precision,
                 "' needs a CUDA device; on the CPU use fp32 (or fp64)");
  if (loop.device.is_cuda())
    backend_for("training", loop.device).set_allow_tf32(t.precision == Precision::kTf32);
  set_autocast_dtype(t.precision == Precision::kBf16   ? DType::kBF16
                     : t.precision == Precision::kFp16 ? DType::kF16
                                                       : DType::kF32);
  if (t.precision == Precision::kFp16) loop.scaler.emplace();
}

void Trainer::set_up_data(Loop& loop) {
  const ExperimentConfig& cfg = config_;
  DataSplits splits = build_data_splits(cfg);
  loop.train_data = splits.train;
  loop.test_data = splits.test;
  loop.validation_data = splits.validation;
  const SampleShape shape = loop.train_data->sample_shape();
  loop.seed = static_cast<uint64_t>(cfg.seed);
  Transforms train_tf(shape, transform_options(cfg, shape, cfg.data.augment));
  loop.test_transforms = std::make_unique<Transforms>(shape, transform_options(cfg, shape, false));
  const TrainingConfig::EarlyStopping& es = cfg.training.early_stopping;
  if (es.metric != ValidationMetric::kNone)
    loop.early_stopping.emplace(es.metric, es.min_delta, es.patience);
  if (cfg.checkpoint.keep_best != ValidationMetric::kNone)
    loop.best.emplace(cfg.checkpoint.keep_best);
  DistributedSampler sampler(loop.train_data->size(), cfg.data.batch_size, strategy_->world_size(),
                             strategy_->rank(), loop.seed,
                             /*shuffle=*/true, /*drop_last=*/true);
  loop.loader = std::make_unique<DataLoader>(loop.train_data, sampler, train_tf, cfg.data.workers);
  loop.accumulate = cfg.training.accumulate_steps;
  loop.global_batch = cfg.data.batch_size;
  loop.steps_per_epoch = loop.loader->steps_per_epoch() / loop.accumulate;
  TANDEM_CHECK_T(ConfigError, loop.steps_per_epoch > 0, "data.batch_size: ", cfg.data.batch_size,
                 " x ", loop.accumulate, " accumulation steps is more than the ",
                 loop.train_data->size(), " training samples of ", cfg.data.name);
  loop.total_steps = loop.steps_per_epoch * cfg.training.epochs;
  if (cfg.training.max_steps > 0)
    loop.total_steps = std::min(loop.total_steps, cfg.training.max_steps);
}

// The newest checkpoint (checkpoint.resume: auto) or the one named; else model.init_from.
void Trainer::restore_or_initialise(Loop& loop) {
  const ExperimentConfig& cfg = config_;
  const bool chief = strategy_->is_chief();
  const std::string digest = config_digest(cfg);
  std::optional<std::string> path;
  if (cfg.checkpoint.resume.mode == ResumeMode::kAuto) {
    std::vector<std::string> warnings;
    path = find_latest_checkpoint(cfg.checkpoint.dir, &warnings);
    if (chief)
      for (const auto& w : warnings) *env_.err << "warning: " << w << "\n";
  } else if (cfg.checkpoint.resume.mode == ResumeMode::kPath) {
    path = cfg.checkpoint.resume.path;
  }
  if (path) {
    LoadedCheckpoint ck = load_checkpoint(*path);
    check_same_math(*path, ck.state);
    model_->load_state_dict(ck.model, /*strict=*/true);
    optimizer_->load_state_dict(ck.optimizer);
    loop.state = ck.state;
    const nlohmann::json& extra = ck.state.extra;
    if (loop.early_stopping && extra.contains("early_stopping"))
      loop.early_stopping->from_json(extra["early_stopping"]);
    if (loop.best && extra.contains("keep_best")) loop.best->from_json(extra["keep_best"]);
    loop.stopped_by_early_stopping = loop.early_stopping && extra.value("stopped_early", false) &&
                                     loop.early_stopping->should_stop();
    if (chief) {
      *env_.out << "resumed from " << *path << " (step " << loop.state.step << ", epoch "
                << loop.state.epoch + 1 << ")\n";
      if (!loop.state.extra.contains("math") && !loop.state.config_digest.empty() &&
          loop.state.config_digest != digest)
        *env_.err << "warning: the config differs from the one this checkpoint was trained with\n";
    }
  } else if (!cfg.model.init_from.empty()) {
    SafetensorsFile f = safetensors_load(cfg.model.init_from);
    try {
      model_->load_state_dict(f.tensors, /*strict=*/true);
    } catch (const ConfigError& e) {
      throw ConfigError(str("model.init_from: ", cfg.model.init_from, " does not fit model '",
                            cfg.model.name, "': ", e.what()));
    }
  }
  loop.state.config_digest = digest;
  nlohmann::json math = nlohmann::json::object();
  for (const auto& [key, value] : math_config_values(cfg)) math[key] = value;
  loop.state.extra["math"] = std::move(math);
  loop.state.world_size = strategy_->world_size();
  loop.state.rng["seed"] = {loop.seed};
}

// logging.trace: a recorder for the window of steps, hooks on the parameters, and the strategy
// told where its communication goes.
void Trainer::set_up_trace(Loop& loop) {
  if (!config_.logging.trace) return;
  TraceOptions o;
  o.enabled = true;
  o.rank = strategy_->rank();
  o.first_step = config_.logging.trace_steps[0];
  o.num_steps = config_.logging.trace_steps[1] - config_.logging.trace_steps[0];
  loop.trace_recorder = std::make_unique<TraceRecorder>(o);
  loop.trace = std::make_unique<StepTrace>(*loop.trace_recorder, model_->named_parameters());
  strategy_->set_trace(loop.trace.get());
}

// Every rank writes <logging.dir>/trace/rank-R.json; once all have (a collective), the chief
// merges the files it sees into all.json (every rank's, where the directory is shared).
void Trainer::write_trace(Loop& loop) {
  if (!loop.trace || loop.trace_written) return;
  loop.trace_written = true;
  const std::string dir = config_.logging.dir + "/trace";
  loop.trace_recorder->write(dir);
  strategy_->all_reduce_sum({0.0});
  if (!strategy_->is_chief()) return;
  std::vector<std::string> files;
  for (int r = 0; r < strategy_->world_size(); ++r) {
    const std::string f = dir + "/" + trace_file_name(r);
    if (std::filesystem::exists(f)) files.push_back(f);
  }
  merge_traces(files, dir + "/all.json");
  *env_.out << "trace: " << dir << "/all.json (" << files.size() << " of "
            << strategy_->world_size() << " ranks, steps " << config_.logging.trace_steps[0]
            << " to " << config_.logging.trace_steps[1] - 1 << ")\n";
}

// A checkpoint records the values of the keys that change the math (math_config_values); resuming
// it with other values would continue another experiment's model under this one's name -- refused,
// naming the keys, unless checkpoint.allow_config_change (then a warning). Checkpoints written
// before the record existed resume with the old warning on the digest.
void Trainer::check_same_math(const std::string& path, const TrainerState& saved) {
  if (!saved.extra.is_object() || !saved.extra.contains("math") || !saved.extra["math"].is_object())
    return;
  const nlohmann::json& then = saved.extra["math"];
  std::string changed;
  // A key added since the checkpoint was written (data.validation_fraction, ...) had its default.
  std::map<std::string, std::string> defaults;
  for (auto& [key, value] : math_config_values(ExperimentConfig{})) defaults[key] = value;
  for (const auto& [key, now] : math_config_values(config_)) {
    auto it = then.find(key);
    const std::string before = it == then.end()  ? defaults[key]
                               : it->is_string() ? it->get<std::string>()
                                                 : "?";
    if (before == now) continue;
    changed += str(changed.empty() ? "" : ", ", key, " (", before.substr(0, 80), ", now ",
                   now.substr(0, 80), ")");
  }
  if (changed.empty()) return;
  const std::string what = str("checkpoint ", path, " was trained with other values of ", changed);
  TANDEM_CHECK_T(ConfigError, config_.checkpoint.allow_config_change, what,
                 "; resume it anyway with checkpoint.allow_config_change=true, or start afresh ",
                 "with checkpoint.resume=never or another checkpoint.dir");
  if (strategy_->is_chief()) *env_.err << "warning: resuming " << what << "\n";
}

// ---- one optimizer step: micro-batches, loss scaling, the non-finite check, clipping, update.

Trainer::StepOutcome Trainer::train_step(Loop& loop) {
  Strategy& strat = *strategy_;
  const auto start = Clock::now();
  StepTrace* trace = loop.trace.get();
  if (trace) trace->begin_step(loop.state.step);
  std::optional<TraceRecorder::Span> step_span;
  if (trace && trace->on())
    step_span.emplace(trace->recorder(), "step", "step", TraceLane::kCompute,
                      TraceArgs().num("step", static_cast<double>(loop.state.step)));
  StepOutcome s;
  s.lr = loop.schedule->lr_at(loop.state.step);
  optimizer_->set_lr(s.lr);
  // set_to_none (PyTorch 2's default): backward then hands each parameter the gradient it
  // computed instead of adding it into a zeroed buffer -- one pass over the gradients less to
  // zero them and one less to add (the ddp reducer copies each into its bucket once).
  optimizer_->zero_grad(/*set_to_none=*/true);
  double loss_sum = 0;
  for (int m = 0; m < loop.accumulate; ++m) {
    std::optional<Batch> batch;
    {
      std::optional<TraceRecorder::Span> data;
      if (trace && trace->on())
        data.emplace(trace->recorder(), "data", "data", TraceLane::kCompute);
      batch = loop.loader->next();
    }
    TANDEM_ASSERT(batch.has_value(), "loader ran out of batches mid-epoch");
    MicroBatch micro{&*batch, loop.state.step, m, loop.accumulate, loop.seed};
    micro.trace = trace;
    if (loop.scaler) micro.loss_scale = loop.scaler->scale();
    loss_sum += strat.forward_backward(*model_, micro);
  }
  strat.synchronize(*model_);
  const bool overflow = unscale_gradients(loop);
  // A stop asked for on any rank (SIGTERM to one process) stops every rank after this step.
  const auto [loss, stop] =
      strat.mean_loss_and_stop(loss_sum / loop.accumulate, stop_requested_.load());
  s.loss = loss;
  s.stop = stop;
  s.finite = std::isfinite(s.loss);
  if (s.finite && config_.training.grad_clip > 0) {
    s.grad_norm = clip_grad_norm(model_->named_parameters(), config_.training.grad_clip);
    s.finite = std::isfinite(s.grad_norm);
  }
  if (!s.finite) {
    skip_nonfinite_step(loop, s.loss);
  } else if (overflow) {
    optimizer_->zero_grad(/*set_to_none=*/true);
  } else {
    loop.nonfinite_in_a_row = 0;
    std::optional<TraceRecorder::Span> update;
    if (trace && trace->on())
      update.emplace(trace->recorder(), "optimizer", "compute", TraceLane::kCompute);
    strat.apply_update(*model_, *optimizer_);
    loop.epoch_loss_sum += s.loss;
    loop.epoch_loss_count += 1;
    loop.interval_loss += s.loss;
    loop.interval_steps += 1;
  }
  loop.state.step += 1;
  loop.state.step_in_epoch += 1;
  loop.train_time += seconds_since(start);
  loop.samples_done += loop.global_batch * loop.accumulate;
  loop.epoch_samples += loop.global_batch * loop.accumulate;
  return s;
}

// fp16: a step whose scaled gradients overflowed is skipped and the scale halved (normal while
// the scaler finds its level, not a divergence); otherwise the gradients are unscaled. Returns
// whether the step overflowed.
bool Trainer::unscale_gradients(Loop& loop) {
  if (!loop.scaler) return false;
  const std::vector<Tensor> params = model_->parameters();
  const bool overflow = !grads_finite(params);
  if (!overflow) scale_grads(params, 1.0 / loop.scaler->scale());
  loop.scaler->update(overflow);
  return overflow;
}

void Trainer::skip_nonfinite_step(Loop& loop, double loss) {
  const int max_in_a_row = config_.training.max_nonfinite_steps;
  ++loop.nonfinite_in_a_row;
  if (strategy_->is_chief())
    *env_.err << "warning: step " << loop.state.step + 1 << ": non-finite loss or gradient (loss "
              << loss << "); step skipped (" << loop.nonfinite_in_a_row << " in a row)\n";
  TANDEM_CHECK_T(Error, loop.nonfinite_in_a_row < max_in_a_row,
                 "training diverged: ", loop.nonfinite_in_a_row,
                 " steps in a row had a non-finite loss or gradient "
                 "(training.max_nonfinite_steps = ",
                 max_in_a_row, "); lower optimizer.lr or set training.grad_clip");
  optimizer_->zero_grad(/*set_to_none=*/true);
}

// ---- log: the progress display after every step, metrics every logging.every_steps.

void Trainer::log_step(Loop& loop, const StepOutcome& step) {
  if (!strategy_->is_chief()) return;
  const TrainerState& st = loop.state;
  const double sps = loop.epoch_samples / std::max(seconds_since(loop.epoch_start), 1e-9);
  if (loop.progress)
    loop.progress->update({st.epoch + 1, st.step_in_epoch, loop.steps_per_epoch,
                           step.finite ? step.loss : NAN, step.lr, sps,
                           estimate_eta(seconds_since(loop.run_start), st.step - loop.start_step,
                                        loop.total_steps - loop.start_step)});
  if (st.step % config_.logging.every_steps != 0 || loop.interval_steps == 0) return;
  MetricValues mv{{"train/loss", loop.interval_loss / loop.interval_steps},
                  {"train/lr", step.lr},
                  {"train/samples_per_sec", sps}};
  if (config_.training.grad_clip > 0) mv.push_back({"train/grad_norm", step.grad_norm});
  if (config_.training.log_memory) add_memory_metrics(loop.device, mv);
  loop.metrics->log(st.step, st.epoch, mv);
  loop.interval_loss = 0;
  loop.interval_steps = 0;
}

// ---- checkpoints: every checkpoint.every_steps, at a requested stop, and at each epoch's end.

// After a step: saves when a stop was asked for or the period came round (the end of an epoch
// saves in end_epoch instead); returns true when the run stops here.
bool Trainer::checkpoint_or_stop(Loop& loop, const StepOutcome& outcome, int64_t stop_at_step) {
  const int64_t step = loop.state.step;
  const bool at_stop = (stop_at_step >= 0 && step >= stop_at_step) || outcome.stop;
  const int64_t every = config_.checkpoint.every_steps;
  const bool periodic = every > 0 && step % every == 0;
  const bool epoch_end = loop.state.step_in_epoch == loop.steps_per_epoch;
  if ((at_stop || periodic) && !epoch_end) {
    loop.stamp_elapsed();
    save(loop);
  }
  if (at_stop) {
    loop.stopped = true;
    loop.result.stopped_early = true;
  }
  if (loop.trace && step == config_.logging.trace_steps[1]) write_trace(loop);
  return at_stop;
}

void Trainer::save(Loop& loop) {
  std::optional<TraceRecorder::Span> span;
  if (loop.trace && loop.trace->on())
    span.emplace(loop.trace->recorder(), "checkpoint", "io", TraceLane::kIo,
                 TraceArgs().num("step", static_cast<double>(loop.state.step)));
  strategy_->before_checkpoint(*model_, *optimizer_);  // every rank, before the chief saves
  if (!strategy_->is_chief()) return;
  std::filesystem::create_directories(config_.checkpoint.dir);
  save_checkpoint(config_.checkpoint.dir, model_->state_dict(), optimizer_->state_dict(),
                  loop.state, config_.checkpoint.keep);
}

// ---- end of epoch: evaluate (training.eval_every_epoch, and after the last epoch), checkpoint.

void Trainer::end_epoch(Loop& loop) {
  TrainerState& st = loop.state;
  if (st.step_in_epoch < loop.steps_per_epoch) {  // stopped or out of steps mid-epoch
    if (loop.epoch_loss_count > 0) loop.result.train_loss = loop.epoch_mean_loss();
    return;
  }
  if (loop.progress) loop.progress->finish();
  report_replaced_samples(loop);
  std::string line;
  if (config_.training.eval_every_epoch || st.epoch + 1 == config_.training.epochs) {
    evaluate_and_log(loop, /*with_epoch_loss=*/true);
    line = " test_loss " + format_double(loop.last_eval.loss, 4) + " test_accuracy " +
           format_double(loop.last_eval.accuracy, 4);
  }
  bool improved = false;
  if (loop.validation_data) {
    const EvalMetrics val = validate_and_log(loop);
    line += " val_loss " + format_double(val.loss, 4) + " val_accuracy " +
            format_double(val.accuracy, 4);
    improved = watch_validation(loop, val);
  }
  if (strategy_->is_chief() && !line.empty())
    *env_.out << "epoch " << st.epoch + 1 << "/" << config_.training.epochs << ": train_loss "
              << format_double(loop.epoch_mean_loss(), 4) << line << "\n"
              << std::flush;
  loop.result.train_loss = loop.epoch_mean_loss();
  loop.epoch_loss_sum = 0;
  loop.epoch_loss_count = 0;
  st.epoch += 1;
  st.step_in_epoch = 0;
  loop.stamp_elapsed();
  save(loop);
  if (improved) save_best(loop);
  if (loop.stopped_by_early_stopping && strategy_->is_chief())
    *env_.out << "early stopping: " << loop.early_stopping->metric() << " has not improved by more "
              << "than " << config_.training.early_stopping.min_delta << " for "
              << loop.early_stopping->wait() << " epoch(s); best "
              << format_double(loop.early_stopping->best(), 4) << " after epoch "
              << loop.early_stopping->best_epoch() << "\n"
              << std::flush;
}

// image_folder: samples whose file could not be read were replaced by the next readable file;
// how many this epoch, summed over the ranks (each sample is loaded by one rank per epoch).
void Trainer::report_replaced_samples(Loop& loop) {
  if (config_.data.name != DatasetName::kImageFolder)
    return;  // the same on every rank: collectives agree
  const double here =
      static_cast<double>(loop.train_data->replaced_samples() - loop.replaced_before);
  const double total = strategy_->all_reduce_sum({here})[0];
  if (total > 0 && strategy_->is_chief())
    *env_.err << "warning: epoch " << loop.state.epoch + 1 << ": " << static_cast<int64_t>(total)
              << " sample(s) skipped: their image files could not be read (named above) and "
              << "were replaced by the next readable file\n";
}

// The validation split's metrics (val/loss, val/accuracy); when it is the test split
// (image_folder's val/ folder) evaluated just now, those numbers are reused.
EvalMetrics Trainer::validate_and_log(Loop& loop) {
  EvalMetrics val;
  if (loop.validation_data == loop.test_data && loop.last_eval_step == loop.state.step) {
    val = loop.last_eval;
  } else {
    EvalOptions eo;
    eo.batch = loop.global_batch * 4;
    eo.workers = config_.data.workers;
    val = evaluate(*model_, *strategy_, loop.validation_data, *loop.test_transforms, eo);
  }
  loop.metrics->log(loop.state.step, loop.state.epoch,
                    {{"val/loss", val.loss}, {"val/accuracy", val.accuracy}});
  return val;
}

// Feeds the epoch's validation metrics to early stopping and the best-checkpoint watch; their
// records go into the checkpoint's trainer_state.json. Returns whether this epoch is the new best.
// Every rank holds the same all-reduced numbers, so every rank decides the same.
bool Trainer::watch_validation(Loop& loop, const EvalMetrics& val) {
  auto value_of = [&](const MetricWatch& w) {
    return w.metric() == ValidationMetric::kValLoss ? val.loss : val.accuracy;
  };
  const int64_t epoch = loop.state.epoch + 1;
  bool improved = false;
  if (loop.best) {
    improved = loop.best->update(value_of(*loop.best), epoch);
    loop.state.extra["keep_best"] = loop.best->to_json();
  }
  if (loop.early_stopping) {
    loop.early_stopping->update(value_of(*loop.early_stopping), epoch);
    loop.stopped_by_early_stopping = loop.early_stopping->should_stop();
    loop.state.extra["early_stopping"] = loop.early_stopping->to_json();
    loop.state.extra["stopped_early"] = loop.stopped_by_early_stopping;
  }
  return improved;
}

// checkpoint.keep_best: the checkpoint just saved, also as <checkpoint.dir>/best.
void Trainer::save_best(Loop& loop) {
  if (!strategy_->is_chief()) return;  // save() already ran before_checkpoint on every rank
  save_named_checkpoint(config_.checkpoint.dir, kBestCheckpointName, model_->state_dict(),
                        optimizer_->state_dict(), loop.state);
  *env_.out << "best " << loop.best->metric() << " " << format_double(loop.best->best(), 4)
            << " (epoch " << loop.best->best_epoch() << "): saved " << config_.checkpoint.dir << "/"
            << kBestCheckpointName << "\n"
            << std::flush;
}

void Trainer::evaluate_and_log(Loop& loop, bool with_epoch_loss) {
  std::optional<TraceRecorder::Span> span;
  if (loop.trace && loop.trace->on())
    span.emplace(loop.trace->recorder(), "eval", "compute", TraceLane::kCompute,
                 TraceArgs().num("epoch", static_cast<double>(loop.state.epoch)));
  EvalOptions eo;
  eo.batch = loop.global_batch * 4;
  eo.workers = config_.data.workers;
  loop.last_eval = evaluate(*model_, *strategy_, loop.test_data, *loop.test_transforms, eo);
  loop.last_eval_step = loop.state.step;
  MetricValues mv{{"test/loss", loop.last_eval.loss}, {"test/accuracy", loop.last_eval.accuracy}};
  if (with_epoch_loss) mv.push_back({"train/epoch_loss", loop.epoch_mean_loss()});
  loop.metrics->log(loop.state.step, loop.state.epoch, mv);
}

// ---- the end: a final evaluation and checkpoint where the last epoch did not make them, and the
// final line.

TrainResult Trainer::finish(Loop& loop) {
  if (loop.progress) loop.progress->finish();
  TrainResult& result = loop.result;
  // A run that ended by max_steps mid-epoch (or resumed a finished run, or skipped the last
  // epoch's evaluation): evaluate the final model once so the final line is complete.
  const bool mid_epoch_end = !result.stopped_early && loop.state.step_in_epoch > 0;
  if (!result.stopped_early && loop.last_eval_step != loop.state.step)
    evaluate_and_log(loop, /*with_epoch_loss=*/false);
  if (mid_epoch_end) {
    loop.stamp_elapsed();
    save(loop);
  }
  result.epoch = loop.state.epoch;
  result.early_stopping = loop.stopped_by_early_stopping;
  result.step = loop.state.step;
  result.test_loss = loop.last_eval.loss;
  result.test_accuracy = loop.last_eval.accuracy;
  result.samples_per_sec = loop.train_time > 0 ? loop.samples_done / loop.train_time : 0;
  std::ostringstream line;
  line << "final: epoch=" << result.epoch << " step=" << result.step
       << " train_loss=" << format_double(result.train_loss, 4)
       << " test_loss=" << format_double(result.test_loss, 4)
       << " test_accuracy=" << format_double(result.test_accuracy, 4)
       << " samples_per_sec=" << format_double(result.samples_per_sec, 1);
  result.final_line = line.str();
  if (result.stopped_early) {
    // After the stop's checkpoint: parameter servers that got the same SIGTERM (a preemption)
    // stay up until every worker has said this, so the chief's save cannot lose them.
    strategy_->finish();
    return result;
  }
  write_trace(loop);  // a run shorter than the window: what it recorded
  strategy_->finish();
  if (strategy_->is_chief()) {
    *env_.out << result.final_line << "\n";
    if (std::string extra = strategy_->report(); !extra.empty()) *env_.out << extra << "\n";
    *env_.out << std::flush;
  }
  return result;
}

}  // namespace tandem
