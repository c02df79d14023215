// The CUDA backend: the backend interface (gpu/backend.hpp) on one GPU, the
// twin of the Eigen reference (gpu/eigen_backend.cpp), which every kernel
// here is tested against (tests/gpu/cuda_backend_test.cpp).
//
// One backend per worker, each with its own non-blocking stream, so several
// workers share a GPU without serializing on the legacy default stream.
// Every call returns with its work on that stream finished: a block it wrote
// may be handed to another actor, on another stream, at once. The cost is one
// stream synchronization per call (a few microseconds), small beside the
// memory-bound kernels at the sizes that matter (1M floats and up).
//
// Reductions accumulate in double like the Eigen backend: each thread sums
// its grid-stride slice in double, a block reduces in shared memory, and one
// double atomicAdd per block lands in a device scalar that is copied back
// through pinned memory.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "gpu/assert.hpp"
#include "gpu/backend.hpp"
#include "gpu/cuda/check.hpp"

namespace chorus {

namespace {

constexpr int threads = 256;

// Enough blocks to fill an H100 (132 SMs) several times over; grid-stride
// loops cover the rest.
int blocks_for(size_t n) {
  return static_cast<int>(std::min<size_t>((n + threads - 1) / threads, 132 * 8));
}

// Up to this many inputs per weighted_sum launch: the pointers travel as a
// kernel argument (no device-side pointer array to upload).
constexpr int max_inputs = 16;

struct input_set {
  const float* x[max_inputs];
  float c[max_inputs];
  int count;
};

__global__ void axpy_kernel(float a, const float* __restrict__ x, float* __restrict__ y,
                            size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x)
    y[i] += a * x[i];
}

__global__ void scale_kernel(float a, float* __restrict__ y, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x)
    y[i] *= a;
}

// out = (accumulate ? out : 0) + sum_j c_j x_j, then, when `divide` > 0,
// out = base + post * (out / divide) with base optional (mean_axpy) or
// out = out / divide (plain mean). Summing first and dividing once keeps a
// mean of exactly representable values exact, as in the Eigen backend.
__global__ void combine_kernel(input_set in, bool accumulate, bool weighted, float divide,
                               const float* __restrict__ base, float post,
                               float* __restrict__ out, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x) {
    float s = accumulate ? out[i] : 0.0f;
    for (int j = 0; j < in.count; ++j)
      s += weighted ? in.c[j] * in.x[j][i] : in.x[j][i];
    if (divide > 0) {
      s = s / divide;
      if (base != nullptr)
        s = base[i] + post * s;
    }
    out[i] = s;
  }
}

// Block-wide sum of one double per thread; thread 0 adds it to *result.
__device__ void block_sum_into(double v, double* result) {
  __shared__ double partial[threads];
  partial[threadIdx.x] = v;
  __syncthreads();
  for (int stride = threads / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride)
      partial[threadIdx.x] += partial[threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0)
    atomicAdd(result, partial[0]);
}

enum class reduce_op { dot, squared_norm, squared_distance };

template <reduce_op op>
__global__ void reduce_kernel(const float* __restrict__ x, const float* __restrict__ y,
                              size_t n, double* result) {
  double acc = 0;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x) {
    double a = x[i];
    if constexpr (op == reduce_op::dot) {
      acc += a * double(y[i]);
    } else if constexpr (op == reduce_op::squared_norm) {
      acc += a * a;
    } else {
      // The difference in float, as the Eigen backend forms it.
      double d = double(x[i] - y[i]);
      acc += d * d;
    }
  }
  block_sum_into(acc, result);
}

// A float is NaN or Inf exactly when its exponent bits are all ones.
__global__ void non_finite_kernel(const float* __restrict__ x, size_t n, int* found) {
  int bad = 0;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x)
    bad |= (__float_as_uint(x[i]) & 0x7f800000u) == 0x7f800000u;
  if (__syncthreads_or(bad) && threadIdx.x == 0)
    *found = 1;
}

// w <- Prox(w - step_scale * g) for the elastic family: soft-threshold by
// t1, then shrink. With g == nullptr it is the plain prox. l1 = 0 gives the
// l2 prox (shrink only), shrink = 1 the l1 prox: one kernel for all three,
// with the same float operations as the Eigen backend.
__global__ void prox_kernel(const float* __restrict__ g, float step_scale, float t1,
                            float shrink, bool soft, float* __restrict__ w, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x) {
    float v = w[i];
    if (g != nullptr)
      v += step_scale * g[i];
    if (soft) {
      float a = fabsf(v) - t1;
      v = a > 0 ? copysignf(a, v) * shrink : 0.0f;
    } else {
      v *= shrink;
    }
    w[i] = v;
  }
}

