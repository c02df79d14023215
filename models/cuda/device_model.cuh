// What every device model shares (models/cuda/mlp.cu, models/cuda/cnn.cu):
// the CPU model it mirrors, one CUDA stream and cuBLAS handle, the device
// copy of the dataset, the batch gather, the softmax cross-entropy head and
// the protocol of a call. A subclass supplies only its forward and backward
// passes and the workspace they need.
//
// The protocol (device_model::loss_grad / evaluate):
//   1. bind the calling thread to the model's device (workers move between
//      scheduler threads), check that w and g are memory of that device;
//   2. check the dataset, the indices and the labels on the host, throwing
//      std::invalid_argument with the CPU model's wording, before any work
//      is queued;
//   3. grow the workspaces (grow-only, stream-ordered allocation: nothing is
//      allocated in steady state);
//   4. queue everything on the model's stream: index upload (pinned staging),
//      gather, forward, loss, backward;
//   5. copy the loss back through pinned memory and synchronize the stream:
//      every call returns with its device work finished, so g can be handed
//      to another actor (on another stream) at once.
//
// The dataset is copied to each device once per process and shared by every
// model there (resident_dataset, a cache keyed by the dataset's address, its
// storage and a probe of its values; see device_model.cu).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "gpu/cuda/check.hpp"
#include "models/cuda/kernels.cuh"
#include "models/model.hpp"

namespace chorus::cuda_models {

// -- RAII over the runtime --------------------------------------------------------

/// Makes `dev` current for a scope and restores the caller's device after:
/// for destructors, which may run on any thread (never throws).
class scoped_device {
public:
  explicit scoped_device(int dev) noexcept {
    if (cudaGetDevice(&previous_) != cudaSuccess)
      previous_ = -1;
    cudaSetDevice(dev);
  }
  ~scoped_device() {
    if (previous_ >= 0)
      cudaSetDevice(previous_);
    cudaGetLastError();
  }
  scoped_device(const scoped_device&) = delete;
  scoped_device& operator=(const scoped_device&) = delete;

private:
  int previous_ = -1;
};

/// A non-blocking stream on one device; destruction waits for its work.
class stream {
public:
  explicit stream(int dev);
  ~stream();
  stream(const stream&) = delete;
  stream& operator=(const stream&) = delete;
  cudaStream_t get() const { return s_; }

private:
  int dev_;
  cudaStream_t s_ = nullptr;
};

/// A cuBLAS handle bound to one stream (FP32 math: no TF32 shortcut, the
/// results are compared with the CPU's).
class blas {
public:
  blas(int dev, cudaStream_t s);
  ~blas();
  blas(const blas&) = delete;
  blas& operator=(const blas&) = delete;
  cublasHandle_t get() const { return h_; }

private:
  int dev_;
  cublasHandle_t h_ = nullptr;
};

/// Device memory for `count` Ts that only grows. Growing frees the old
/// block and allocates the new one in stream order on the model's stream
/// (no device-wide synchronization, unlike cudaFree), so it is safe even
/// between kernels queued on that stream; contents are not kept.
template <class T>
class device_array {
public:
  device_array() = default;
  ~device_array() { release(); }
  device_array(const device_array&) = delete;
  device_array& operator=(const device_array&) = delete;
  device_array(device_array&& o) noexcept { swap(o); }
  device_array& operator=(device_array&& o) noexcept {
    if (this != &o) {
      release();
      swap(o);
    }
    return *this;
  }

