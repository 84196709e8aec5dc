// Umbrella header for core/nn: modules, layers, models and the dropout random context.
#pragma once

#include "core/nn/init.h"
#include "core/nn/layers.h"
#include "core/nn/models.h"
#include "core/nn/module.h"
#include "core/nn/random_context.h"
#include "core/nn/resnet.h"
#include "core/nn/sequential.h"
