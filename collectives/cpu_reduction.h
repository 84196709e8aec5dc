// The one CPU reduction library of every host backend: the in-process group and shm reduce all
// ranks' buffers at once (reduce_buffers), gloo and MPI's custom ops combine two buffers at a time
// (pair_reduce_fn), and every kAvg ends in divide_in_place.
//
// The decision: max propagates NaN on every backend and dtype (a diverged rank is visible on every
// rank), and an N-way reduction runs in the order inputs[0], inputs[1], ... so a result is
// bit-identical whichever rank arrives last. 16-bit floats are reduced in f32: rounded once by
// reduce_buffers, once per pair by pair_reduce_fn.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "collectives/communicator.h"

namespace tandem {

// Throws TypeError unless `op` can reduce `dtype`: f32, f64, bf16, f16 for every op; i32 and i64
// for sum and max. `what` names the call in the message ("all_reduce #3").
void check_reducible(DType dtype, ReduceOp op, const std::string& what);

// outputs[k][i] = op over r of inputs[r][i], for i < n; kAvg divides the sum by inputs.size().
// An output may alias an input (the reduction reads a block of every input before writing it).
void reduce_buffers(DType dtype, ReduceOp op, const std::vector<const void*>& inputs,
                    const std::vector<void*>& outputs, int64_t n);

// out[i] = a[i] op b[i] for i < n; kAvg gives the sum (the caller divides once, at the end). out
// may be a or b. The signature of gloo's reduction functions; an MPI user op calls it as
// fn(inout, in, inout, n). Null for a dtype check_reducible refuses.
using PairReduceFn = void (*)(void* out, const void* a, const void* b, size_t n);
PairReduceFn pair_reduce_fn(DType dtype, ReduceOp op);

// x[i] /= divisor for i < n, rounded once in dtype (16-bit floats through f32): kAvg's last step.
// Floating dtypes only.
void divide_in_place(DType dtype, void* data, int64_t n, int divisor);

}  // namespace tandem
