// Differentiable models: loss and gradient on a mini-batch, evaluation.
//
// A model object is a replica's compute, owned by one worker (it keeps
// scratch space, so it is not shared between threads). Parameters live
// outside it in one flat float block whose layout `layout()` describes.
// Every model computes the *mean* loss over the batch and its gradient;
// regularization is not part of the model (the protocol applies r by prox).
#pragma once

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "data/dataset.hpp"
#include "messages/buffer.hpp"

namespace chorus {

/// Loss and accuracy over a set of samples.
struct eval_result {
  double loss = 0;      ///< mean loss
  double accuracy = 0;  ///< fraction correct (classification), 0 otherwise
  int64_t samples = 0;
};

/// One named parameter tensor inside the flat block.
struct param_tensor {
  std::string name;            ///< e.g. "W1"
  std::vector<int64_t> shape;  ///< e.g. {256, 784}; matrices column-major
  int64_t offset = 0;          ///< first float in the flat block
};

class model {
public:
  virtual ~model() = default;
  /// The spec that built it ("mlp:256", "softmax", ...).
  virtual std::string name() const = 0;
  /// Number of floats in the parameter block.
  virtual int64_t num_params() const = 0;
  /// The tensors in the flat block, in order.
  virtual std::vector<param_tensor> layout() const = 0;
  /// Writes initial parameters into w (num_params floats).
  virtual void init(float* w, std::mt19937_64& rng) const = 0;
  /// Mean loss over samples idx[0..n) of d at w; writes the mean gradient
  /// into g (num_params floats). Returns the loss.
  virtual double loss_grad(const float* w, const dataset& d, const int64_t* idx,
                           int64_t n, float* g) = 0;
  /// Mean loss and accuracy over samples idx[0..n) (all of d when idx is
  /// null: then n must be d.size()).
  virtual eval_result evaluate(const float* w, const dataset& d,
                               const int64_t* idx, int64_t n) = 0;
  /// Optional: gathers samples idx[0..n) of d into the model's own batch
  /// memory now, so that the next loss_grad or evaluate on exactly these
  /// samples (same dataset, same indices) skips the gather. A worker calls
  /// it right after it replied, while its requester combines. Any other
  /// batch in between drops what was staged. Never throws (a bad index is
  /// reported by the loss_grad that reads it). Default: nothing.
  virtual void prefetch(const dataset& /*d*/, const int64_t* /*idx*/, int64_t /*n*/) {}
  /// Floating point operations of one loss_grad per sample (for throughput
  /// bounds in benchmarks).
  virtual double flops_per_sample() const = 0;
  /// Where the w and g that loss_grad and evaluate take live. A device model
  /// (make_device_model) reads w and writes g in memory of its CUDA device;
  /// init always writes host memory (the same values as the CPU model, so a
  /// CPU and a GPU run start from the same point).
  virtual memory_kind memory() const { return memory_kind::host; }
};

/// Builds a model from its spec for inputs of `num_features` and
/// `num_classes` (0 = regression):
///   "linear"           least squares 0.5 (<w,x> - y)^2, w in R^d (regression)
///   "logistic"         binary logistic log(1 + exp(-s <w,x>)), s = 2y - 1, w in R^d
///   "softmax"          multinomial logistic regression, W[C x d], b[C]
///   "mlp:H1[,H2...]"   ReLU hidden layers, softmax cross-entropy head
///   "cnn[:C1,C2]"      conv3x3(C1)-pool-conv3x3(C2)-pool-dense on square images (CPU: im2col)
/// Throws std::invalid_argument listing the valid specs, or naming the
/// mismatch (e.g. "logistic" needs 2 classes).
std::unique_ptr<model> make_model(const std::string& spec, int64_t num_features,
                                  int64_t num_classes);

/// The same models on CUDA device `dev`, for "softmax", "mlp:H1[,H2...]"
/// and "cnn[:C1,C2]": identical parameter layout, init and loss as
/// make_model's (cuBLAS GEMMs and fused kernels; cuDNN for the CNN), with w
/// and g in device memory. Throws device_error in a build without CUDA or
/// when device `dev` does not exist, std::invalid_argument for a spec with
/// no device version.
std::unique_ptr<model> make_device_model(const std::string& spec, int64_t num_features,
                                         int64_t num_classes, int dev);

/// The model specs make_model accepts, with descriptions.
std::vector<std::pair<std::string, std::string>> model_names();

} // namespace chorus
