#include "strategies/trainer/trainer.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <memory>
#include <optional>
#include <sstream>

#include "core/autograd/grad_mode.h"
#include "core/backends/autocast.h"
#include "core/backends/device_backend.h"
#include "core/data/loader.h"
#include "core/data/sampler.h"
#include "core/data/transforms.h"
#include "core/io/checkpoint.h"
#include "core/io/safetensors.h"
#include "core/metrics/metrics_log.h"
#include "core/metrics/progress.h"
#include "core/metrics/tensorboard.h"
#include "core/ops/ops.h"
#include "core/optim/clip.h"
#include "core/optim/loss_scaler.h"
#include "core/parallel/parallel.h"
#include "core/tensor/allocator.h"
#include "configs/schema/config.h"
#include "strategies/single/single_strategy.h"
#include "strategies/trainer/builders.h"

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

struct EvalResult {
  double loss = 0;
  double accuracy = 0;
};

// Loss and accuracy on this process's shard of `data`, summed over all replicas.
EvalResult evaluate(Module& model, Strategy& strategy, const std::shared_ptr<const Dataset>& data,
                    const Transforms& transforms, int64_t batch, int workers) {
  model.eval();
  NoGradGuard no_grad;
  DistributedSampler sampler(data->size(), batch, strategy.world_size(), strategy.rank(), 0,
                             /*shuffle=*/false, /*drop_last=*/false);
  DataLoader loader(data, sampler, transforms, workers);
  loader.set_epoch(0);
  double loss_sum = 0, correct = 0, count = 0;
  while (auto b = loader.next()) {
    const int64_t n = b->labels.numel();
    if (n == 0) continue;
    const std::vector<Tensor> params = model.parameters();
    const Device dev = params.empty() ? Device::cpu() : params.front().device();
    Tensor labels = b->labels.to(dev);
    Tensor logits = model.forward(model_input(b->images, params));
    loss_sum += cross_entropy(logits, labels).item() * static_cast<double>(n);
    Tensor pred = argmax(logits, 1);
    correct += sum(eq(pred, labels).to(DType::kF64)).item();
    count += static_cast<double>(n);
  }
  std::vector<double> total = strategy.all_reduce_sum({loss_sum, correct, count});
  model.train();
  if (total[2] == 0) return {};
  return {total[0] / total[2], total[1] / total[2]};
}

}  // namespace

Trainer::Trainer(ExperimentConfig config, std::unique_ptr<Strategy> strategy, RunEnvironment env)
    : config_(std::move(config)), strategy_(std::move(strategy)), env_(env) {}

Trainer::~Trainer() = default;

