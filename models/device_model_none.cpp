// make_device_model in a build without CUDA: a clear error, never a crash.
#include "gpu/device.hpp"
#include "models/model.hpp"

namespace chorus {

std::unique_ptr<model> make_device_model(const std::string& spec, int64_t, int64_t, int) {
  device::unavailable("model '" + spec + "' on a GPU");
}

} // namespace chorus
