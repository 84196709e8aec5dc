// Global-norm gradient clipping, as torch.nn.utils.clip_grad_norm_ (L2): the norm is taken over
// the grads of all parameters as one vector (accumulated in double, in fixed chunks, so it does
// not depend on the thread count); when it exceeds max_norm the grads are scaled in place by
// max_norm / (norm + 1e-6). Parameters without a grad are ignored.
#pragma once

#include <vector>

#include "core/optim/optimizer.h"

namespace tandem {

// Returns the total norm before clipping. Grads are scaled exactly when torch would scale them
// (max_norm / (norm + 1e-6) < 1). A non-finite norm (inf/nan grads) is returned as is and
// nothing is scaled: the caller decides (skip the step, lower the loss scale). max_norm must be
// finite and > 0 (ConfigError).
double clip_grad_norm(const std::vector<Tensor>& params, double max_norm);
double clip_grad_norm(const NamedTensors& params, double max_norm);

}  // namespace tandem
