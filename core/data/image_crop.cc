// RandomResizedCrop / Resize + CenterCrop geometry and Pillow's bilinear resampling
// (Pillow 9 src/libImaging/Resample.c: precompute_coeffs, normalize_coeffs_8bpc,
// ImagingResampleHorizontal_8bpc / Vertical_8bpc), restricted to the output window kept. The
// horizontal pass writes planar rows (with AVX2: eight output columns per gather); the sums are
// the same integers in another order, so the bytes are Pillow's.
#include "core/data/image_crop.h"

#include <algorithm>
#include <cmath>
#ifdef __AVX2__
#include <immintrin.h>
#endif

#include "core/base/error.h"

namespace tandem {

namespace {

// Python's round() to an int: half to even (nearbyint in the default rounding mode).
int64_t py_round(double x) {
  return static_cast<int64_t>(std::nearbyint(x));
}

constexpr int kPrecisionBits = 32 - 8 - 2;  // Pillow's PRECISION_BITS

// Fixed-point taps for resizing `in_size` samples to `out_size`, as Pillow computes them: for
// output k, bounds[2k] is the first input sample and bounds[2k+1] the tap count.
struct Coeffs {
  int ksize = 0;
  std::vector<int> bounds;
  std::vector<int32_t> kk;
};

Coeffs precompute(int64_t in_size, int64_t out_size) {
  Coeffs c;
  const double scale = static_cast<double>(in_size) / static_cast<double>(out_size);
  const double filterscale = std::max(scale, 1.0);
  const double support = 1.0 * filterscale;  // bilinear: support 1
  c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.bounds.resize(static_cast<size_t>(out_size) * 2);
  c.kk.assign(static_cast<size_t>(out_size) * c.ksize, 0);
  std::vector<double> k(static_cast<size_t>(c.ksize));
  for (int64_t xx = 0; xx < out_size; ++xx) {
    const double center = (static_cast<double>(xx) + 0.5) * scale;
    const double ss = 1.0 / filterscale;
    int64_t xmin = static_cast<int64_t>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int64_t xmax = static_cast<int64_t>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double ww = 0.0;
    for (int64_t x = 0; x < xmax; ++x) {
      double t = std::abs((static_cast<double>(x + xmin) - center + 0.5) * ss);
      const double w = t < 1.0 ? 1.0 - t : 0.0;
      k[static_cast<size_t>(x)] = w;
      ww += w;
    }
    for (int64_t x = 0; x < xmax; ++x) {
      double v = ww != 0.0 ? k[static_cast<size_t>(x)] / ww : k[static_cast<size_t>(x)];
      c.kk[static_cast<size_t>(xx * c.ksize + x)] = static_cast<int32_t>(
          v < 0 ? -0.5 + v * (1 << kPrecisionBits) : 0.5 + v * (1 << kPrecisionBits));
    }
    c.bounds[static_cast<size_t>(2 * xx)] = static_cast<int>(xmin);
    c.bounds[static_cast<size_t>(2 * xx + 1)] = static_cast<int>(xmax);
  }
  return c;
}

inline uint8_t clip8(int32_t v) {
  v >>= kPrecisionBits;
  return static_cast<uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v);
}

#ifdef __AVX2__
// clip8 of eight sums, stored as eight bytes (the saturating packs clamp to 0..255 as clip8 does).
inline void store_clipped8(__m256i v, uint8_t* dst) {
  v = _mm256_srai_epi32(v, kPrecisionBits);
  const __m128i w16 = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  _mm_storel_epi64(reinterpret_cast<__m128i*>(dst), _mm_packus_epi16(w16, w16));
}
#endif

}  // namespace

CropBox random_resized_crop_box(int64_t width, int64_t height,
                                const std::function<double(int, int)>& uniform, double scale_min,
                                double scale_max, double ratio_min, double ratio_max) {
  const double area = static_cast<double>(width) * static_cast<double>(height);
  const double log_lo = std::log(ratio_min), log_hi = std::log(ratio_max);
  for (int attempt = 0; attempt < 10; ++attempt) {
    const double target_area = area * (scale_min + (scale_max - scale_min) * uniform(attempt, 0));
    const double aspect = std::exp(log_lo + (log_hi - log_lo) * uniform(attempt, 1));
    const int64_t w = py_round(std::sqrt(target_area * aspect));
    const int64_t h = py_round(std::sqrt(target_area / aspect));
    if (0 < w && w <= width && 0 < h && h <= height) {
      // torch.randint(0, n): floor(u * n) for u in [0, 1).
      const int64_t top = std::min<int64_t>(
          static_cast<int64_t>(uniform(attempt, 2) * static_cast<double>(height - h + 1)),
          height - h);
      const int64_t left = std::min<int64_t>(
          static_cast<int64_t>(uniform(attempt, 3) * static_cast<double>(width - w + 1)),
          width - w);
      return {top, left, h, w};
    }
  }
  // Fallback: the central crop of the largest box with an allowed ratio.
  const double in_ratio = static_cast<double>(width) / static_cast<double>(height);
  int64_t w = width, h = height;
  if (in_ratio < ratio_min) {
    h = py_round(static_cast<double>(w) / ratio_min);
  } else if (in_ratio > ratio_max) {
    w = py_round(static_cast<double>(h) * ratio_max);
  }
  return {(height - h) / 2, (width - w) / 2, h, w};
}

