// Turns a resolved ExperimentConfig into the objects the trainer builds a run from: data sets,
// model, optimizer, schedule, and the training device. (The strategy is built by
// strategies/strategy_factory.h, which knows the process's environment.) Every config error
// surfaces as ConfigError naming the key.
#pragma once

#include <memory>

#include "configs/schema/config.h"
#include "core/data/dataset.h"
#include "core/data/transforms.h"
#include "core/nn/module.h"
#include "core/optim/optimizer.h"
#include "core/optim/schedule.h"

namespace tandem {

std::shared_ptr<const Dataset> build_dataset(const ExperimentConfig& cfg, const std::string& split);

// The three splits a run uses. validation: data.validation_fraction of the training split (held
// out of `train`, served with evaluation's crop), else image_folder's val/ folder (then the same
// object as `test`), else null.
struct DataSplits {
  std::shared_ptr<const Dataset> train, validation, test;
};
DataSplits build_data_splits(const ExperimentConfig& cfg);

// default_transform_options (core/data/transforms.h) with data.normalize honoured: off, pixels are
// only divided by 255.
TransformOptions transform_options(const ExperimentConfig& cfg, const SampleShape& shape,
                                   bool augment);
std::shared_ptr<Module> build_model(const ExperimentConfig& cfg, const Dataset& data);
std::unique_ptr<Optimizer> build_optimizer(const ExperimentConfig& cfg, const NamedTensors& params);
Schedule build_schedule(const ExperimentConfig& cfg, int64_t total_steps);

// training.device as a Device: "cpu", "cuda" (the GPU of this process's LOCAL_RANK: one process
// per GPU), or "cuda:N". ConfigError naming the key when the device does not exist. Selecting a
// CUDA device here, before the strategy's communicator or any tensor touches CUDA, makes it the
// process's current device (docs/DESIGN.md section 2.2: LOCAL_RANK selects the device before any
// other CUDA call).
Device resolve_training_device(const ExperimentConfig& cfg, int local_rank);

}  // namespace tandem
