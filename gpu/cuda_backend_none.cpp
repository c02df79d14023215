// make_cuda_backend in a build without CUDA: a clear error, never a crash.
#include "gpu/backend.hpp"
#include "gpu/device.hpp"

namespace chorus {

std::unique_ptr<backend> make_cuda_backend(int) { device::unavailable("the cuda backend"); }

} // namespace chorus
