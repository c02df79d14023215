// Error checks for CUDA runtime, cuBLAS, cuDNN and NCCL calls: each failure
// becomes a chorus::device_error naming the call, the file and line, and the
// library's own message. Only for .cu files (includes the CUDA headers).
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "gpu/device.hpp"

namespace chorus::detail {

[[noreturn]] inline void device_fail(const char* call, const char* file, int line,
                                     const std::string& why) {
  throw device_error(std::string(call) + " failed at " + file + ":" + std::to_string(line)
                     + ": " + why);
}

} // namespace chorus::detail

#define CHORUS_CUDA(call)                                                                    \
  do {                                                                                       \
    cudaError_t chorus_status_ = (call);                                                     \
    if (chorus_status_ != cudaSuccess)                                                       \
      ::chorus::detail::device_fail(#call, __FILE__, __LINE__,                               \
                                    cudaGetErrorString(chorus_status_));                     \
  } while (false)

#define CHORUS_CUBLAS(call)                                                                  \
  do {                                                                                       \
    cublasStatus_t chorus_status_ = (call);                                                  \
    if (chorus_status_ != CUBLAS_STATUS_SUCCESS)                                             \
      ::chorus::detail::device_fail(#call, __FILE__, __LINE__,                               \
                                    "cublas status " + std::to_string(int(chorus_status_))); \
  } while (false)

#define CHORUS_CUDNN(call)                                                                   \
  do {                                                                                       \
    cudnnStatus_t chorus_status_ = (call);                                                   \
    if (chorus_status_ != CUDNN_STATUS_SUCCESS)                                              \
      ::chorus::detail::device_fail(#call, __FILE__, __LINE__,                               \
                                    cudnnGetErrorString(chorus_status_));                    \
  } while (false)

#define CHORUS_NCCL(call)                                                                    \
  do {                                                                                       \
    ncclResult_t chorus_status_ = (call);                                                    \
    if (chorus_status_ != ncclSuccess)                                                       \
      ::chorus::detail::device_fail(#call, __FILE__, __LINE__,                               \
                                    ncclGetErrorString(chorus_status_));                     \
  } while (false)