  /// Room for at least `count` Ts on device `dev`, allocated on stream `s`.
  T* reserve(size_t count, int dev, cudaStream_t s) {
    if (count > capacity_) {
      release();
      void* p = nullptr;
      CHORUS_CUDA(cudaMallocAsync(&p, count * sizeof(T), s));
      data_ = static_cast<T*>(p);
      capacity_ = count;
      dev_ = dev;
      stream_ = s;
    }
    return data_;
  }
  T* data() const { return data_; }

private:
  void release() noexcept {
    if (data_ == nullptr)
      return;
    // Destructors and growth must not throw; at process exit the context
    // may already be gone, which is harmless here.
    scoped_device on(dev_);
    cudaFreeAsync(data_, stream_);
    data_ = nullptr;
    capacity_ = 0;
  }
  void swap(device_array& o) noexcept {
    std::swap(data_, o.data_);
    std::swap(capacity_, o.capacity_);
    std::swap(dev_, o.dev_);
    std::swap(stream_, o.stream_);
  }

  T* data_ = nullptr;
  size_t capacity_ = 0;
  int dev_ = 0;
  cudaStream_t stream_ = nullptr;
};

/// Pinned host memory for `count` Ts that only grows (for asynchronous
/// copies; grown only while the stream is idle, at the start of a call).
template <class T>
class pinned_array {
public:
  pinned_array() = default;
  ~pinned_array() {
    if (data_ != nullptr)
      cudaFreeHost(data_);
    cudaGetLastError();
  }
  pinned_array(const pinned_array&) = delete;
  pinned_array& operator=(const pinned_array&) = delete;

  T* reserve(size_t count) {
    if (count > capacity_) {
      if (data_ != nullptr)
        CHORUS_CUDA(cudaFreeHost(data_));
      data_ = nullptr;
      capacity_ = 0;
      void* p = nullptr;
      CHORUS_CUDA(cudaMallocHost(&p, count * sizeof(T)));
      data_ = static_cast<T*>(p);
      capacity_ = count;
    }
    return data_;
  }
  T* data() const { return data_; }

private:
  T* data_ = nullptr;
  size_t capacity_ = 0;
};

// -- the resident dataset ----------------------------------------------------------

/// A dataset's features (sample-major floats, as on the host) and labels
/// (int32 class indices; -1 where the host label is no class index, which
/// the host-side label check rejects before any kernel reads it) on one
/// device. Shared by every model on that device; freed with the last one.
struct resident_dataset {
  int dev = 0;
  int64_t size = 0, features = 0;
  float* x = nullptr;
  int32_t* y = nullptr;
  resident_dataset() = default;
  resident_dataset(const resident_dataset&) = delete;
  resident_dataset& operator=(const resident_dataset&) = delete;
  ~resident_dataset();
};

/// What identifies a dataset's contents without reading all of them: its
/// address, its storage, its shape, and a hash of a spread of its values
/// (so a dataset freed and another built at the same addresses is told
/// apart in practice). Datasets are immutable once built (data/dataset.hpp).
struct dataset_key {
  const dataset* address = nullptr;
  const float* x = nullptr;
  const float* y = nullptr;
  int64_t size = 0, features = 0;
  uint64_t probe = 0;
  bool operator==(const dataset_key& o) const {
    return address == o.address && x == o.x && y == o.y && size == o.size
           && features == o.features && probe == o.probe;
  }
};

dataset_key key_of(const dataset& d);

/// The process-wide copy of `d` on device `dev`, uploading it on first use
/// (on stream `s`, waited for). Thread-safe.
std::shared_ptr<const resident_dataset> make_resident(const dataset& d, const dataset_key& key,
                                                      int dev, cudaStream_t s);

// -- the base class -----------------------------------------------------------------

/// A model whose w and g live on CUDA device `dev`. Name, layout, init and
/// flop count are the CPU model's (`cpu`), so both start from the same
/// bits; loss_grad and evaluate run on the device.
class device_model : public model {
public:
  std::string name() const final { return cpu_->name(); }
  int64_t num_params() const final { return cpu_->num_params(); }
  std::vector<param_tensor> layout() const final { return cpu_->layout(); }
  void init(float* w, std::mt19937_64& rng) const final { cpu_->init(w, rng); }
  double flops_per_sample() const final { return cpu_->flops_per_sample(); }
  memory_kind memory() const final { return memory_kind::device; }

