// Dynamic loss scaling for fp16 training (torch.cuda.amp.GradScaler's rule): the loss is
// multiplied by scale() before backward so small fp16 gradients do not flush to zero; after
// backward, a step whose gradients hold an inf or NaN is skipped and the scale halved; after
// growth_interval clean steps in a row the scale doubles.
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor/tensor.h"

namespace tandem {

struct LossScalerOptions {
  double init_scale = 65536.0;  // 2^16, PyTorch's default
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int64_t growth_interval = 2000;  // PyTorch's default
};

class LossScaler {
 public:
  explicit LossScaler(const LossScalerOptions& options = {});
  double scale() const { return scale_; }
  // Records one step's outcome; returns true when the step should be applied (no overflow).
  bool update(bool found_inf);
  int64_t clean_steps() const { return clean_steps_; }

 private:
  LossScalerOptions options_;
  double scale_;
  int64_t clean_steps_ = 0;
};

// True when every defined gradient is finite (one reduction per gradient on its device, then one
// number to the host). Unscaling: every gradient multiplied by `factor` in place.
bool grads_finite(const std::vector<Tensor>& params);
void scale_grads(const std::vector<Tensor>& params, double factor);

}  // namespace tandem
