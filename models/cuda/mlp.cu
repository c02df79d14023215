// "softmax" and "mlp:H1[,H2...]" on a CUDA device: the twin of models/mlp.cpp.
// The parameter block, its layout and init are the CPU model's (taken from
// it), so a CPU and a GPU replica are interchangeable at any step.
//
// Layer i computes Z_i = W_i A_{i-1} + b_i (W_i out x in, column-major at
// w_offset; A_{i-1} in x n, one column per sample; A_0 the batch), ReLU on
// all but the head. Each product is one cuBLAS SGEMM; bias + ReLU is one
// fused pass. Backward, last layer first, with dZ the head's dlogits:
//   dW_i = dZ_i A_{i-1}^T (SGEMM), db_i = row sums of dZ_i (kernel),
//   dZ_{i-1} = (W_i^T dZ_i) * [A_{i-1} > 0] (SGEMM, then the ReLU mask),
// and no gradient for the data. Workspaces: per layer, activations (out x n)
// and, for hidden layers, dZ (out x n); they grow only.
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "gpu/assert.hpp"
#include "models/cuda/device_model.cuh"
#include "models/cuda/kernels.cuh"

namespace chorus::cuda_models {

namespace {

// evaluate() runs at most this many samples per forward pass, as the CPU.
constexpr int64_t eval_cap = 1024;

// One dense layer: W (out x in, column-major) and b (out) in the flat block.
struct layer {
  int64_t in = 0, out = 0;
  int64_t w_offset = 0, b_offset = 0;
};

// Reads the layers off the CPU model's layout (W1, b1, W2, b2, ...; "W",
// "b" for softmax), so that the two can never disagree.
std::vector<layer> layers_of(const model& cpu, int64_t inputs, int64_t classes) {
  const std::vector<param_tensor> t = cpu.layout();
  CHORUS_ASSERT(!t.empty() && t.size() % 2 == 0, cpu.name() + ": unexpected parameter layout");
  std::vector<layer> out;
  int64_t in = inputs;
  for (size_t i = 0; i < t.size(); i += 2) {
    const param_tensor& w = t[i];
    const param_tensor& b = t[i + 1];
    CHORUS_ASSERT(w.shape.size() == 2 && b.shape.size() == 1 && w.shape[1] == in
                    && b.shape[0] == w.shape[0],
                  cpu.name() + ": unexpected shape of " + w.name + " / " + b.name);
    out.push_back({in, w.shape[0], w.offset, b.offset});
    in = w.shape[0];
  }
  CHORUS_ASSERT(in == classes, cpu.name() + ": head width differs from the class count");
  return out;
}

class mlp_device final : public device_model {
public:
  mlp_device(std::unique_ptr<model> cpu, std::vector<layer> layers, int dev, int64_t inputs,
             int64_t classes)
      : device_model(std::move(cpu), dev, inputs, classes),
        layers_(std::move(layers)),
        act_(layers_.size()),
        delta_(layers_.size()) {}

private:
  int64_t eval_chunk() const override {
    int64_t floats = inputs();  // a gathered sample
    for (const layer& l : layers_)
      floats += l.out;  // its activations
    return chunk_for(floats * int64_t{sizeof(float)} + 12, eval_cap);
  }

  int64_t inputs() const { return layers_.front().in; }

  void reserve(int64_t n, bool backward) override {
    for (size_t i = 0; i < layers_.size(); ++i) {
      grow(act_[i], layers_[i].out * n);
      // The head's dZ is the base's dlogits.
      if (backward && i + 1 < layers_.size())
        grow(delta_[i], layers_[i].out * n);
    }
  }

  const float* forward(const float* w, const float* x, int64_t n) override {
    const float* in = x;
    for (size_t i = 0; i < layers_.size(); ++i) {
      const layer& l = layers_[i];
      float* z = act_[i].data();
      gemm(blas_handle(), false, false, l.out, n, l.in, w + l.w_offset, l.out, in, l.in, z, l.out);
      bias_activation(z, w + l.b_offset, n, l.out, 1, i + 1 < layers_.size(), stream_handle());
      in = z;
    }
    return act_.back().data();
  }

  void backward(const float* w, const float* x, const float* dlogits, int64_t n,
                float* g) override {
    for (size_t i = layers_.size(); i-- > 0;) {
      const layer& l = layers_[i];
      const float* dz = i + 1 == layers_.size() ? dlogits : delta_[i].data();
      const float* a_in = i == 0 ? x : act_[i - 1].data();
      // dW = dZ A_in^T: (out x n) (n x in).
      gemm(blas_handle(), false, true, l.out, l.in, n, dz, l.out, a_in, l.in, g + l.w_offset, l.out);
      row_sums(dz, l.out, n, g + l.b_offset, stream_handle());
      if (i == 0)
        break;  // the data needs no gradient
      // dA_in = W^T dZ: (in x out) (out x n); then the ReLU mask.
      float* dz_in = delta_[i - 1].data();
      gemm(blas_handle(), true, false, l.in, n, l.out, w + l.w_offset, l.out, dz, l.out, dz_in,
           l.in);
      relu_backward(dz_in, a_in, l.in * n, stream_handle());
    }
  }

  std::vector<layer> layers_;
  std::vector<device_array<float>> act_;    // per layer: activations, out x n
  std::vector<device_array<float>> delta_;  // per hidden layer: dLoss/dZ, out x n
};

} // namespace

/// The device "softmax" / "mlp:..." around the CPU model `cpu` (built by
/// make_model, so the spec is already checked).
std::unique_ptr<model> make_device_mlp(std::unique_ptr<model> cpu, int64_t inputs,
                                       int64_t classes, int dev) {
  std::vector<layer> layers = layers_of(*cpu, inputs, classes);
  return std::make_unique<mlp_device>(std::move(cpu), std::move(layers), dev, inputs, classes);
}

} // namespace chorus::cuda_models
