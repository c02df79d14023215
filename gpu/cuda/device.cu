// The device layer on the CUDA runtime (see gpu/device.hpp).
#include <cuda_runtime.h>

#include <mutex>
#include <new>
#include <vector>

#include "gpu/cuda/check.hpp"
#include "gpu/device.hpp"

namespace chorus::device {

namespace {

// Restores the calling thread's current device on scope exit: allocate and
// release run on whichever thread holds the buffer, and must not move that
// thread's later CUDA calls to another GPU.
class current_device_guard {
public:
  explicit current_device_guard(int dev) {
    if (cudaGetDevice(&prev_) != cudaSuccess)
      prev_ = -1;
    ok_ = cudaSetDevice(dev) == cudaSuccess;
  }
  ~current_device_guard() {
    if (prev_ >= 0)
      cudaSetDevice(prev_);
  }
  bool ok() const { return ok_; }
  current_device_guard(const current_device_guard&) = delete;
  current_device_guard& operator=(const current_device_guard&) = delete;

private:
  int prev_ = -1;
  bool ok_ = false;
};

// Once per device: keep freed pool memory in the pool (the default release
// threshold of 0 hands it back to the driver at every synchronization), and
// let every peer GPU that can reach this one access its pool, since
// cudaDeviceEnablePeerAccess does not cover stream-ordered allocations.
void prepare_pool(int dev) {
  static std::mutex mutex;
  static std::vector<bool> done;
  std::lock_guard<std::mutex> lock(mutex);
  if (static_cast<size_t>(dev) < done.size() && done[dev])
    return;
  if (done.size() <= static_cast<size_t>(dev))
    done.resize(dev + 1, false);
  cudaMemPool_t pool;
  CHORUS_CUDA(cudaDeviceGetDefaultMemPool(&pool, dev));
  uint64_t keep = UINT64_MAX;
  CHORUS_CUDA(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep));
  int n = count();
  for (int peer = 0; peer < n; ++peer) {
    int can = 0;
    if (peer == dev || cudaDeviceCanAccessPeer(&can, peer, dev) != cudaSuccess || !can)
      continue;
    cudaMemAccessDesc access{};
    access.location.type = cudaMemLocationTypeDevice;
    access.location.id = peer;
    access.flags = cudaMemAccessFlagsProtReadWrite;
    CHORUS_CUDA(cudaMemPoolSetAccess(pool, &access, 1));
  }
  cudaGetLastError();
  done[dev] = true;
}

} // namespace

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
  prepare_pool(dev);
  current_device_guard on(dev);
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
  current_device_guard on(dev);
  if (on.ok())
    cudaFreeAsync(p, cudaStreamPerThread);
  cudaGetLastError();
}

void copy(void* dst, memory_kind, const void* src, memory_kind, size_t bytes) {
  if (bytes == 0)
    return;
  // Unified addressing tells the runtime where each pointer lives, which
  // also covers a copy between two devices. Plain cudaMemcpy may return
  // before a host-to-device or device-to-device copy has landed, and the
  // backends' non-blocking streams are not ordered after it: copy on this
  // thread's stream and wait, so the data is there for any stream next.
  CHORUS_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, cudaStreamPerThread));
  CHORUS_CUDA(cudaStreamSynchronize(cudaStreamPerThread));
}

void zero(void* p, size_t bytes, int dev) {
  if (bytes == 0)
    return;
  current_device_guard on(dev);
  CHORUS_CUDA(cudaSetDevice(dev));
  CHORUS_CUDA(cudaMemsetAsync(p, 0, bytes, cudaStreamPerThread));
  CHORUS_CUDA(cudaStreamSynchronize(cudaStreamPerThread));
}

} // namespace chorus::device
