// Dropout with a counter-based mask (docs/DESIGN.md section 8: randomness independent of the world
// size). Key decision: element j of row n has the global index (first_sample + n) * per_sample + j;
// a contiguous batch therefore covers one contiguous run of global indices, and index k uses word
// k % 4 of philox4x32(seed, stream, k / 4) through uint_to_unit_float. Any rank, thread split or
// batch split draws the same mask for the same global sample. The forward stores a u8 mask (only
// when a gradient is needed) so the backward is one multiply.
#include <cmath>

#include "core/autograd/node.h"
#include "core/backends/device_backend.h"
#include "core/ops/dispatch.h"
#include "core/ops/ops.h"
#include "core/parallel/parallel.h"
#include "core/random/philox.h"

namespace tandem {
namespace {

// Writes keep[i] for local elements [0, n) whose global indices start at `first` (1 = kept).
// Kept iff uniform = (word >> 8) / 2^24 >= p, i.e. (word >> 8) >= ceil(p * 2^24), in integers.
void draw_mask(const DropoutKey& key, uint64_t first, int64_t n, double p, uint8_t* keep) {
  const uint32_t threshold = static_cast<uint32_t>(std::ceil(p * 16777216.0));
  const uint64_t end = first + static_cast<uint64_t>(n);
  const uint64_t c_begin = first / 4, c_end = (end + 3) / 4;
  const uint64_t seed = key.seed, stream = key.stream;
  parallel_for(0, static_cast<int64_t>(c_end - c_begin), 4096, [=](int64_t b, int64_t e) {
    for (int64_t k = b; k < e; ++k) {
      const uint64_t counter = c_begin + static_cast<uint64_t>(k);
      const auto w = philox4x32(seed, stream, counter);
      const uint64_t g0 = counter * 4;
      if (g0 >= first && g0 + 4 <= end) {
        uint8_t* out = keep + (g0 - first);
        for (int word = 0; word < 4; ++word) out[word] = (w[word] >> 8) >= threshold;
        continue;
      }
      for (int word = 0; word < 4; ++word) {  // the partial counters at either end
        const uint64_t g = g0 + static_cast<uint64_t>(word);
        if (g >= first && g < end) keep[g - first] = (w[word] >> 8) >= threshold;
      }
    }
  });
}

// out[i] = x[i] * keep[i] * s, as PyTorch's x * mask (a dropped inf or NaN gives NaN). The
// lambda captures by value so the vectorised loop does not reload pointers through the closure.
template <typename T>
void masked_scale(const T* x, const uint8_t* keep, T s, int64_t n, T* out) {
  parallel_for(0, n, 1 << 15, [=](int64_t b, int64_t e) {
#pragma omp simd
    for (int64_t i = b; i < e; ++i) out[i] = x[i] * (static_cast<T>(keep[i]) * s);
  });
}

Tensor apply_mask(const Tensor& x_in, const Tensor& mask, double scale, const char* name) {
  Tensor x = x_in.contiguous();
  Tensor out = empty(x.shape(), x.dtype(), x.device());
  if (x.is_cuda()) {
    backend_for(name, x.device()).masked_scale(x, mask, scale, out);
    return out;
  }
  const int64_t n = x.numel();
  const uint8_t* keep = mask.data<uint8_t>();
  TANDEM_DISPATCH_FLOAT(x.dtype(), name, [&] {
    masked_scale<scalar_t>(x.data<scalar_t>(), keep, static_cast<scalar_t>(scale), n,
                           out.data<scalar_t>());
  });
  return out;
}

}  // namespace

Tensor dropout(const Tensor& x, double p, bool training, const DropoutKey& key) {
  TANDEM_CHECK(p >= 0.0 && p <= 1.0, "dropout: probability must be in [0, 1], got ", p);
  TANDEM_CHECK(key.first_sample >= 0, "dropout: first_sample must be >= 0, got ", key.first_sample);
  TANDEM_CHECK_T(TypeError, is_floating(x.dtype()), "dropout needs a floating tensor, got ",
                 dtype_name(x.dtype()));
  if (!training || p == 0.0) return x;
  const int64_t n = x.numel();
  const int64_t rows = x.dim() == 0 ? 1 : x.shape()[0];
  const int64_t per_sample = rows == 0 ? 0 : n / rows;
  Tensor mask = empty(x.shape(), DType::kU8, x.device());
  double scale = 0.0;
  const uint64_t first =
      static_cast<uint64_t>(key.first_sample) * static_cast<uint64_t>(per_sample);
  if (p >= 1.0) {
    mask.zero_();  // every element dropped (PyTorch returns zeros)
  } else if (x.is_cuda()) {
    backend_for("dropout", x.device()).dropout_mask(key.seed, key.stream, first, p, mask);
    scale = 1.0 / (1.0 - p);
  } else {
    draw_mask(key, first, n, p, mask.data<uint8_t>());
    scale = 1.0 / (1.0 - p);
  }
  Tensor out = apply_mask(x.detach(), mask, scale, "dropout");
  record("DropoutBackward", {x}, {out}, [mask, scale](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{apply_mask(g[0], mask, scale, "dropout_backward")};
  });
  return out;
}

}  // namespace tandem