class cuda_backend final : public backend {
public:
  explicit cuda_backend(int dev) : dev_(dev) {
    device::require(dev, "the cuda backend");
    try {
      CHORUS_CUDA(cudaSetDevice(dev_));
      CHORUS_CUDA(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
      CHORUS_CUDA(cudaMalloc(&scratch_, sizeof(double) + sizeof(int)));
      CHORUS_CUDA(cudaMallocHost(&pinned_, sizeof(double) + sizeof(int)));
    } catch (...) {
      // The destructor does not run for a half-built object.
      if (pinned_ != nullptr)
        cudaFreeHost(pinned_);
      if (scratch_ != nullptr)
        cudaFree(scratch_);
      if (stream_ != nullptr)
        cudaStreamDestroy(stream_);
      cudaGetLastError();
      throw;
    }
  }

  ~cuda_backend() override {
    // Destructors must not throw: errors at teardown are ignored.
    cudaSetDevice(dev_);
    cudaStreamSynchronize(stream_);
    cudaFree(scratch_);
    cudaFreeHost(pinned_);
    cudaStreamDestroy(stream_);
    cudaGetLastError();
  }

  cuda_backend(const cuda_backend&) = delete;
  cuda_backend& operator=(const cuda_backend&) = delete;

  std::string name() const override { return "cuda"; }
  memory_kind kind() const override { return memory_kind::device; }

  mutable_buffer allocate(size_t n) override { return device::make_buffer(n, dev_); }

  mutable_buffer zeros(size_t n) override {
    auto out = allocate(n);
    enter();
    if (n > 0)
      CHORUS_CUDA(cudaMemsetAsync(out.data(), 0, n * sizeof(float), stream_));
    finish();
    return out;
  }

  buffer adopt(const buffer& x) override { return device::to_device(x, dev_); }

  void axpy(float a, cview x, view y) override {
    require(x), require(y), same_size(x.size, y.size);
    enter();
    if (y.size > 0)
      axpy_kernel<<<blocks_for(y.size), threads, 0, stream_>>>(a, x.data, y.data, y.size);
    finish();
  }

  void scale(float a, view y) override {
    require(y);
    enter();
    if (y.size > 0)
      scale_kernel<<<blocks_for(y.size), threads, 0, stream_>>>(a, y.data, y.size);
    finish();
  }

  void copy(cview x, view y) override {
    require(x), require(y), same_size(x.size, y.size);
    if (x.data == y.data)
      return;  // memcpy onto itself is undefined; Eigen's copy is a no-op
    enter();
    if (y.size > 0)
      CHORUS_CUDA(cudaMemcpyAsync(y.data, x.data, y.size * sizeof(float),
                                  cudaMemcpyDeviceToDevice, stream_));
    finish();
  }

  void weighted_sum(const std::vector<cview>& xs, const std::vector<float>& coeffs,
                    view out) override {
    require(out);
    CHORUS_ASSERT(!xs.empty(), "weighted_sum of no buffers");
    CHORUS_ASSERT(coeffs.empty() || coeffs.size() == xs.size(),
                  "weighted_sum: one coefficient per buffer");
    for (auto& x : xs)
      require(x), same_size(x.size, out.size);
    enter();
    combine(xs, coeffs, nullptr, 0.0f, out);
    finish();
  }

  void mean_axpy(cview base, const std::vector<cview>& xs, float a, view out) override {
    require(base), require(out), same_size(base.size, out.size);
    CHORUS_ASSERT(!xs.empty(), "mean_axpy of no buffers");
    for (auto& x : xs)
      require(x), same_size(x.size, out.size);
    enter();
    combine(xs, {}, base.data, a, out);
    finish();
  }

  double dot(cview x, cview y) override {
    require(x), require(y), same_size(x.size, y.size);
    return reduce<reduce_op::dot>(x, y.data);
  }

  double squared_norm(cview x) override {
    require(x);
    return reduce<reduce_op::squared_norm>(x, nullptr);
  }

  double squared_distance(cview x, cview y) override {
    require(x), require(y), same_size(x.size, y.size);
    return reduce<reduce_op::squared_distance>(x, y.data);
  }

  bool all_finite(cview x) override {
    require(x);
    if (x.size == 0)
      return true;
    enter();
    int* found = reinterpret_cast<int*>(reinterpret_cast<char*>(scratch_) + sizeof(double));
    int* found_host = reinterpret_cast<int*>(reinterpret_cast<char*>(pinned_) + sizeof(double));
    CHORUS_CUDA(cudaMemsetAsync(found, 0, sizeof(int), stream_));
    non_finite_kernel<<<blocks_for(x.size), threads, 0, stream_>>>(x.data, x.size, found);
    CHORUS_CUDA(cudaMemcpyAsync(found_host, found, sizeof(int), cudaMemcpyDeviceToHost, stream_));
    finish();
    return *found_host == 0;
  }

  void prox(const regularizer& r, float eta, view w) override {
    require(w);
    if (r.kind == regularizer::kind_none)
      return;
    enter();
    launch_prox(r, eta, nullptr, w);
    finish();
  }

  void prox_step(const regularizer& r, float eta, cview g, view w) override {
    require(g), require(w), same_size(g.size, w.size);
    enter();
    if (r.kind == regularizer::kind_none) {
      if (w.size > 0)
        axpy_kernel<<<blocks_for(w.size), threads, 0, stream_>>>(-eta, g.data, w.data, w.size);
    } else {
      launch_prox(r, eta, g.data, w);
    }
    finish();
  }

private:
  void require(cview x) const {
    CHORUS_ASSERT(x.kind == memory_kind::device || x.size == 0,
                  "cuda backend given host memory (adopt() it first)");
  }

  static void same_size(size_t a, size_t b) {
    CHORUS_ASSERT(a == b, "size mismatch: " + std::to_string(a) + " vs " + std::to_string(b));
  }

  // Each call may come from a different thread (CAF moves actors between
  // scheduler threads): bind this thread to our device first.
  void enter() const { CHORUS_CUDA(cudaSetDevice(dev_)); }

  void finish() {
    CHORUS_CUDA(cudaGetLastError());  // launch errors
    CHORUS_CUDA(cudaStreamSynchronize(stream_));
  }

  // Streams the inputs max_inputs at a time; the last launch applies the
  // division (plain mean) or the base + a * mean form.
  void combine(const std::vector<cview>& xs, const std::vector<float>& coeffs, const float* base,
               float post, view out) {
    if (out.size == 0)
      return;
    const bool weighted = !coeffs.empty();
    const float divide = weighted ? 0.0f : static_cast<float>(xs.size());
    for (size_t lo = 0; lo < xs.size(); lo += max_inputs) {
      input_set in{};
      in.count = static_cast<int>(std::min<size_t>(max_inputs, xs.size() - lo));
      for (int j = 0; j < in.count; ++j) {
        in.x[j] = xs[lo + j].data;
        in.c[j] = weighted ? coeffs[lo + j] : 1.0f;
      }
      const bool last = lo + max_inputs >= xs.size();
      combine_kernel<<<blocks_for(out.size), threads, 0, stream_>>>(
        in, lo > 0, weighted, last ? divide : 0.0f, base, post, out.data, out.size);
    }
  }

  template <reduce_op op>
  double reduce(cview x, const float* y) {
    if (x.size == 0)
      return 0;
    enter();
    auto* result = static_cast<double*>(scratch_);
    auto* result_host = static_cast<double*>(pinned_);
    CHORUS_CUDA(cudaMemsetAsync(result, 0, sizeof(double), stream_));
    reduce_kernel<op><<<blocks_for(x.size), threads, 0, stream_>>>(x.data, y, x.size, result);
    CHORUS_CUDA(
      cudaMemcpyAsync(result_host, result, sizeof(double), cudaMemcpyDeviceToHost, stream_));
    finish();
    return *result_host;
  }

  void launch_prox(const regularizer& r, float eta, const float* g, view w) {
    CHORUS_ASSERT(r.kind >= regularizer::kind_none && r.kind <= regularizer::kind_elastic,
                  "unknown regularizer kind");
    if (w.size == 0)
      return;
    const bool soft = r.kind == regularizer::kind_l1 || r.kind == regularizer::kind_elastic;
    const float t1 = soft ? eta * r.l1 : 0.0f;
    const float shrink = (r.kind == regularizer::kind_l2 || r.kind == regularizer::kind_elastic)
                           ? 1.0f / (1.0f + eta * r.l2)
                           : 1.0f;
    prox_kernel<<<blocks_for(w.size), threads, 0, stream_>>>(g, -eta, t1, shrink, soft, w.data,
                                                             w.size);
  }

  int dev_;
  cudaStream_t stream_ = nullptr;
  void* scratch_ = nullptr;  // device: one double (reductions) + one int (finite flag)
  void* pinned_ = nullptr;   // host, pinned: where those come back
};

} // namespace

std::unique_ptr<backend> make_cuda_backend(int dev) { return std::make_unique<cuda_backend>(dev); }

} // namespace chorus