TrainResult Trainer::run(int64_t stop_at_step) {
  const ExperimentConfig& cfg = config_;
  Strategy& strat = *strategy_;
  const bool chief = strat.is_chief();
  std::ostream& out = *env_.out;
  std::ostream& err = *env_.err;
  const bool fp64 = cfg.training.precision == "fp64";
  TANDEM_CHECK_T(ConfigError, !fp64 || cfg.training.device == "cpu",
                 "training.precision: 'fp64' runs on the CPU only (training.device is '",
                 cfg.training.device, "'); use fp32 or tf32 on GPUs");
  const Device device = resolve_training_device(cfg, env_.local_rank);
  TANDEM_CHECK_T(ConfigError, cfg.training.precision == "fp32" || fp64 || device.is_cuda(),
                 "training.precision: '", cfg.training.precision,
                 "' needs a CUDA device; on the CPU use fp32 (or fp64)");
  // tf32: f32 storage, TF32 tensor cores in GEMMs and convolutions. bf16/fp16: autocast of
  // matmul/linear/conv2d (core/backends/autocast.h) with f32 master weights; fp16 adds the
  // dynamic loss scaler.
  const std::string& precision = cfg.training.precision;
  if (device.is_cuda()) backend_for("training", device).set_allow_tf32(precision == "tf32");
  set_autocast_dtype(precision == "bf16" ? DType::kBF16
                     : precision == "fp16" ? DType::kF16
                                           : DType::kF32);
  std::optional<LossScaler> scaler;
  if (precision == "fp16") scaler.emplace();
  validate_world(cfg, strat.world_size());
  set_num_threads(cfg.training.threads);

  // ---- data
  auto train_data = build_dataset(cfg, "train");
  auto test_data = build_dataset(cfg, "test");
  const SampleShape shape = train_data->sample_shape();
  const uint64_t seed = static_cast<uint64_t>(cfg.seed);
  Transforms train_tf(shape, default_transform_options(cfg.data.name, shape, cfg.data.augment, seed));
  Transforms test_tf(shape, default_transform_options(cfg.data.name, shape, false, seed));
  DistributedSampler sampler(train_data->size(), cfg.data.batch_size, strat.world_size(),
                             strat.rank(), seed, /*shuffle=*/true, /*drop_last=*/true);
  DataLoader loader(train_data, sampler, train_tf, cfg.data.workers);
  const int accumulate = cfg.training.accumulate_steps;
  const int64_t steps_per_epoch = loader.steps_per_epoch() / accumulate;
  TANDEM_CHECK_T(ConfigError, steps_per_epoch > 0, "data.batch_size: ", cfg.data.batch_size, " x ",
                 accumulate, " accumulation steps is more than the ", train_data->size(),
                 " training samples of ", cfg.data.name);
  int64_t total_steps = steps_per_epoch * cfg.training.epochs;
  if (cfg.training.max_steps > 0) total_steps = std::min(total_steps, cfg.training.max_steps);

  // ---- model, optimizer, schedule
  model_ = build_model(cfg, *train_data);
  model_->to(device);  // before the optimizer, so its state is created on the device too
  optimizer_ = build_optimizer(cfg, model_->named_parameters());
  // The schedule spans the steps this run will take: min(max_steps, epochs x steps per epoch).
  Schedule schedule = build_schedule(cfg, total_steps);

  TrainerState state;
  state.world_size = strat.world_size();
  const std::string digest = config_digest(cfg);
  bool resumed = false;
  if (cfg.checkpoint.resume != "never") {
    std::optional<std::string> path;
    if (cfg.checkpoint.resume == "auto") {
      std::vector<std::string> warnings;
      path = find_latest_checkpoint(cfg.checkpoint.dir, &warnings);
      if (chief)
        for (const auto& w : warnings) err << "warning: " << w << "\n";
    } else {
      path = cfg.checkpoint.resume;
    }
    if (path) {
      LoadedCheckpoint ck = load_checkpoint(*path);
      model_->load_state_dict(ck.model, /*strict=*/true);
      optimizer_->load_state_dict(ck.optimizer);
      state = ck.state;
      resumed = true;
      if (chief) {
        out << "resumed from " << *path << " (step " << state.step << ", epoch " << state.epoch + 1 << ")\n";
        if (!state.config_digest.empty() && state.config_digest != digest)
          err << "warning: the config differs from the one this checkpoint was trained with\n";
      }
    }
  }
  if (!resumed && !cfg.model.init_from.empty()) {
    SafetensorsFile f = safetensors_load(cfg.model.init_from);
    try {
      model_->load_state_dict(f.tensors, /*strict=*/true);
    } catch (const ConfigError& e) {
      throw ConfigError("model.init_from: " + cfg.model.init_from + " does not fit model '" +
                        cfg.model.name + "': " + e.what());
    }
  }
  state.config_digest = digest;
  state.world_size = strat.world_size();
  state.rng["seed"] = {seed};
  strat.set_start_step(state.step);
  strat.prepare(*model_, *optimizer_);

  // ---- metrics (chief only)
  std::unique_ptr<MetricsLog> metrics;
  std::unique_ptr<TensorBoardWriter> tb;
  std::unique_ptr<ProgressDisplay> progress;
  if (chief) {
    std::filesystem::create_directories(cfg.logging.dir);
    metrics = std::make_unique<MetricsLog>(cfg.logging.dir + "/metrics.jsonl");
    if (cfg.logging.tensorboard) tb = std::make_unique<TensorBoardWriter>(cfg.logging.dir, env_.hostname);
    if (cfg.logging.progress != "none") {
      ProgressOptions po;
      po.live = cfg.logging.progress == "bar" || (cfg.logging.progress == "auto" && env_.out_is_terminal);
      po.print_every_steps = cfg.logging.every_steps;
      progress = std::make_unique<ProgressDisplay>(out, po);
    }
  }
  auto save = [&] {
    strat.before_checkpoint(*model_, *optimizer_);  // every rank, before the chief saves
    if (!chief) return;
    std::filesystem::create_directories(cfg.checkpoint.dir);
    save_checkpoint(cfg.checkpoint.dir, model_->state_dict(), optimizer_->state_dict(), state,
                    cfg.checkpoint.keep);
  };

  // ---- the loop
  TrainResult result;
  const int64_t global_batch = cfg.data.batch_size;
  int nonfinite_in_a_row = 0;
  double epoch_loss_sum = 0;
  int64_t epoch_loss_count = 0;
  double interval_loss = 0;
  int64_t interval_steps = 0;
  double train_time = 0;
  int64_t samples_done = 0;
  EvalResult last_eval;
  int64_t last_eval_step = -1;  // the step last_eval measured
  const double elapsed_before = state.elapsed_s;
  const int64_t start_step = state.step;
  auto run_start = Clock::now();
  bool stop = false;
  while (state.epoch < cfg.training.epochs && !stop) {
    if (cfg.training.max_steps > 0 && state.step >= cfg.training.max_steps) break;
    loader.restore(state.epoch, state.step_in_epoch * accumulate);
    auto epoch_start = Clock::now();
    int64_t epoch_samples = 0;
    while (state.step_in_epoch < steps_per_epoch) {
      if (cfg.training.max_steps > 0 && state.step >= cfg.training.max_steps) break;
      auto step_start = Clock::now();
      const double lr = schedule.lr_at(state.step);
      optimizer_->set_lr(lr);
      // set_to_none (PyTorch 2's default): backward then hands each parameter the gradient it
      // computed instead of adding it into a zeroed buffer -- one pass over the gradients less to
      // zero them and one less to add (the ddp reducer copies each into its bucket once).
      optimizer_->zero_grad(/*set_to_none=*/true);
      double loss_sum = 0;
      for (int m = 0; m < accumulate; ++m) {
        std::optional<Batch> batch = loader.next();
        TANDEM_ASSERT(batch.has_value(), "loader ran out of batches mid-epoch");
        MicroBatch micro{&*batch, state.step, m, accumulate, seed};
        if (scaler) micro.loss_scale = scaler->scale();
        loss_sum += strat.forward_backward(*model_, micro);
      }
      strat.synchronize(*model_);
      // fp16: a step whose scaled gradients overflowed is skipped and the scale halved (normal
      // while the scaler finds its level; not a divergence); otherwise the gradients are unscaled.
      bool overflow = false;
      if (scaler) {
        const std::vector<Tensor> params = model_->parameters();
        overflow = !grads_finite(params);
        if (!overflow) scale_grads(params, 1.0 / scaler->scale());
        scaler->update(overflow);
      }
      double loss = strat.mean_loss(loss_sum / accumulate);
      bool finite = std::isfinite(loss);
      double grad_norm = 0;
      if (finite && cfg.training.grad_clip > 0) {
        grad_norm = clip_grad_norm(model_->named_parameters(), cfg.training.grad_clip);
        finite = std::isfinite(grad_norm);
      }
      if (!finite) {
        ++nonfinite_in_a_row;
        if (chief)
          err << "warning: step " << state.step + 1 << ": non-finite loss or gradient (loss " << loss
              << "); step skipped (" << nonfinite_in_a_row << " in a row)\n";
        TANDEM_CHECK_T(Error, nonfinite_in_a_row < cfg.training.max_nonfinite_steps,
                       "training diverged: ", nonfinite_in_a_row,
                       " steps in a row had a non-finite loss or gradient (training.max_nonfinite_steps = ",
                       cfg.training.max_nonfinite_steps, "); lower optimizer.lr or set training.grad_clip");
        optimizer_->zero_grad(/*set_to_none=*/true);
      } else if (overflow) {
        optimizer_->zero_grad(/*set_to_none=*/true);
      } else {
        nonfinite_in_a_row = 0;
        strat.apply_update(*model_, *optimizer_);
        epoch_loss_sum += loss;
        epoch_loss_count += 1;
        interval_loss += loss;
        interval_steps += 1;
      }
      state.step += 1;
      state.step_in_epoch += 1;
      const double dt = seconds_since(step_start);
      train_time += dt;
      samples_done += global_batch * accumulate;
      epoch_samples += global_batch * accumulate;
      if (chief) {
        double sps = epoch_samples / std::max(seconds_since(epoch_start), 1e-9);
        ProgressStats ps{state.epoch + 1, state.step_in_epoch, steps_per_epoch,
                         finite ? loss : NAN, lr, sps,
                         estimate_eta(seconds_since(run_start), state.step - start_step,
                                      total_steps - start_step)};
        if (progress) progress->update(ps);
        if (state.step % cfg.logging.every_steps == 0 && interval_steps > 0) {
          MetricValues mv{{"train/loss", interval_loss / interval_steps}, {"train/lr", lr},
                          {"train/samples_per_sec", sps}};
          if (cfg.training.grad_clip > 0) mv.push_back({"train/grad_norm", grad_norm});
          if (cfg.training.log_memory) {
            AllocatorStats st = cpu_allocator_stats();
            mv.push_back({"memory/cpu_peak_allocated_mb", st.peak_allocated_bytes / 1048576.0});
            if (device.is_cuda()) {
              DeviceMemoryStats ds = backend_for("log_memory", device).memory_stats(device.index);
              mv.push_back({"memory/cuda_peak_allocated_mb", ds.peak_allocated_bytes / 1048576.0});
              mv.push_back({"memory/cuda_reserved_mb", ds.reserved_bytes / 1048576.0});
            }
          }
          metrics->log(state.step, state.epoch, mv);
          if (tb) {
            for (const auto& [tag, v] : mv) tb->add_scalar(tag, v, state.step);
            tb->flush();
          }
          interval_loss = 0;
          interval_steps = 0;
        }
      }
      bool at_stop = (stop_at_step >= 0 && state.step >= stop_at_step) || stop_requested_.load();
      bool periodic = cfg.checkpoint.every_steps > 0 && state.step % cfg.checkpoint.every_steps == 0;
      if (at_stop || periodic) {
        state.elapsed_s = elapsed_before + seconds_since(run_start);
        if (!(state.step_in_epoch == steps_per_epoch)) save();  // epoch ends save below
      }
      if (at_stop) {
        stop = true;
        result.stopped_early = true;
        break;
      }
    }
    const bool epoch_done = state.step_in_epoch >= steps_per_epoch;
    if (epoch_done) {
      if (progress) progress->finish();
      if (cfg.training.eval_every_epoch || state.epoch + 1 == cfg.training.epochs) {
        last_eval = evaluate(*model_, strat, test_data, test_tf, global_batch * 4, cfg.data.workers);
        last_eval_step = state.step;
        if (chief) {
          MetricValues mv{{"test/loss", last_eval.loss}, {"test/accuracy", last_eval.accuracy},
                          {"train/epoch_loss", epoch_loss_count ? epoch_loss_sum / epoch_loss_count : 0}};
          metrics->log(state.step, state.epoch, mv);
          if (tb) {
            for (const auto& [tag, v] : mv) tb->add_scalar(tag, v, state.step);
            tb->flush();
          }
          out << "epoch " << state.epoch + 1 << "/" << cfg.training.epochs << ": train_loss "
              << format_double(epoch_loss_count ? epoch_loss_sum / epoch_loss_count : 0, 4)
              << " test_loss " << format_double(last_eval.loss, 4) << " test_accuracy "
              << format_double(last_eval.accuracy, 4) << "\n" << std::flush;
        }
      }
      result.train_loss = epoch_loss_count ? epoch_loss_sum / epoch_loss_count : 0;
      epoch_loss_sum = 0;
      epoch_loss_count = 0;
      state.epoch += 1;
      state.step_in_epoch = 0;
      state.elapsed_s = elapsed_before + seconds_since(run_start);
      save();
    } else if (epoch_loss_count > 0) {
      result.train_loss = epoch_loss_sum / epoch_loss_count;
    }
    if (cfg.training.max_steps > 0 && state.step >= cfg.training.max_steps) break;
  }
  if (progress) progress->finish();
  // A run that ended by max_steps mid-epoch (or resumed a finished run, or skipped the last
  // epoch's evaluation): evaluate the final model once so the final line is complete.
  const bool mid_epoch_end = !result.stopped_early && state.step_in_epoch > 0;
  if (!result.stopped_early && last_eval_step != state.step) {
    last_eval = evaluate(*model_, strat, test_data, test_tf, global_batch * 4, cfg.data.workers);
    last_eval_step = state.step;
    if (chief) {
      MetricValues mv{{"test/loss", last_eval.loss}, {"test/accuracy", last_eval.accuracy}};
      metrics->log(state.step, state.epoch, mv);
      if (tb) {
        for (const auto& [tag, v] : mv) tb->add_scalar(tag, v, state.step);
        tb->flush();
      }
    }
  }
  if (mid_epoch_end) {
    state.elapsed_s = elapsed_before + seconds_since(run_start);
    save();
  }
  result.epoch = state.epoch;
  result.step = state.step;
  result.test_loss = last_eval.loss;
  result.test_accuracy = last_eval.accuracy;
  result.samples_per_sec = train_time > 0 ? samples_done / train_time : 0;
  std::ostringstream line;
  line << "final: epoch=" << result.epoch << " step=" << result.step << " train_loss="
       << format_double(result.train_loss, 4) << " test_loss=" << format_double(result.test_loss, 4)
       << " test_accuracy=" << format_double(result.test_accuracy, 4)
       << " samples_per_sec=" << format_double(result.samples_per_sec, 1);
  result.final_line = line.str();
  if (!result.stopped_early) strat.finish();
  if (chief && !result.stopped_early) {
    out << result.final_line << "\n";
    if (std::string extra = strat.report(); !extra.empty()) out << extra << "\n";
    out << std::flush;
  }
  return result;
}

}  // namespace tandem