ResizeCenterCrop resize_center_crop(int64_t width, int64_t height, int64_t resize_short,
                                    int64_t crop) {
  ResizeCenterCrop r;
  const bool w_short = width <= height;
  const int64_t s = w_short ? width : height, l = w_short ? height : width;
  const int64_t new_long = static_cast<int64_t>(static_cast<double>(resize_short) *
                                                static_cast<double>(l) / static_cast<double>(s));
  r.resized_width = w_short ? resize_short : new_long;
  r.resized_height = w_short ? new_long : resize_short;
  TANDEM_CHECK(r.resized_width >= crop && r.resized_height >= crop, "center crop ", crop,
               " is larger than the resized image ", r.resized_width, "x", r.resized_height);
  r.box.top = py_round(static_cast<double>(r.resized_height - crop) / 2.0);
  r.box.left = py_round(static_cast<double>(r.resized_width - crop) / 2.0);
  r.box.height = r.box.width = crop;
  return r;
}

namespace {

// The horizontal pass: rows [first_row, first_row + rows) of the source box at `base`, resampled
// to the output columns of `out_box`, into 3 planes of rows x out_box.width (`tmp`), rounded as
// Pillow rounds. Pillow skips the pass when the width does not change; its taps are then the
// identity.
// Long: the AVX2 gather kernel and its scalar tail share the per-column taps built at the top.
void horizontal_pass(const RgbImage& img, const uint8_t* base, const Coeffs& hc, bool need_h,
                     const CropBox& out_box, int64_t first_row, int64_t rows, uint8_t* tmp) {
  const int64_t ow = out_box.width, plane = rows * ow, stride = img.width * 3;
  // Taps past a pixel's count are zero (precompute), so a fixed tap count reads up to ksize - 1
  // pixels (and one byte) beyond the box: still inside the image except at the end of its last
  // row, where the decoder leaves kImagePadBytes of slack (image_decode.h).
  const bool padded = img.pixels.size() >= static_cast<size_t>(img.height * stride) +
                                               static_cast<size_t>(3 * hc.ksize + 1);
  if (!need_h) {
    for (int64_t y = 0; y < rows; ++y) {
      const uint8_t* row = base + (first_row + y) * stride + out_box.left * 3;
      for (int64_t xx = 0; xx < ow; ++xx)
        for (int c = 0; c < 3; ++c) tmp[c * plane + y * ow + xx] = row[3 * xx + c];
    }
  } else {
    const int ks = hc.ksize;
    // Per kept output column: the byte offset of its first tap, and its taps tap-major
    // (kt[x * ow + xx]) so eight columns' tap x load as one vector.
    std::vector<int32_t> first(static_cast<size_t>(ow));
    std::vector<int32_t> kt(static_cast<size_t>(ks * ow));
    for (int64_t xx = 0; xx < ow; ++xx) {
      const int64_t ox = out_box.left + xx;
      first[static_cast<size_t>(xx)] = hc.bounds[static_cast<size_t>(2 * ox)] * 3;
      for (int x = 0; x < ks; ++x)
        kt[static_cast<size_t>(x * ow + xx)] = hc.kk[static_cast<size_t>(ox * ks + x)];
    }
    for (int64_t y = 0; y < rows; ++y) {
      const uint8_t* row = base + (first_row + y) * stride;
      uint8_t* t0 = tmp + y * ow;
      uint8_t* t1 = t0 + plane;
      uint8_t* t2 = t1 + plane;
      int64_t xx = 0;
#ifdef __AVX2__
      // Eight output columns at a time: one gather per tap fetches each column's R, G, B (and a
      // byte of the next pixel) as a 32-bit word; integer sums, so the result is the scalar one.
      if (padded) {
        const __m256i bias = _mm256_set1_epi32(1 << (kPrecisionBits - 1));
        const __m256i byte = _mm256_set1_epi32(0xFF);
        const __m256i three = _mm256_set1_epi32(3);
        const int* row_words = reinterpret_cast<const int*>(row);
        for (; xx + 8 <= ow; xx += 8) {
          __m256i at = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(first.data() + xx));
          __m256i r = bias, g = bias, b = bias;
          for (int x = 0; x < ks; ++x) {
            const __m256i w = _mm256_i32gather_epi32(row_words, at, 1);
            const __m256i k =
                _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kt.data() + x * ow + xx));
            r = _mm256_add_epi32(r, _mm256_mullo_epi32(_mm256_and_si256(w, byte), k));
            g = _mm256_add_epi32(
                g, _mm256_mullo_epi32(_mm256_and_si256(_mm256_srli_epi32(w, 8), byte), k));
            b = _mm256_add_epi32(
                b, _mm256_mullo_epi32(_mm256_and_si256(_mm256_srli_epi32(w, 16), byte), k));
            at = _mm256_add_epi32(at, three);
          }
          store_clipped8(r, t0 + xx);
          store_clipped8(g, t1 + xx);
          store_clipped8(b, t2 + xx);
        }
      }
#endif
      for (; xx < ow; ++xx) {
        const int64_t ox = out_box.left + xx;
        const int32_t* k = hc.kk.data() + ox * ks;
        const uint8_t* p = row + first[static_cast<size_t>(xx)];
        const int xmax = hc.bounds[static_cast<size_t>(2 * ox + 1)];
        int32_t s0 = 1 << (kPrecisionBits - 1), s1 = s0, s2 = s0;
        for (int x = 0; x < xmax; ++x) {
          s0 += p[3 * x] * k[x];
          s1 += p[3 * x + 1] * k[x];
          s2 += p[3 * x + 2] * k[x];
        }
        t0[xx] = clip8(s0);
        t1[xx] = clip8(s1);
        t2[xx] = clip8(s2);
      }
    }
  }
}

