#include "messages/buffer.hpp"

#include <algorithm>
#include <cstdlib>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

namespace chorus {

namespace {
std::atomic<uint64_t> g_allocations{0};
std::atomic<uint64_t> g_floats{0};
constexpr size_t alignment = 64;

// Blocks are recycled by exact size: a training step frees and allocates
// blocks of the same few sizes (weights, gradients) every round, and handing
// them back to the OS each time (glibc mmaps large blocks) costs page faults
// that showed up as a third of the run time. The pool keeps at most
// `max_cached_bytes` of idle blocks; beyond that they are freed.
class block_pool {
public:
  static block_pool& instance() {
    static block_pool* pool = new block_pool;  // never destroyed: blocks may outlive statics
    return *pool;
  }

  float* take(size_t bytes) {
    {
      std::lock_guard<std::mutex> guard(mtx_);
      auto i = idle_.find(bytes);
      if (i != idle_.end() && !i->second.empty()) {
        float* p = i->second.back();
        i->second.pop_back();
        cached_ -= bytes;
        return p;
      }
    }
    auto* p = static_cast<float*>(std::aligned_alloc(alignment, bytes));
    if (p == nullptr)
      throw std::bad_alloc();
    return p;
  }

  void give(float* p, size_t bytes) {
    {
      std::lock_guard<std::mutex> guard(mtx_);
      if (cached_ + bytes <= max_cached_bytes) {
        idle_[bytes].push_back(p);
        cached_ += bytes;
        return;
      }
    }
    std::free(p);
  }

private:
  static constexpr size_t max_cached_bytes = size_t{512} << 20;
  std::mutex mtx_;
  std::unordered_map<size_t, std::vector<float*>> idle_;
  size_t cached_ = 0;
};

size_t padded_bytes(size_t n) {
  return (n * sizeof(float) + alignment - 1) / alignment * alignment;
}

} // namespace

uint64_t buffer_stats::allocations() { return g_allocations.load(); }
uint64_t buffer_stats::floats_allocated() { return g_floats.load(); }

namespace detail {

block::block(size_t n) : size(n) {
  if (n == 0)
    return;
  data = block_pool::instance().take(padded_bytes(n));
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  g_floats.fetch_add(n, std::memory_order_relaxed);
}

block::~block() {
  if (data != nullptr)
    block_pool::instance().give(data, padded_bytes(size));
}

} // namespace detail

mutable_buffer::mutable_buffer(size_t n) : block_(std::make_shared<detail::block>(n)) {}

mutable_buffer mutable_buffer::filled(size_t n, float value) {
  mutable_buffer out(n);
  std::fill(out.data(), out.data() + n, value);
  return out;
}

mutable_buffer mutable_buffer::copy_of(cview x) {
  mutable_buffer out(x.size);
  if (x.size > 0)
    std::memcpy(out.data(), x.data, x.size * sizeof(float));
  return out;
}

buffer mutable_buffer::freeze() && {
  return buffer{std::shared_ptr<const detail::block>(std::move(block_))};
}

buffer buffer::from(const std::vector<float>& xs) {
  return mutable_buffer::copy_of({xs.data(), xs.size()}).freeze();
}

buffer buffer::from(cview xs) { return mutable_buffer::copy_of(xs).freeze(); }

caf::error buffer::save(caf::serializer& sink) const {
  uint64_t n = size();
  if (auto err = sink(n))
    return err;
  if (n == 0)
    return caf::none;
  return sink.apply_raw(n * sizeof(float), const_cast<float*>(data()));
}

caf::error buffer::load(caf::deserializer& source) {
  uint64_t n = 0;
  if (auto err = source(n))
    return err;
  // A length that cannot be a real payload means a corrupt or hostile peer.
  constexpr uint64_t max_floats = uint64_t{1} << 34;
  if (n > max_floats)
    return caf::make_error(caf::sec::invalid_argument, "buffer length too large");
  mutable_buffer tmp(static_cast<size_t>(n));
  if (n > 0)
    if (auto err = source.apply_raw(n * sizeof(float), tmp.data()))
      return err;
  *this = std::move(tmp).freeze();
  return caf::none;
}

} // namespace chorus
