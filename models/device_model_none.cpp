// make_device_model in a build without CUDA: a clear error, never a crash.
#include "gpu/device.hpp"
#include "models/model.hpp"

namespace chorus {

std::unique_ptr<model> make_device_model(const std::string& spec, int64_t, int64_t, int) {
  throw device_error("model '" + spec
                     + "' on a GPU: this build of Chorus has no CUDA backend (nvcc was not "
                       "found at configure time; reconfigure with -DCHORUS_ENABLE_CUDA=ON)");
}

} // namespace chorus
