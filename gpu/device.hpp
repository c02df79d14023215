// The device layer: whether this build has CUDA, which GPUs the process can
// see, the raw memory calls, and the payload buffers on a device
// (make_buffer, to_device: messages/buffer.hpp knows no device and reaches
// device memory only through the memory_ops() table these hand it).
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

/// The calls above as the table a device block keeps (gpu/device.cpp).
const device_memory_ops& memory_ops();

/// `n` uninitialized floats on device `dev` (mutable_buffer::on_device with
/// memory_ops()); throws device_error in a build without CUDA or when there
/// is no such device, also for n == 0.
mutable_buffer make_buffer(size_t n, int dev);

/// `x` itself if it is already on device `dev` (same block), else a copy of
/// it there (buffer::to_device with memory_ops()); throws as make_buffer.
buffer to_device(const buffer& x, int dev);

#ifndef CHORUS_HAVE_CUDA
/// For the *_none.cpp stand-ins of a build without CUDA: throws device_error
/// "WHAT: this build of Chorus has no CUDA backend (...how to get one)".
[[noreturn]] void unavailable(const std::string& what);
#endif

} // namespace device
} // namespace chorus