// The vertical pass, plane by plane, from the horizontal pass's planes into the planar output.
void vertical_pass(const uint8_t* tmp, const Coeffs& vc, bool need_v, const CropBox& out_box,
                   int64_t first_row, int64_t rows, uint8_t* out) {
  const int64_t ow = out_box.width, oh = out_box.height, plane = rows * ow;
  std::vector<int32_t> acc(static_cast<size_t>(ow));
  for (int c = 0; c < 3; ++c) {
    const uint8_t* tp = tmp + c * plane;
    uint8_t* op = out + c * oh * ow;
    for (int64_t yy = 0; yy < oh; ++yy) {
      const int64_t oy = out_box.top + yy;
      if (!need_v) {
        std::copy(tp + (oy - first_row) * ow, tp + (oy - first_row + 1) * ow, op + yy * ow);
        continue;
      }
      const int ymin = vc.bounds[static_cast<size_t>(2 * oy)];
      const int ymax = vc.bounds[static_cast<size_t>(2 * oy + 1)];
      const int32_t* k = vc.kk.data() + oy * vc.ksize;
      int32_t* a = acc.data();
      std::fill(acc.begin(), acc.end(), 1 << (kPrecisionBits - 1));
      for (int y = 0; y < ymax; ++y) {
        const uint8_t* t = tp + (ymin + y - first_row) * ow;
        const int32_t w = k[y];
        for (int64_t xx = 0; xx < ow; ++xx) a[xx] += t[xx] * w;
      }
      uint8_t* o = op + yy * ow;
      for (int64_t xx = 0; xx < ow; ++xx) o[xx] = clip8(a[xx]);
    }
  }
}

}  // namespace

void resize_region(const RgbImage& img, const CropBox& src, int64_t out_w, int64_t out_h,
                   const CropBox& out_box, uint8_t* out, std::vector<uint8_t>* scratch) {
  TANDEM_ASSERT(src.top >= 0 && src.left >= 0 && src.top + src.height <= img.height &&
                    src.left + src.width <= img.width && src.width > 0 && src.height > 0,
                "source box outside the image");
  TANDEM_ASSERT(out_box.top >= 0 && out_box.left >= 0 && out_box.top + out_box.height <= out_h &&
                    out_box.left + out_box.width <= out_w,
                "output window outside the resized image");
  const Coeffs hc = precompute(src.width, out_w);
  const Coeffs vc = precompute(src.height, out_h);
  const int64_t ow = out_box.width, oh = out_box.height;
  // Rows of the source box the kept output rows read.
  const int64_t first_row = vc.bounds[static_cast<size_t>(2 * out_box.top)];
  const int64_t last = 2 * (out_box.top + oh - 1);
  const int64_t end_row =
      vc.bounds[static_cast<size_t>(last)] + vc.bounds[static_cast<size_t>(last + 1)];
  const int64_t rows = end_row - first_row;
  const int64_t stride = img.width * 3;
  const uint8_t* base = img.pixels.data() + src.top * stride + src.left * 3;
  scratch->resize(static_cast<size_t>(3 * rows * ow));
  horizontal_pass(img, base, hc, src.width != out_w, out_box, first_row, rows, scratch->data());
  vertical_pass(scratch->data(), vc, src.height != out_h, out_box, first_row, rows, out);
}

}  // namespace tandem
