// Every CUDA runtime, cuBLAS and cuDNN call goes through one of these: a failure throws with the
// call site (file:line), the call and the vendor's error string (llm.c's rule).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "core/base/error.h"

namespace tandem::cuda {

[[noreturn]] void throw_cuda_error(cudaError_t err, const char* call, const char* file, int line);
[[noreturn]] void throw_cublas_error(cublasStatus_t st, const char* call, const char* file,
                                     int line);

}  // namespace tandem::cuda

#define TANDEM_CUDA_CHECK(call)                                                 \
  do {                                                                          \
    cudaError_t tandem_err_ = (call);                                           \
    if (tandem_err_ != cudaSuccess)                                             \
      ::tandem::cuda::throw_cuda_error(tandem_err_, #call, __FILE__, __LINE__); \
  } while (0)

#define TANDEM_CUBLAS_CHECK(call)                                                \
  do {                                                                           \
    cublasStatus_t tandem_st_ = (call);                                          \
    if (tandem_st_ != CUBLAS_STATUS_SUCCESS)                                     \
      ::tandem::cuda::throw_cublas_error(tandem_st_, #call, __FILE__, __LINE__); \
  } while (0)
