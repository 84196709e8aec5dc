// Which backend runs tandem's CPU conv2d (conv.cc). f32 convolutions with at least
// kOnednnMinGroupChannels input channels per group go to oneDNN (conv_dnnl.h), except 1x1
// convolutions while OpenBLAS runs its AVX-512 GEMM kernels; everything else -- f64 (gradient
// checks), the 1- and 3-channel first layers, depthwise -- to im2col + GEMM.
//
// The evidence, benchmarks/conv_backends.cc at 1 thread (CPU time, one training step of the
// layer; OpenBLAS's AVX-512 kernels are what the `tandem` program selects on AVX-512 CPUs unless
// OPENBLAS_CORETYPE says otherwise):
//                                 OpenBLAS AVX-512 kernels    OpenBLAS AVX2 (Haswell) kernels
//   3x3 / 5x5, >= 16 channels     oneDNN 1.2-2.1x faster      oneDNN 2.1-2.7x faster
//   3x3, 8 channels               im2col 1.2x faster          oneDNN 1.1-1.2x faster
//   3x3, 4 channels               im2col 2x faster            im2col 1.4x faster
//   1-3 channel first layers      im2col 1.5-3.6x faster      im2col 1.04-1.9x faster
//   1x1 (stride 1 and 2)          im2col 1.3-1.4x faster      oneDNN 1.1-1.3x faster
// A 1x1 convolution is a plain GEMM, as fast as oneDNN's kernels when OpenBLAS runs AVX-512, and
// oneDNN pays for reordering a large input to its blocked layout.
#pragma once

#include <cstdint>

#include "core/ops/ops.h"

namespace tandem {

// Between 8 (above: im2col 1.2x faster, or oneDNN 1.1-1.2x) and 16 (oneDNN 1.4x or 2.1x faster).
inline constexpr int64_t kOnednnMinGroupChannels = 16;

enum class ConvBackend { kAuto, kIm2col, kOnednn };

// Whether the rule sends 1x1 convolutions (>= kOnednnMinGroupChannels) to oneDNN: true unless
// OpenBLAS runs its AVX-512 kernels (openblas_get_corename(), fixed when the library loads).
bool conv2d_onednn_for_1x1();

// "onednn" or "im2col": the backend conv2d(x, weight, bias, opt) would use on this thread now.
const char* conv2d_backend_for(const Tensor& x, const Tensor& weight, const Conv2dOptions& opt);

// Forces conv2d's backend on the calling thread while alive (benchmarks, tests comparing the two
// paths); kAuto restores the rule. Forcing kOnednn on a convolution oneDNN does not run here (f64)
// makes conv2d throw Unimplemented. Nests; not shared between threads.
class ScopedConvBackend {
 public:
  explicit ScopedConvBackend(ConvBackend backend);
  ~ScopedConvBackend();
  ScopedConvBackend(const ScopedConvBackend&) = delete;
  ScopedConvBackend& operator=(const ScopedConvBackend&) = delete;

 private:
  ConvBackend saved_;
};

}  // namespace tandem
