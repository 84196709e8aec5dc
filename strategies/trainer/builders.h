// Turns a resolved ExperimentConfig into the objects a run needs: data sets, model, optimizer,
// schedule, strategy. Every config error surfaces as ConfigError naming the key.
#pragma once

#include <memory>

#include "configs/schema/config.h"
#include "core/data/dataset.h"
#include "core/nn/module.h"
#include "core/optim/optimizer.h"
#include "core/optim/schedule.h"

namespace tandem {

std::shared_ptr<const Dataset> build_dataset(const ExperimentConfig& cfg, const std::string& split);
std::shared_ptr<Module> build_model(const ExperimentConfig& cfg, const Dataset& data);
std::unique_ptr<Optimizer> build_optimizer(const ExperimentConfig& cfg, const NamedTensors& params);
Schedule build_schedule(const ExperimentConfig& cfg, int64_t total_steps);

}  // namespace tandem
