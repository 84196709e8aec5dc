// Synthetic samples: one Philox call per sample, then SplitMix64 (Steele et al. 2014) for bytes,
// 8 per step in the host's (little-endian: x86-64, aarch64) byte order.
#include "core/data/synthetic.h"

#include <algorithm>
#include <cstring>

#include "core/base/error.h"
#include "core/data/random_streams.h"
#include "core/random/philox.h"

namespace tandem {

SyntheticDataset::SyntheticDataset(const SyntheticOptions& options, bool test)
    : options_(options), test_(test) {
  const SampleShape& s = options_.shape;
  TANDEM_CHECK_T(ConfigError, options_.size >= 0, "synthetic data: size must be >= 0, got ",
                 options_.size);
  TANDEM_CHECK_T(ConfigError, s.channels > 0 && s.height > 0 && s.width > 0,
                 "synthetic data: shape must be positive, got ", sample_shape_str(s));
  TANDEM_CHECK_T(ConfigError, options_.num_classes > 0,
                 "synthetic data: num_classes must be positive, got ", options_.num_classes);
}

void SyntheticDataset::get(int64_t index, uint8_t* pixels_out, int64_t* label_out) const {
  TANDEM_CHECK(index >= 0 && index < size(), "synthetic: sample index ", index,
               " out of range [0, ", size(), ")");
  const uint64_t counter = static_cast<uint64_t>(index) | (test_ ? uint64_t{1} << 63 : 0);
  const auto r = philox4x32(options_.seed, stream_counter_hi(kStreamSynthetic, 0), counter);
  uint64_t state = static_cast<uint64_t>(r[0]) << 32 | r[1];
  const int64_t n = options_.shape.numel();
  for (int64_t i = 0; i < n; i += 8) {
    state += 0x9E3779B97F4A7C15ull;
    uint64_t z = state;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    std::memcpy(pixels_out + i, &z, static_cast<size_t>(std::min<int64_t>(8, n - i)));
  }
  *label_out = static_cast<int64_t>(r[2] % static_cast<uint64_t>(options_.num_classes));
}

}  // namespace tandem
