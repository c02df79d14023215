// The device models' shared machinery (see models/cuda/device_model.cuh):
// stream and cuBLAS RAII, the process-wide cache of resident datasets, and
// the loss_grad / evaluate protocol around a subclass's forward and backward.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "gpu/cuda/check.hpp"
#include "messages/checked.hpp"
#include "models/cuda/device_model.cuh"

namespace chorus::cuda_models {

// -- stream and cuBLAS -------------------------------------------------------------

stream::stream(int dev) : dev_(dev) {
  CHORUS_CUDA(cudaSetDevice(dev));
  // Non-blocking: never serialized with the legacy default stream, which
  // other code in the process (or another worker) may use.
  CHORUS_CUDA(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking));
}

stream::~stream() {
  scoped_device on(dev_);
  cudaStreamSynchronize(s_);
  cudaStreamDestroy(s_);
}

blas::blas(int dev, cudaStream_t s) : dev_(dev) {
  CHORUS_CUDA(cudaSetDevice(dev));
  CHORUS_CUBLAS(cublasCreate(&h_));
  try {
    CHORUS_CUBLAS(cublasSetStream(h_, s));
    // Default math runs FP32 GEMMs in FP32 (TF32 only on request), so the
    // results stay within float rounding of the Eigen reference.
    CHORUS_CUBLAS(cublasSetMathMode(h_, CUBLAS_DEFAULT_MATH));
  } catch (...) {
    cublasDestroy(h_);
    throw;
  }
}

blas::~blas() {
  scoped_device on(dev_);
  cublasDestroy(h_);
}

void gemm(cublasHandle_t h, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
          const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc) {
  const float one = 1.0f, zero = 0.0f;
  CHORUS_CUBLAS(cublasSgemm_64(h, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                               trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, m, n, k, &one, a, lda, b, ldb,
                               &zero, c, ldc));
}

int64_t chunk_for(int64_t bytes_per_sample, int64_t cap) {
  constexpr int64_t budget = int64_t{256} << 20;
  return std::max<int64_t>(1, std::min(cap, budget / std::max<int64_t>(1, bytes_per_sample)));
}

// -- resident datasets ------------------------------------------------------------

resident_dataset::~resident_dataset() {
  scoped_device on(dev);
  // Every model that read these finished its work before returning (and
  // cudaFree waits for the device anyway).
  cudaFree(x);
  cudaFree(y);
}

dataset_key key_of(const dataset& d) {
  dataset_key k;
  k.address = &d;
  k.x = d.x.data();
  k.y = d.y.data();
  k.size = d.size();
  k.features = d.num_features;
  // FNV-1a over the bits of up to 16 values of x and of y, spread evenly and
  // including the first and last: O(1) per call (32 reads), and a dataset
  // rebuilt at the same addresses with other values gets another key.
  uint64_t h = 14695981039346656037ull;
  auto mix = [&h](const float* p, size_t count) {
    const size_t probes = std::min<size_t>(count, 16);
    for (size_t i = 0; i < probes; ++i) {
      const size_t at = probes == count ? i : i * (count - 1) / (probes - 1);
      uint32_t bits;
      std::memcpy(&bits, p + at, sizeof bits);
      h = (h ^ bits) * 1099511628211ull;
    }
  };
  mix(d.x.data(), d.x.size());
  mix(d.y.data(), d.y.size());
  k.probe = h;
  return k;
}

namespace {

// The process-wide cache: weak references, so a device copy lives exactly
// as long as some model on that device holds it.
struct cache_entry {
  dataset_key key;
  int dev;
  std::weak_ptr<const resident_dataset> data;
};

std::mutex cache_mutex;
std::vector<cache_entry> cache;

} // namespace

