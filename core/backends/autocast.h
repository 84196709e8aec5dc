// Mixed precision's autocast (training.precision bf16 / fp16), as torch.autocast does it for the
// ops that dominate a step: while a low dtype is set, matmul, linear and conv2d on f32 CUDA
// tensors cast their inputs to it, run cuBLAS/cuDNN in it (accumulating in f32), and return f32.
// Everything else -- activations, batch norm, reductions, losses, the optimizer and the master
// weights -- stays f32. The casts are differentiable, so gradients reach the f32 weights.
//
// Process-wide (the mirrored strategy's replica threads share it); set by the trainer. CPU
// tensors are never autocast.
#pragma once

#include <initializer_list>

#include "core/tensor/tensor.h"

namespace tandem {

DType autocast_dtype();             // kF32: off
void set_autocast_dtype(DType dt);  // kBF16, kF16, or kF32 to turn it off

// True when autocast is on and every defined tensor is an f32 CUDA tensor.
bool autocast_applies(std::initializer_list<const Tensor*> tensors);

}  // namespace tandem
