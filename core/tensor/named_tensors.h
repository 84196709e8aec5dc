// NamedTensors: tensors with their names, in order -- a module's parameters and buffers, an
// optimizer's state, the contents of a safetensors file or a checkpoint. One alias for all of them,
// so that each passes to the others without a conversion.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "core/tensor/tensor.h"

namespace tandem {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

}  // namespace tandem