  double loss_grad(const float* w, const dataset& d, const int64_t* idx, int64_t n,
                   float* g) final;
  eval_result evaluate(const float* w, const dataset& d, const int64_t* idx, int64_t n) final;

protected:
  device_model(std::unique_ptr<model> cpu, int dev, int64_t inputs, int64_t classes);

  /// Most samples evaluate() passes to forward() at once.
  virtual int64_t eval_chunk() const = 0;
  /// Grows the subclass's workspaces for batches of n (and their backward
  /// pass when `backward`). Called before any work of the call is queued.
  virtual void reserve(int64_t n, bool backward) = 0;
  /// Queues the forward pass of n samples x (inputs x n, column-major, i.e.
  /// sample-major) at w; returns the logits (classes x n, column-major).
  virtual const float* forward(const float* w, const float* x, int64_t n) = 0;
  /// Queues the backward pass after forward(w, x, n): from dlogits (classes
  /// x n, dLoss/dlogits) writes the whole gradient into g.
  virtual void backward(const float* w, const float* x, const float* dlogits, int64_t n,
                        float* g) = 0;

  /// Grows a workspace on this model's device and stream.
  template <class T>
  T* grow(device_array<T>& a, int64_t count) {
    return a.reserve(static_cast<size_t>(count), dev_, stream_.get());
  }

  int dev() const { return dev_; }
  cudaStream_t stream_handle() const { return stream_.get(); }
  cublasHandle_t blas_handle() const { return blas_.get(); }
  int64_t classes() const { return classes_; }
  const std::string& spec() const { return spec_; }

private:
  class call_scope;

  void enter() const;
  void check_device_pointer(const void* p, const char* what) const;
  void check_dataset(const dataset& d, const int64_t* idx, int64_t n) const;
  // Checks samples [0, n) (idx[j] when given, else j): indices in range,
  // labels class indices; stages the indices in pinned memory when given.
  void check_batch(const dataset& d, const int64_t* idx, int64_t n);
  const resident_dataset& resident(const dataset& d);
  // Reserves this class's buffers for chunks of m samples out of n.
  void reserve_common(int64_t m, int64_t n, bool indexed, bool backward);
  // Uploads n staged indices (queued on the stream).
  void upload_indices(int64_t n);
  // The inputs and labels of samples [start, start + m): gathered into the
  // batch buffers when indexed, else a window of the resident copy (copied
  // to the batch buffer when the window is not 16-byte aligned: forward()
  // always gets aligned inputs, which cuDNN may require).
  std::pair<const float*, const int32_t*> batch(const resident_dataset& r, bool indexed,
                                                int64_t start, int64_t m);
  loss_sums read_sums();

  // Declared first, destroyed last: everything below frees on this stream.
  int dev_;
  stream stream_;
  blas blas_;
  std::unique_ptr<model> cpu_;
  std::string spec_;
  int64_t inputs_, classes_;

  // The datasets this model used lately (a train and a test set, usually).
  std::vector<std::pair<dataset_key, std::shared_ptr<const resident_dataset>>> datasets_;

  pinned_array<int64_t> idx_host_;
  pinned_array<loss_sums> sums_host_;
  device_array<int64_t> idx_dev_;
  device_array<float> xb_;
  device_array<int32_t> yb_;
  device_array<float> dlogits_;
  device_array<double> sample_loss_;
  device_array<int32_t> sample_hit_;
  device_array<loss_sums> sums_;
};

/// Column-major SGEMM C = op(A) op(B) (alpha 1, beta 0) on handle `h`
/// (cuBLAS's 64-bit-size interface: no int overflow at any batch size).
void gemm(cublasHandle_t h, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
          const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc);

/// Samples per evaluate() chunk: at most `cap`, and few enough that
/// `bytes_per_sample` each fit in the chunk budget (256 MiB).
int64_t chunk_for(int64_t bytes_per_sample, int64_t cap);

} // namespace chorus::cuda_models
