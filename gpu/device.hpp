// The device layer: whether this build has CUDA, which GPUs the process can
// see, and the raw memory calls the payload buffer needs for device blocks.
//
// This header has no CUDA in it, so host code (the buffer, the worker, the
// runner) can ask "is there a GPU?" in every build. In a build without CUDA
// (gpu/device_none.cpp) count() is 0 and every allocation throws; with CUDA
// (gpu/cuda/device.cu) the calls go to the CUDA runtime.
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>

#include "messages/buffer.hpp"

namespace chorus {

/// A CUDA runtime, cuBLAS, cuDNN or NCCL call failed; the message names it.
struct device_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

namespace device {

/// True if this build compiled the CUDA backend (nvcc was found).
bool built_with_cuda();

/// Number of CUDA devices this process can use: 0 without CUDA, without a
/// driver, or without a GPU. Never throws.
int count();

/// "NVIDIA H100 80GB HBM3" for device `dev`; throws device_error.
std::string name(int dev);

/// Allocates `bytes` on device `dev` (stream-ordered, from the driver's
/// pool). Throws device_error (or bad_alloc when out of memory).
void* allocate(size_t bytes, int dev);

/// Frees what allocate returned.
void release(void* p, int dev) noexcept;

/// Copies `bytes` between host and device memory in either direction and
/// waits for the copy (pageable host memory: the transfers that remain on
/// a hot path use the backend's pinned staging instead).
void copy(void* dst, memory_kind dst_kind, const void* src, memory_kind src_kind, size_t bytes);

/// Sets every byte of a device range to zero and waits.
void zero(void* p, size_t bytes, int dev);

/// Throws device_error naming `what` if no device `dev` exists.
void require(int dev, const char* what);

#ifndef CHORUS_HAVE_CUDA
/// For the *_none.cpp stand-ins of a build without CUDA: throws device_error
/// "WHAT: this build of Chorus has no CUDA backend (...how to get one)".
[[noreturn]] void unavailable(const std::string& what);
#endif

} // namespace device
} // namespace chorus
