#include "core/random/philox.h"

#include <cmath>

#include "core/parallel/parallel.h"

namespace tandem {

std::array<uint32_t, 4> philox4x32(uint64_t key, uint64_t counter_hi, uint64_t counter_lo) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;  // multipliers (Random123)
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;  // Weyl key increments
  uint32_t c0 = static_cast<uint32_t>(counter_lo), c1 = static_cast<uint32_t>(counter_lo >> 32);
  uint32_t c2 = static_cast<uint32_t>(counter_hi), c3 = static_cast<uint32_t>(counter_hi >> 32);
  uint32_t k0 = static_cast<uint32_t>(key), k1 = static_cast<uint32_t>(key >> 32);
  for (int round = 0; round < 10; ++round) {
    uint64_t p0 = static_cast<uint64_t>(kM0) * c0;
    uint64_t p1 = static_cast<uint64_t>(kM1) * c2;
    uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ k0;
    uint32_t n1 = static_cast<uint32_t>(p1);
    uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ k1;
    uint32_t n3 = static_cast<uint32_t>(p0);
    c0 = n0;
    c1 = n1;
    c2 = n2;
    c3 = n3;
    k0 += kW0;
    k1 += kW1;
  }
  return {c0, c1, c2, c3};
}

uint64_t Generator::next_u64() {
  auto r = philox4x32(seed_, stream_, reserve(1));
  return static_cast<uint64_t>(r[0]) << 32 | r[1];
}

double Generator::next_double() {
  auto r = philox4x32(seed_, stream_, reserve(1));
  return uints_to_unit_double(r[0], r[1]);
}

namespace {

// Fills n values; value i comes from counter first + i / 2 (two values per counter, each from two
// words), so the result does not depend on how the loop is split over threads.
template <typename T, typename F>
void fill_pairs(T* out, int64_t n, const Generator& gen, uint64_t first, F draw) {
  parallel_for(0, (n + 1) / 2, 4096, [&](int64_t b, int64_t e) {
    for (int64_t c = b; c < e; ++c) {
      auto r = philox4x32(gen.seed(), gen.stream(), first + static_cast<uint64_t>(c));
      double u0 = uints_to_unit_double(r[0], r[1]);
      double u1 = uints_to_unit_double(r[2], r[3]);
      T v0, v1;
      draw(u0, u1, &v0, &v1);
      out[2 * c] = v0;
      if (2 * c + 1 < n) out[2 * c + 1] = v1;
    }
  });
}

template <typename T>
void fill_uniform(T* out, int64_t n, Generator& gen, double low, double high) {
  uint64_t first = gen.reserve(static_cast<uint64_t>((n + 1) / 2));
  fill_pairs<T>(out, n, gen, first, [&](double u0, double u1, T* a, T* b) {
    *a = static_cast<T>(low + (high - low) * u0);
    *b = static_cast<T>(low + (high - low) * u1);
  });
}

template <typename T>
void fill_normal(T* out, int64_t n, Generator& gen, double mean, double std) {
  uint64_t first = gen.reserve(static_cast<uint64_t>((n + 1) / 2));
  fill_pairs<T>(out, n, gen, first, [&](double u0, double u1, T* a, T* b) {
    double r = std::sqrt(-2.0 * std::log(1.0 - u0));  // Box-Muller; 1-u0 in (0, 1]
    double th = 2.0 * M_PI * u1;
    *a = static_cast<T>(mean + std * r * std::cos(th));
    *b = static_cast<T>(mean + std * r * std::sin(th));
  });
}

void check_fillable(const Tensor& t) {
  TANDEM_CHECK_T(TypeError, t.dtype() == DType::kF32 || t.dtype() == DType::kF64,
                 "random fill needs an f32 or f64 tensor, got ", dtype_name(t.dtype()));
  TANDEM_CHECK(t.is_contiguous(), "random fill needs a contiguous tensor");
}

}  // namespace

void uniform_(Tensor& t, double low, double high, Generator& gen) {
  check_fillable(t);
  if (t.dtype() == DType::kF32)
    fill_uniform(t.data<float>(), t.numel(), gen, low, high);
  else
    fill_uniform(t.data<double>(), t.numel(), gen, low, high);
}

void normal_(Tensor& t, double mean, double std, Generator& gen) {
  check_fillable(t);
  if (t.dtype() == DType::kF32)
    fill_normal(t.data<float>(), t.numel(), gen, mean, std);
  else
    fill_normal(t.data<double>(), t.numel(), gen, mean, std);
}

Tensor rand(const Shape& shape, Generator& gen, DType dtype) {
  Tensor t = empty(shape, dtype);
  uniform_(t, 0.0, 1.0, gen);
  return t;
}

Tensor randn(const Shape& shape, Generator& gen, DType dtype) {
  Tensor t = empty(shape, dtype);
  normal_(t, 0.0, 1.0, gen);
  return t;
}

std::vector<int64_t> randperm(int64_t n, Generator& gen) {
  std::vector<int64_t> p(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) p[i] = i;
  for (int64_t i = n - 1; i > 0; --i) {
    int64_t j = static_cast<int64_t>(gen.next_u64() % static_cast<uint64_t>(i + 1));
    std::swap(p[i], p[j]);
  }
  return p;
}

}  // namespace tandem
