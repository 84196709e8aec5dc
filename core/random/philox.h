// Counter-based random numbers (Philox4x32-10, Salmon et al. 2011). A draw is a pure function of
// (key, counter), so any element of any stream can be computed independently, on any thread or
// rank, in any order. This is what makes tandem's randomness independent of the world size:
// shuffles, augmentation and dropout masks are keyed by seed, step and *global* sample index.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "core/tensor/tensor.h"

namespace tandem {

// 4 random 32-bit words for counter (hi, lo) under a 64-bit key.
std::array<uint32_t, 4> philox4x32(uint64_t key, uint64_t counter_hi, uint64_t counter_lo);

// Uniform in [0, 1) with 24 random bits (exactly representable in f32).
inline float uint_to_unit_float(uint32_t x) {
  return static_cast<float>(x >> 8) * (1.0f / 16777216.0f);
}
// Uniform in [0, 1) with 53 random bits.
inline double uints_to_unit_double(uint32_t a, uint32_t b) {
  uint64_t v = (static_cast<uint64_t>(a) << 21) ^ (b >> 11);
  return static_cast<double>(v & ((1ull << 53) - 1)) * (1.0 / 9007199254740992.0);
}

// A named stream of draws: `stream` separates uses (init, shuffle, dropout, ...), `offset` is the
// next unused counter. Two generators with the same (seed, stream) give the same numbers.
class Generator {
 public:
  explicit Generator(uint64_t seed = 0, uint64_t stream = 0) : seed_(seed), stream_(stream) {}
  uint64_t seed() const { return seed_; }
  uint64_t stream() const { return stream_; }
  uint64_t offset() const { return offset_; }
  void set_offset(uint64_t offset) { offset_ = offset; }

  // Reserves n counters and returns the first; each counter yields 4 words.
  uint64_t reserve(uint64_t n) {
    uint64_t first = offset_;
    offset_ += n;
    return first;
  }
  uint64_t next_u64();
  double next_double();  // [0, 1)

 private:
  uint64_t seed_;
  uint64_t stream_;
  uint64_t offset_ = 0;
};

// Filled tensors (f32 or f64). The same generator state gives the same values on every run and
// every thread count.
Tensor rand(const Shape& shape, Generator& gen, DType dtype = DType::kF32);   // U[0, 1)
Tensor randn(const Shape& shape, Generator& gen, DType dtype = DType::kF32);  // N(0, 1)
// In place: U[low, high) and N(mean, std).
void uniform_(Tensor& t, double low, double high, Generator& gen);
void normal_(Tensor& t, double mean, double std, Generator& gen);
// A uniformly random permutation of [0, n) (Fisher-Yates driven by the generator).
std::vector<int64_t> randperm(int64_t n, Generator& gen);

}  // namespace tandem
