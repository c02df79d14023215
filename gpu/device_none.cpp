// The device layer in a build without CUDA: no devices, and every request
// for device memory is a clear error instead of a crash.
#include "gpu/device.hpp"

namespace chorus::device {

void unavailable(const std::string& what) {
  throw device_error(what
                     + ": this build of Chorus has no CUDA backend (nvcc was not found at "
                       "configure time; reconfigure with -DCHORUS_ENABLE_CUDA=ON)");
}

bool built_with_cuda() { return false; }
int count() { return 0; }
std::string name(int) { unavailable("device name"); }
void* allocate(size_t, int) { unavailable("device allocation"); }
void release(void*, int) noexcept {}
void copy(void*, memory_kind, const void*, memory_kind, size_t) { unavailable("device copy"); }
void zero(void*, size_t, int) { unavailable("device memset"); }
void require(int, const char* what) { unavailable(what); }

} // namespace chorus::device
