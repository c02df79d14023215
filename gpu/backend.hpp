// The compute backend: the vector operations protocols need, behind one
// interface so a worker or an aggregator never cares where its floats live.
// The Eigen backend (eigen_backend.cpp) is the reference every other backend
// is tested against; the CUDA backend (gpu/cuda/cuda_backend.cu) is its twin
// on a GPU. Operations take views, never std::vector copies, so a device
// backend keeps its data resident.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "messages/regularizer.hpp"
#include "messages/buffer.hpp"

namespace chorus {

/// Vector operations over float blocks. Sizes must match (CHORUS_ASSERT).
class backend {
public:
  virtual ~backend() = default;
  /// Short name ("eigen", "cuda").
  virtual std::string name() const = 0;
  /// Where this backend's blocks live.
  virtual memory_kind kind() const = 0;
  /// A block of n floats set to zero, in this backend's memory.
  virtual mutable_buffer zeros(size_t n) = 0;
  /// A block of n uninitialized floats, in this backend's memory.
  virtual mutable_buffer allocate(size_t n) = 0;
  /// `x` in this backend's memory: the same block if it is already there
  /// (no copy), else a copy.
  virtual buffer adopt(const buffer& x) = 0;
  /// y <- y + a x
  virtual void axpy(float a, cview x, view y) = 0;
  /// y <- a y
  virtual void scale(float a, view y) = 0;
  /// y <- x
  virtual void copy(cview x, view y) = 0;
  /// out <- sum_i coeff_i xs_i (coeffs empty: plain mean). One pass over
  /// memory: the aggregation hot path of every server.
  virtual void weighted_sum(const std::vector<cview>& xs,
                            const std::vector<float>& coeffs, view out) = 0;
  /// out <- (1/k) sum_i xs_i
  void mean(const std::vector<cview>& xs, view out) { weighted_sum(xs, {}, out); }
  /// out <- base + a * (1/k) sum_i xs_i, in one pass: a server's gradient
  /// step on the mean of k gradients (the sum is divided by k before it is
  /// scaled, so a mean of exactly representable values stays exact).
  virtual void mean_axpy(cview base, const std::vector<cview>& xs, float a, view out) = 0;
  /// <x, y> (accumulated in double)
  virtual double dot(cview x, cview y) = 0;
  /// ||x||_2^2 (accumulated in double)
  virtual double squared_norm(cview x) = 0;
  /// ||x - y||_2^2
  virtual double squared_distance(cview x, cview y) = 0;
  /// True if every element is finite.
  virtual bool all_finite(cview x) = 0;
  /// w <- Prox_{r, eta}(w)
  virtual void prox(const regularizer& r, float eta, view w) = 0;
  /// w <- Prox_{r, eta}(w - eta g): one proximal gradient step.
  virtual void prox_step(const regularizer& r, float eta, cview g, view w) = 0;
};

/// The Eigen (CPU) reference backend.
std::unique_ptr<backend> make_eigen_backend();

/// The CUDA backend on device `dev`, with a stream of its own (one backend
/// per worker: several workers share a GPU through their own streams).
/// Every call returns with its device work finished, so a buffer it wrote
/// can be handed to another actor at once. Throws device_error in a build
/// without CUDA or when device `dev` does not exist.
std::unique_ptr<backend> make_cuda_backend(int dev);

/// "eigen" -> make_eigen_backend(), "cuda" -> make_cuda_backend(dev);
/// std::invalid_argument naming the valid ones otherwise.
std::unique_ptr<backend> make_backend(const std::string& name, int dev = 0);

} // namespace chorus
