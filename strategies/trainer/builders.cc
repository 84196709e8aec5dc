#include "strategies/trainer/builders.h"

#include "core/backends/device_backend.h"

#include "core/base/error.h"
#include "core/data/image_folder.h"
#include "core/data/validation_split.h"
#include "core/nn/models.h"
#include "core/nn/onnx_model.h"
#include "core/optim/adam.h"
#include "core/optim/sgd.h"
#include "core/random/philox.h"

namespace tandem {

namespace {

std::shared_ptr<const Dataset> build_split(const ExperimentConfig& cfg, const std::string& split,
                                           bool random_crop) {
  SyntheticOptions syn;
  if (cfg.data.synthetic_shape.size() == 3)
    syn.shape = {cfg.data.synthetic_shape[0], cfg.data.synthetic_shape[1],
                 cfg.data.synthetic_shape[2]};
  syn.size = split == "train" ? cfg.data.synthetic_samples
                              : std::max<int64_t>(cfg.data.synthetic_samples / 4, 1);
  syn.num_classes = cfg.model.num_classes;
  syn.seed = static_cast<uint64_t>(cfg.seed);
  // image_folder: training crops are RandomResizedCrop when data.augment is on, evaluation (and
  // training without augmentation) resize + center crop.
  ImageFolderOptions folder;
  folder.image_size = cfg.data.image_size;
  folder.random_crop = random_crop;
  folder.seed = static_cast<uint64_t>(cfg.seed);
  return make_dataset(to_string(cfg.data.name), cfg.data.path, split, syn, &folder);
}

// The one place schedule.name meets core's kinds.
Schedule::Kind schedule_kind(ScheduleName name) {
  switch (name) {
    case ScheduleName::kConstant:
      return Schedule::Kind::kConstant;
    case ScheduleName::kStep:
      return Schedule::Kind::kStep;
    case ScheduleName::kCosine:
      return Schedule::Kind::kCosine;
  }
  TANDEM_ASSERT(false, "schedule.name ", static_cast<int>(name), " has no kind");
  return Schedule::Kind::kConstant;
}

}  // namespace

std::shared_ptr<const Dataset> build_dataset(const ExperimentConfig& cfg,
                                             const std::string& split) {
  return build_split(cfg, split, split == "train" && cfg.data.augment);
}

DataSplits build_data_splits(const ExperimentConfig& cfg) {
  DataSplits d;
  d.train = build_dataset(cfg, "train");
  d.test = build_dataset(cfg, "test");
  if (cfg.data.validation_fraction > 0) {
    ValidationSplit s = split_for_validation(d.train->size(), cfg.data.validation_fraction,
                                             static_cast<uint64_t>(cfg.seed));
    // image_folder crops while it decodes: the held-out part needs evaluation's crop.
    std::shared_ptr<const Dataset> eval_base =
        cfg.data.name == DatasetName::kImageFolder && cfg.data.augment
            ? build_split(cfg, "train", false)
            : d.train;
    d.validation = std::make_shared<SubsetDataset>(eval_base, std::move(s.validation));
    d.train = std::make_shared<SubsetDataset>(d.train, std::move(s.train));
  } else if (cfg.data.name == DatasetName::kImageFolder) {
    d.validation = d.test;
  }
  return d;
}

TransformOptions transform_options(const ExperimentConfig& cfg, const SampleShape& shape,
                                   bool augment) {
  TransformOptions o = default_transform_options(to_string(cfg.data.name), shape, augment,
                                                 static_cast<uint64_t>(cfg.seed));
  if (!cfg.data.normalize) {
    o.mean.clear();
    o.std.clear();
  }
  return o;
}

std::shared_ptr<Module> build_model(const ExperimentConfig& cfg, const Dataset& data) {
  SampleShape s = data.sample_shape();
  if (!cfg.model.onnx.empty()) {
    // The graph and its initializers are the model (init is the file's, not the seed's).
    OnnxModelOptions oo;
    oo.channels = s.channels;
    oo.height = s.height;
    oo.width = s.width;
    std::shared_ptr<OnnxModel> m = load_onnx_model(cfg.model.onnx, oo);
    TANDEM_CHECK_T(ConfigError, m->num_outputs() >= data.num_classes(),
                   "model.onnx: ", cfg.model.onnx, ": the graph gives ", m->num_outputs(),
                   " logits per sample, fewer than the ", data.num_classes(), " classes of ",
                   data.name());
    if (cfg.training.precision == Precision::kFp64) m->to(DType::kF64);
    return m;
  }
  ModelOptions mo;
  mo.in_channels = s.channels;
  mo.image_size = s.height;
  mo.num_classes = cfg.model.num_classes;
  mo.mlp_hidden = cfg.model.hidden;
  mo.mlp_in_features = s.numel();
  TANDEM_CHECK_T(
      ConfigError, data.num_classes() <= cfg.model.num_classes,
      "model.num_classes: ", cfg.model.num_classes, " is fewer than the ", data.num_classes(),
      " classes of ", data.name(),
      cfg.data.name == DatasetName::kImageFolder ? " (one per folder of data.path/train)" : "");
  // Parameter initialisation is keyed by the seed alone (docs/DESIGN.md section 8): every replica
  // builds the same weights.
  Generator gen(static_cast<uint64_t>(cfg.seed), /*stream=*/0x1a17);
  std::shared_ptr<Module> model = make_model(to_string(cfg.model.name), mo, gen);
  // fp64: the f32 initial weights widened, so an fp64 run starts where the fp32 run does.
  if (cfg.training.precision == Precision::kFp64) model->to(DType::kF64);
  return model;
}

std::unique_ptr<Optimizer> build_optimizer(const ExperimentConfig& cfg,
                                           const NamedTensors& params) {
  const OptimizerConfig& o = cfg.optimizer;
  if (o.name == OptimizerName::kSgd) {
    SgdOptions so;
    so.lr = o.lr;
    so.momentum = o.momentum;
    so.nesterov = o.nesterov;
    so.weight_decay = o.weight_decay;
    return std::make_unique<Sgd>(params, so);
  }
  AdamOptions ao;
  ao.lr = o.lr;
  ao.beta1 = o.betas.at(0);
  ao.beta2 = o.betas.at(1);
  ao.eps = o.eps;
  ao.weight_decay = o.weight_decay;
  if (o.name == OptimizerName::kAdam) return std::make_unique<Adam>(params, ao);
  return std::make_unique<AdamW>(params, ao);  // OptimizerName::kAdamW
}

Schedule build_schedule(const ExperimentConfig& cfg, int64_t total_steps) {
  ScheduleOptions so;
  so.base_lr = cfg.optimizer.lr;
  so.step_size = cfg.schedule.step_size;
  so.gamma = cfg.schedule.gamma;
  so.total_steps = std::max<int64_t>(total_steps, cfg.schedule.warmup_steps + 1);
  so.min_lr = cfg.schedule.min_lr;
  so.warmup_steps = cfg.schedule.warmup_steps;
  // Linear warm-up reaching optimizer.lr after warmup_steps steps, starting at lr / warmup_steps.
  so.warmup_start_factor = cfg.schedule.warmup_steps > 0 ? 1.0 / cfg.schedule.warmup_steps : 1.0;
  return Schedule(schedule_kind(cfg.schedule.name), so);
}

Device resolve_training_device(const ExperimentConfig& cfg, int local_rank) {
  const std::string& spec = cfg.training.device;
  if (spec == "cpu") return Device::cpu();
  int index = local_rank;
  if (spec.rfind("cuda:", 0) == 0) {
    const std::string n = spec.substr(5);
    TANDEM_CHECK_T(
        ConfigError,
        !n.empty() && n.size() < 4 && n.find_first_not_of("0123456789") == std::string::npos,
        "training.device: '", spec, "' is not cpu, cuda or cuda:N");
    index = std::stoi(n);
  } else {
    TANDEM_CHECK_T(ConfigError, spec == "cuda", "training.device: '", spec,
                   "' is not cpu, cuda or cuda:N");
  }
  const int count = cuda_device_count();
  TANDEM_CHECK_T(ConfigError, count > 0, "training.device: '", spec, "' but ",
                 cuda_backend_or_null() == nullptr
                     ? "this build has the CPU backend only (configure with -DTANDEM_CUDA=ON)"
                     : "no CUDA device is visible (no GPU or driver, or CUDA_VISIBLE_DEVICES)",
                 "; use training.device=cpu");
  TANDEM_CHECK_T(ConfigError, index >= 0 && index < count, "training.device: '", spec,
                 "' selects cuda:", index, (spec == "cuda" ? " (LOCAL_RANK)" : ""), " but only ",
                 count, " CUDA device(s) are visible");
  Device dev = Device::cuda(index);
  zeros({1}, DType::kF32, dev);  // makes it current and creates its stream before anything else
  return dev;
}

}  // namespace tandem