std::shared_ptr<const resident_dataset> make_resident(const dataset& d, const dataset_key& key,
                                                      int dev, cudaStream_t s) {
  std::lock_guard<std::mutex> lock(cache_mutex);
  cache.erase(std::remove_if(cache.begin(), cache.end(),
                             [](const cache_entry& e) { return e.data.expired(); }),
              cache.end());
  for (const cache_entry& e : cache)
    if (e.dev == dev && e.key == key)
      if (auto held = e.data.lock())
        return held;

  // First use on this device: upload under the lock, so that several
  // workers starting together copy the dataset once.
  auto r = std::make_shared<resident_dataset>();
  r->dev = dev;
  r->size = d.size();
  r->features = d.num_features;
  // Labels become int32 class indices; anything else becomes -1, which the
  // per-call host check rejects before a kernel could read it.
  std::vector<int32_t> labels(d.y.size());
  for (size_t i = 0; i < labels.size(); ++i) {
    const float v = d.y[i];
    labels[i] = v >= 0.0f && v < 2147483648.0f && v == std::floor(v) ? static_cast<int32_t>(v) : -1;
  }
  CHORUS_CUDA(cudaSetDevice(dev));
  if (!d.x.empty()) {
    CHORUS_CUDA(cudaMalloc(&r->x, d.x.size() * sizeof(float)));
    CHORUS_CUDA(cudaMemcpyAsync(r->x, d.x.data(), d.x.size() * sizeof(float),
                                cudaMemcpyHostToDevice, s));
  }
  if (!labels.empty()) {
    CHORUS_CUDA(cudaMalloc(&r->y, labels.size() * sizeof(int32_t)));
    CHORUS_CUDA(cudaMemcpyAsync(r->y, labels.data(), labels.size() * sizeof(int32_t),
                                cudaMemcpyHostToDevice, s));
  }
  // From pageable memory the copy may still be in flight when the call
  // returns: wait, then every stream of the process may read the copy.
  CHORUS_CUDA(cudaStreamSynchronize(s));
  cache.push_back({key, dev, r});
  return r;
}

// -- the protocol ------------------------------------------------------------------

// Drains the stream when a call leaves by an exception, so no queued copy
// or kernel still uses the staging buffers or workspaces the next call
// reuses (the normal path synchronizes in read_sums).
class device_model::call_scope {
public:
  explicit call_scope(cudaStream_t s) : s_(s), exceptions_(std::uncaught_exceptions()) {}
  ~call_scope() {
    if (std::uncaught_exceptions() > exceptions_) {
      cudaStreamSynchronize(s_);
      cudaGetLastError();
    }
  }
  call_scope(const call_scope&) = delete;
  call_scope& operator=(const call_scope&) = delete;

private:
  cudaStream_t s_;
  int exceptions_;
};

// Keeps this many datasets resident per model (a training set, a test set,
// and a spare); the least recently used beyond is dropped.
constexpr size_t datasets_per_model = 4;

device_model::device_model(std::unique_ptr<model> cpu, int dev, int64_t inputs, int64_t classes)
    : dev_(dev),
      stream_(dev),
      blas_(dev, stream_.get()),
      cpu_(std::move(cpu)),
      spec_(cpu_->name()),
      inputs_(inputs),
      classes_(classes) {
  sums_host_.reserve(1);
  grow(sums_, 1);
  CHORUS_CUDA(cudaStreamSynchronize(stream_.get()));
}

void device_model::enter() const {
  // CAF moves an actor between scheduler threads: bind this thread first.
  CHORUS_CUDA(cudaSetDevice(dev_));
}

void device_model::check_device_pointer(const void* p, const char* what) const {
  auto fail = [&](const std::string& why) {
    return std::invalid_argument(spec_ + " on CUDA device " + std::to_string(dev_) + ": " + what
                                 + " " + why
                                 + " (a device model reads w and writes g in memory of its "
                                   "device; see model::memory())");
  };
  if (p == nullptr)
    throw fail("is null");
  cudaPointerAttributes a{};
  CHORUS_CUDA(cudaPointerGetAttributes(&a, p));
  if (a.type == cudaMemoryTypeManaged)
    return;
  if (a.type != cudaMemoryTypeDevice)
    throw fail("is host memory");
  if (a.device != dev_)
    throw fail("is memory of device " + std::to_string(a.device));
}

