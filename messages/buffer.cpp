// The payload buffer: its block pool and its copies. Device memory is
// reached only through a block's device_memory_ops (see buffer.hpp).
#include "messages/buffer.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <new>

#include <sys/mman.h>
#include <stdexcept>
#include <unordered_map>
#include <vector>

#include <caf/binary_deserializer.hpp>

#include "messages/data_plane.hpp"

namespace chorus {

namespace {
std::atomic<uint64_t> g_allocations{0};
std::atomic<uint64_t> g_floats{0};
std::atomic<uint64_t> g_bytes_sent{0};
std::atomic<uint64_t> g_bytes_received{0};
constexpr size_t alignment = 64;
constexpr size_t huge_page = size_t{2} << 20;

// Blocks are recycled by exact size: a training step frees and allocates
// blocks of the same few sizes (weights, gradients) every round, and handing
// them back to the OS each time (glibc mmaps large blocks) costs page faults
// that showed up as a third of the run time. The pool keeps at most
// `max_cached_bytes` of idle blocks; beyond that they are freed. Device blocks
// are pooled the same way, keyed by device as well as size: a device
// allocation or free can stall every stream on the device. (A process has
// one table of device calls, the gpu layer's, so the key needs no more.)
class block_pool {
public:
  static block_pool& instance() {
    static block_pool* pool = new block_pool;  // never destroyed: blocks may outlive statics
    return *pool;
  }

  // `where` is -1 for host memory, else the device index, with `ops` the
  // device calls.
  float* take(size_t bytes, int where = -1, const device_memory_ops* ops = nullptr) {
    // A large host block that may leave the process through the data plane
    // lives in shared memory that UCX allocated: a peer on this host copies
    // it out directly, once (data_plane::shared_block). Kept apart in the
    // pool (`shared_memory`), so the blocks that cross stay there.
    const bool share = where == host && bytes >= data_plane::shared_block_min_bytes()
                       && data_plane::offers(bytes);
    if (float* p = idle(bytes, share ? shared_memory : where))
      return p;
    if (share)
      if (void* p = data_plane::shared_block(bytes))
        return static_cast<float*>(p);
    if (where >= 0)
      return static_cast<float*>(ops->allocate(bytes, where));
    // Large blocks on transparent huge pages (where the kernel does them on
    // request): a 512th of the page faults when a block is first written,
    // and the data plane's cross-memory attach (process_vm_readv) pins and
    // walks 2 MiB pages instead of 4 KiB ones: 16 MiB through UCX at
    // 6.0-6.9 GB/s against 4.5-4.7 (bench/remote_payload).
    const bool huge = bytes >= huge_page;
    auto* p = static_cast<float*>(std::aligned_alloc(huge ? huge_page : alignment, host_bytes(bytes)));
    if (p == nullptr)
      throw std::bad_alloc();
    if (huge)
      ::madvise(p, host_bytes(bytes), MADV_HUGEPAGE);  // advice: failing is harmless
    return p;
  }

  void give(float* p, size_t bytes, int where = -1, const device_memory_ops* ops = nullptr) {
    if (where == host && bytes >= data_plane::shared_block_min_bytes()
        && data_plane::is_shared_block(p))
      where = shared_memory;
    {
      std::lock_guard<std::mutex> guard(mtx_);
      if (cached_ + host_bytes(bytes) <= max_cached_bytes) {
        idle_[key(bytes, where)].push_back(p);
        cached_ += host_bytes(bytes);
        return;
      }
    }
    if (where >= 0)
      ops->release(p, where);
    else if (where == shared_memory)
      data_plane::release_shared_block(p);
    else
      std::free(p);
  }

private:
  static constexpr int host = -1;
  static constexpr int shared_memory = -2;  // host memory from data_plane::shared_block

  /// An idle block of `bytes` at `where`, or null.
  float* idle(size_t bytes, int where) {
    std::lock_guard<std::mutex> guard(mtx_);
    auto i = idle_.find(key(bytes, where));
    if (i == idle_.end() || i->second.empty())
      return nullptr;
    float* p = i->second.back();
    i->second.pop_back();
    cached_ -= host_bytes(bytes);
    return p;
  }

