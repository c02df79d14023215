// The device layer on the CUDA runtime (see gpu/device.hpp).
#include <cuda_runtime.h>

#include <new>

#include "gpu/cuda/check.hpp"
#include "gpu/device.hpp"

namespace chorus::device {

bool built_with_cuda() { return true; }

int count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // no driver or no device: not sticky, clear it
    return 0;
  }
  return n;
}

void require(int dev, const char* what) {
  int n = count();
  if (dev < 0 || dev >= n)
    throw device_error(std::string(what) + ": no CUDA device " + std::to_string(dev) + " ("
                       + std::to_string(n) + " visible)");
}

std::string name(int dev) {
  require(dev, "device name");
  cudaDeviceProp prop{};
  CHORUS_CUDA(cudaGetDeviceProperties(&prop, dev));
  return prop.name;
}

void* allocate(size_t bytes, int dev) {
  require(dev, "device allocation");
  CHORUS_CUDA(cudaSetDevice(dev));
  void* p = nullptr;
  cudaError_t status = cudaMallocAsync(&p, bytes, cudaStreamPerThread);
  if (status == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    throw std::bad_alloc();
  }
  CHORUS_CUDA(status);
  // The block may be used on any stream next: make the allocation visible.
  CHORUS_CUDA(cudaStreamSynchronize(cudaStreamPerThread));
  return p;
}

void release(void* p, int dev) noexcept {
  if (p == nullptr)
    return;
  // Freeing must not throw (called from destructors); a failure here means
  // the context is already gone at process exit.
  // Stream-ordered free: cudaFree would wait for the whole device, stalling
  // every other worker sharing it. The block's users have finished (every
  // backend call returns with its work done).
  if (cudaSetDevice(dev) == cudaSuccess)
    cudaFreeAsync(p, cudaStreamPerThread);
  cudaGetLastError();
}

void copy(void* dst, memory_kind, const void* src, memory_kind, size_t bytes) {
  if (bytes == 0)
    return;
  // Unified addressing tells the runtime where each pointer lives, which
  // also covers a copy between two devices.
  CHORUS_CUDA(cudaMemcpy(dst, src, bytes, cudaMemcpyDefault));
}

void zero(void* p, size_t bytes, int dev) {
  if (bytes == 0)
    return;
  CHORUS_CUDA(cudaSetDevice(dev));
  CHORUS_CUDA(cudaMemset(p, 0, bytes));
}

} // namespace chorus::device
