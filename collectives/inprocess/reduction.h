// Elementwise reduction of several ranks' buffers, in rank order, for backends that hold every
// rank's data in one address space (in-process; a reference for the others).
//
// The decision: the reduction always runs in the order inputs[0], inputs[1], ... so a result is
// bit-identical whichever rank arrives last. 16-bit floats are reduced in f32 and rounded once.
#pragma once

#include <cstdint>
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

}  // namespace tandem