  /// What a host block of `bytes` takes: whole huge pages from 2 MiB on.
  static size_t host_bytes(size_t bytes) {
    return bytes < huge_page ? bytes : (bytes + huge_page - 1) / huge_page * huge_page;
  }
  // Sizes are multiples of 64 bytes: the low bits hold the device (+2).
  static size_t key(size_t bytes, int where) {
    return bytes * 64 + static_cast<size_t>(where + 2);
  }
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
uint64_t buffer_stats::bytes_sent() { return g_bytes_sent.load(); }
uint64_t buffer_stats::bytes_received() { return g_bytes_received.load(); }

namespace detail {

block::block(size_t n) : size(n) {
  if (n == 0)
    return;
  data = block_pool::instance().take(padded_bytes(n));
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  g_floats.fetch_add(n, std::memory_order_relaxed);
}

block::block(size_t n, int dev, const device_memory_ops& device_ops)
    : size(n), kind(memory_kind::device), device(dev), ops(&device_ops) {
  if (n == 0)
    return;
  data = block_pool::instance().take(padded_bytes(n), dev, ops);
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  g_floats.fetch_add(n, std::memory_order_relaxed);
}

block::block(const float* lent, size_t n, std::shared_ptr<const void> lent_by)
    : data(const_cast<float*>(lent)), size(n), lender(std::move(lent_by)) {}
block::~block() {
  if (data != nullptr && !lender)
    block_pool::instance().give(data, padded_bytes(size), device, ops);
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
  if (x.size == 0)
    return out;
  if (x.kind == memory_kind::host) {
    std::memcpy(out.data(), x.data, x.size * sizeof(float));
  } else {
    if (x.ops == nullptr)
      throw std::invalid_argument("mutable_buffer::copy_of: a device view without its device "
                                  "calls (take device views from a buffer's span())");
    x.ops->copy(out.data(), memory_kind::host, x.data, x.kind, x.size * sizeof(float));
  }
  return out;
}

mutable_buffer mutable_buffer::on_device(size_t n, int dev, const device_memory_ops& ops) {
  ops.require(dev, "a device buffer");  // also when n == 0: a bad index is a bad index
  mutable_buffer out;
  out.block_ = std::make_shared<detail::block>(n, dev, ops);
  return out;
}

buffer mutable_buffer::freeze() && {
  return buffer{std::shared_ptr<const detail::block>(std::move(block_))};
}

buffer buffer::from(const std::vector<float>& xs) {
  return mutable_buffer::copy_of({xs.data(), xs.size()}).freeze();
}

buffer buffer::from(cview xs) { return mutable_buffer::copy_of(xs).freeze(); }

std::vector<float> buffer::to_vector() const {
  if (kind() == memory_kind::host)
    return {begin(), end()};
  std::vector<float> out(size());
  ops()->copy(out.data(), memory_kind::host, data(), kind(), size() * sizeof(float));
  return out;
}

buffer buffer::to_host() const {
  if (kind() == memory_kind::host)
    return *this;
  return mutable_buffer::copy_of(span()).freeze();
}

buffer buffer::to_device(int dev, const device_memory_ops& ops) const {
  if (kind() == memory_kind::device && device() == dev)
    return *this;
  auto out = mutable_buffer::on_device(size(), dev, ops);
  ops.copy(out.data(), memory_kind::device, data(), kind(), size() * sizeof(float));
  return std::move(out).freeze();
}

namespace {
// The top bit of the length says the floats come through the data plane: a
// descriptor (a string) follows instead of the bytes.
constexpr uint64_t via_data_plane = uint64_t{1} << 63;
constexpr size_t max_descriptor_bytes = 4096;
} // namespace

caf::error buffer::save(caf::serializer& sink) const {
  uint64_t n = size();
  g_bytes_sent.fetch_add(n * sizeof(float), std::memory_order_relaxed);
  if (n > 0 && data_plane::offers(n * sizeof(float))) {
    // Leaving the process through the data plane: the peer fetches the
    // floats from this block (a device block's host copy), kept alive until
    // it has them.
    buffer host = to_host();
    auto descriptor = data_plane::offer(std::shared_ptr<const void>(host.block_), host.data(),
                                        n * sizeof(float));
    if (!descriptor.empty()) {
      uint64_t tagged = n | via_data_plane;
      if (auto err = sink(tagged))
        return err;
      return sink(descriptor);
    }
  }
  if (auto err = sink(n))
    return err;
  if (n == 0)
    return caf::none;
  if (kind() != memory_kind::host) {
    // Leaving the process: the floats go through host memory once.
    auto host = to_vector();
    return sink.apply_raw(n * sizeof(float), host.data());
  }
  return sink.apply_raw(n * sizeof(float), const_cast<float*>(data()));
}

caf::error buffer::load(caf::deserializer& source) {
  uint64_t n = 0;
  if (auto err = source(n))
    return err;
  const bool fetch = (n & via_data_plane) != 0;
  n &= ~via_data_plane;
  // A length that cannot be a real payload means a corrupt or hostile peer.
  constexpr uint64_t max_floats = uint64_t{1} << 34;
  if (n > max_floats)
    return caf::make_error(caf::sec::invalid_argument, "buffer length too large");
  if (fetch) {
    auto err = load_through_data_plane(source, n);
    if (!err)
      g_bytes_received.fetch_add(n * sizeof(float), std::memory_order_relaxed);
    return err;
  }
  // Never allocate more than the bytes at hand can fill: a 20-byte message
  // claiming 2^33 floats would otherwise reserve 32 GB before failing. The
  // middleman reads every message with a binary_deserializer over the whole
  // message, so its remaining() bounds the payload.
  if (auto* bytes = dynamic_cast<caf::binary_deserializer*>(&source))
    if (n > bytes->remaining() / sizeof(float))
      return caf::make_error(caf::sec::end_of_stream, "buffer length exceeds the message");
  mutable_buffer tmp(static_cast<size_t>(n));
  if (n > 0)
    if (auto err = source.apply_raw(n * sizeof(float), tmp.data()))
      return err;
  *this = std::move(tmp).freeze();
  g_bytes_received.fetch_add(n * sizeof(float), std::memory_order_relaxed);
  return caf::none;
}

caf::error buffer::load_through_data_plane(caf::deserializer& source, uint64_t n) {
  std::string descriptor;
  if (auto err = source(descriptor))
    return err;
  if (descriptor.size() > max_descriptor_bytes || n == 0)
    return caf::make_error(caf::sec::invalid_argument, "malformed data-plane descriptor");
  // CAF drops a message it cannot deserialize without a word (its log is
  // compiled out): say why here.
  auto dropped = [n](caf::sec code, const char* what, const std::string& why) {
    std::fprintf(stderr, "chorus: a buffer of %llu floats %s the data plane: %s; its "
                         "message is dropped\n",
                 static_cast<unsigned long long>(n), what, why.c_str());
    return caf::make_error(code, "data plane: " + why);
  };
  // Nothing is allocated on a descriptor this process would not fetch.
  if (auto why = data_plane::check(descriptor, n * sizeof(float)); !why.empty())
    return dropped(caf::sec::invalid_argument, "was refused by", why);
  // A block in the sender's shared memory is read where it is: the sender
  // keeps it, unchanged (a buffer never changes), until this buffer's last
  // handle is gone.
  const void* in_place = nullptr;
  if (auto lender = data_plane::borrow(descriptor, n * sizeof(float), in_place)) {
    *this = buffer{std::make_shared<const detail::block>(static_cast<const float*>(in_place),
                                                         static_cast<size_t>(n), std::move(lender))};
    return caf::none;
  }
  mutable_buffer tmp(static_cast<size_t>(n));
  // The data plane keeps the block alive for as long as a transfer may
  // still write into it (past a timeout, until UCX lets go of it).
  auto error = data_plane::fetch(descriptor, std::shared_ptr<void>(tmp.block_), tmp.data(),
                                 n * sizeof(float));
  if (!error.empty())
    return dropped(caf::sec::runtime_error, "did not arrive through", error);
  *this = std::move(tmp).freeze();
  return caf::none;
}

} // namespace chorus