void device_model::check_dataset(const dataset& d, const int64_t* idx, int64_t n) const {
  if (d.is_sparse())
    throw std::invalid_argument(spec_ + ": dataset '" + d.name
                                + "' is stored sparse (LIBSVM) and the CUDA models take dense"
                                + " data only; use --backend eigen");
  if (d.num_features != inputs_)
    throw std::invalid_argument(spec_ + ": model has " + std::to_string(inputs_)
                                + " inputs, dataset '" + d.name + "' has "
                                + std::to_string(d.num_features) + " features");
  if (checked_mul(d.size(), d.num_features) != static_cast<int64_t>(d.x.size()))
    throw std::invalid_argument(spec_ + ": dataset '" + d.name
                                + "' has features for a different number of samples than labels");
  if (!idx && n > d.size())
    throw std::invalid_argument(spec_ + ": " + std::to_string(n) + " samples asked of dataset '"
                                + d.name + "' with " + std::to_string(d.size()));
}

void device_model::check_batch(const dataset& d, const int64_t* idx, int64_t n) {
  int64_t* staged = idx ? idx_host_.reserve(static_cast<size_t>(n)) : nullptr;
  const int64_t size = d.size();
  for (int64_t j = 0; j < n; ++j) {
    const int64_t s = idx ? idx[j] : j;
    if (s < 0 || s >= size)
      throw std::invalid_argument(spec_ + ": sample index " + std::to_string(s)
                                  + " outside dataset '" + d.name + "' of " + std::to_string(size));
    const float y = d.y[static_cast<size_t>(s)];
    // Written so that NaN fails too; a float label must be an exact index.
    if (!(y >= 0.0f && y < static_cast<float>(classes_) && y == std::floor(y)))
      throw std::invalid_argument(spec_ + ": label " + std::to_string(y) + " of dataset '" + d.name
                                  + "' is not a class in [0, " + std::to_string(classes_) + ")");
    if (staged)
      staged[j] = s;
  }
}

const resident_dataset& device_model::resident(const dataset& d) {
  const dataset_key key = key_of(d);
  auto hit = std::find_if(datasets_.begin(), datasets_.end(),
                          [&](const auto& e) { return e.first == key; });
  if (hit != datasets_.end()) {
    std::rotate(datasets_.begin(), hit, hit + 1);  // most recent first
  } else {
    datasets_.insert(datasets_.begin(), {key, make_resident(d, key, dev_, stream_.get())});
    if (datasets_.size() > datasets_per_model)
      datasets_.pop_back();
  }
  return *datasets_.front().second;
}

void device_model::reserve_common(int64_t m, int64_t n, bool indexed, bool backward) {
  const bool aligned = (inputs_ * sizeof(float)) % 16 == 0;
  if (indexed)
    grow(idx_dev_, n);
  if (indexed || !aligned) {
    grow(xb_, inputs_ * m);
    grow(yb_, m);
  }
  grow(sample_loss_, m);
  if (backward)
    grow(dlogits_, classes_ * m);
  else
    grow(sample_hit_, m);
}

void device_model::upload_indices(int64_t n) {
  CHORUS_CUDA(cudaMemcpyAsync(idx_dev_.data(), idx_host_.data(),
                              static_cast<size_t>(n) * sizeof(int64_t), cudaMemcpyHostToDevice,
                              stream_.get()));
}

