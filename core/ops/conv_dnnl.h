// conv2d's oneDNN backend (f32, CPU): forward, input gradient, weight and bias gradients through
// oneDNN's convolution primitives, on tandem's plain NCHW / OIHW (group-major) tensors. conv.cc
// decides which convolutions come here (conv.h); this file only runs them.
//
// The one decision to know: a convolution's primitives are built once per problem -- shapes,
// options, bias, and the thread count they are split for -- and kept in a small LRU cache, so a
// training step pays for no JIT compilation and no primitive-descriptor search after the first.
//
// Thread safety: every function may be called from any thread, concurrently (the cache is guarded
// by a mutex; primitives are executed with a per-call scratchpad on a per-thread stream). Work runs
// synchronously on tandem's OpenMP team: libdnnl 2.6 is built for OpenMP (libgomp), the runtime
// tandem and OpenBLAS use. Called inside an active OpenMP parallel region (one replica per thread)
// a convolution runs single-threaded on the calling thread. oneDNN synchronises its team several
// times per step: on cores shared with other processes, libgomp's default spin-waiting turns that
// into whole scheduler ticks per barrier (measured: 4-9x slower at 2 threads on a loaded 2-core
// machine); OMP_WAIT_POLICY=passive avoids it there.
#pragma once

#include <cstdint>
#include <string>

#include "core/ops/im2col.h"

namespace tandem::onednn {

// One convolution: the geometry of a sample (all channels), the batch, the output channels and
// groups (weights are (out_channels, geo.channels / groups, kernel_h, kernel_w)), and whether the
// forward adds a bias.
struct ConvProblem {
  ConvGeometry geo;
  int64_t batch = 0, out_channels = 0, groups = 1;
  bool bias = false;
};

// All pointers are contiguous f32 NCHW / OIHW / (O) buffers, sized for the problem.
// out = conv(x, weight) (+ bias when problem.bias).
void conv_forward(const ConvProblem& p, const float* x, const float* weight, const float* bias,
                  float* out);
// grad_x = the input gradient for grad_out (overwritten, not accumulated).
void conv_backward_data(const ConvProblem& p, const float* weight, const float* grad_out,
                        float* grad_x);
// grad_weight and grad_bias (either may be null: not wanted; grad_bias must be null when
// !problem.bias) for grad_out; overwritten, not accumulated.
void conv_backward_weights(const ConvProblem& p, const float* x, const float* grad_out,
                           float* grad_weight, float* grad_bias);

// The number of cached problems, and the name of the implementation oneDNN picked for a
// problem's forward (e.g. "jit:avx512_core"); for tests and benchmarks.
int64_t cached_problems();
std::string forward_implementation(const ConvProblem& p);

}  // namespace tandem::onednn
