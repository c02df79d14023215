// make_device_model: the device versions of the registry's models (see
// models/model.hpp). The CPU model is built first, by make_model, so specs
// are parsed, checked and named in one place; the device model takes its
// name, layout, init and flop count from it.
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>

#include "gpu/device.hpp"
#include "models/cuda/device_model.cuh"
#include "models/model.hpp"

namespace chorus {

namespace cuda_models {
// Factories defined beside their models (mlp.cu, cnn.cu).
std::unique_ptr<model> make_device_mlp(std::unique_ptr<model> cpu, int64_t inputs,
                                       int64_t classes, int dev);
std::unique_ptr<model> make_device_cnn(std::unique_ptr<model> cpu, int64_t inputs,
                                       int64_t classes, int dev);
} // namespace cuda_models

std::unique_ptr<model> make_device_model(const std::string& spec, int64_t num_features,
                                         int64_t num_classes, int dev) {
  device::require(dev, ("model '" + spec + "' on a GPU").c_str());
  // Building binds the thread to `dev`; give the caller its device back.
  cuda_models::scoped_device restore_after(dev);
  const std::string name = spec.substr(0, spec.find(':'));
  if (name == "softmax" || name == "mlp")
    return cuda_models::make_device_mlp(make_model(spec, num_features, num_classes), num_features,
                                        num_classes, dev);
  if (name == "cnn")
    return cuda_models::make_device_cnn(make_model(spec, num_features, num_classes), num_features,
                                        num_classes, dev);
  throw std::invalid_argument("model \"" + spec
                              + "\" has no GPU version; models on a GPU: softmax, "
                                "mlp:H1[,H2...], cnn[:C1,C2]");
}

} // namespace chorus