std::pair<const float*, const int32_t*> device_model::batch(const resident_dataset& r,
                                                            bool indexed, int64_t start,
                                                            int64_t m) {
  if (indexed) {
    gather_batch(r.x, r.y, inputs_, idx_dev_.data() + start, m, xb_.data(), yb_.data(),
                 stream_.get());
    return {xb_.data(), yb_.data()};
  }
  const float* window = r.x + start * inputs_;
  if (reinterpret_cast<uintptr_t>(window) % 16 != 0) {
    CHORUS_CUDA(cudaMemcpyAsync(xb_.data(), window, static_cast<size_t>(m * inputs_) * sizeof(float),
                                cudaMemcpyDeviceToDevice, stream_.get()));
    window = xb_.data();
  }
  return {window, r.y + start};
}

loss_sums device_model::read_sums() {
  CHORUS_CUDA(cudaMemcpyAsync(sums_host_.data(), sums_.data(), sizeof(loss_sums),
                              cudaMemcpyDeviceToHost, stream_.get()));
  CHORUS_CUDA(cudaGetLastError());
  // The project's convention: a call returns with its device work done.
  CHORUS_CUDA(cudaStreamSynchronize(stream_.get()));
  return *sums_host_.data();
}

double device_model::loss_grad(const float* w, const dataset& d, const int64_t* idx, int64_t n,
                               float* g) {
  // A null idx means samples 0..n-1, as on the CPU.
  if (n <= 0)
    throw std::invalid_argument(spec_ + ": loss_grad needs at least one sample");
  enter();
  check_device_pointer(w, "w");
  check_device_pointer(g, "g");
  check_dataset(d, idx, n);
  check_batch(d, idx, n);
  const resident_dataset& r = resident(d);
  const bool indexed = idx != nullptr;
  reserve_common(n, n, indexed, true);
  reserve(n, true);

  cudaStream_t s = stream_.get();
  call_scope scope(s);
  CHORUS_CUDA(cudaMemsetAsync(sums_.data(), 0, sizeof(loss_sums), s));
  if (indexed)
    upload_indices(n);
  const auto [x, y] = batch(r, indexed, 0, n);
  const float* logits = forward(w, x, n);
  softmax_xent(logits, y, n, classes_, 1.0f / static_cast<float>(n), dlogits_.data(),
               sample_loss_.data(), nullptr, s);
  accumulate_loss(sample_loss_.data(), nullptr, n, sums_.data(), s);
  backward(w, x, dlogits_.data(), n, g);
  return read_sums().loss / static_cast<double>(n);
}

eval_result device_model::evaluate(const float* w, const dataset& d, const int64_t* idx,
                                   int64_t n) {
  if (!idx && n != d.size())
    throw std::invalid_argument(spec_ + ": evaluate without indices needs n == dataset size ("
                                + std::to_string(d.size()) + "), got " + std::to_string(n));
  if (n <= 0)
    return {};
  enter();
  check_device_pointer(w, "w");
  check_dataset(d, idx, n);
  check_batch(d, idx, n);
  const resident_dataset& r = resident(d);
  const bool indexed = idx != nullptr;
  const int64_t chunk = std::min(n, eval_chunk());
  reserve_common(chunk, n, indexed, false);
  reserve(chunk, false);

  cudaStream_t s = stream_.get();
  call_scope scope(s);
  CHORUS_CUDA(cudaMemsetAsync(sums_.data(), 0, sizeof(loss_sums), s));
  if (indexed)
    upload_indices(n);  // all of them at once; the chunks gather from there
  for (int64_t start = 0; start < n; start += chunk) {
    const int64_t m = std::min(chunk, n - start);
    const auto [x, y] = batch(r, indexed, start, m);
    const float* logits = forward(w, x, m);
    softmax_xent(logits, y, m, classes_, 0.0f, nullptr, sample_loss_.data(), sample_hit_.data(), s);
    accumulate_loss(sample_loss_.data(), sample_hit_.data(), m, sums_.data(), s);
  }
  const loss_sums sums = read_sums();
  const auto count = static_cast<double>(n);
  return {sums.loss / count, static_cast<double>(sums.hits) / count, n};
}

} // namespace chorus::cuda_models
