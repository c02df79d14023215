// The shared, immutable payload that carries weights and gradients.
//
// A `buffer` is a ref-counted handle to a block of floats that nobody may
// change once it is published. Copying a buffer copies a pointer, so a hop
// between actors in one process never copies the floats and a broadcast to N
// receivers shares one block. A `mutable_buffer` is the only way to fill a
// block; `freeze()` turns it into a buffer without copying.
//
// Across processes a buffer serializes as its length followed by raw bytes
// (CAF 0.17 serializes a std::vector<float> element by element, ~0.08 GB/s;
// raw bytes reach ~1 GB/s). Host byte order is assumed on both ends. With the
// UCX data plane selected, a large host buffer serializes as a descriptor
// and the receiver fetches its floats through UCX (messages/data_plane.hpp).
//
// A block lives in host memory or on a CUDA device (`memory_kind`, with the
// device's index). Device blocks travel between actors of one process like
// host blocks, by handle; when one must leave the process it is copied to
// the host as it is serialized, and arrives as a host block. Element access
// (operator[], begin/end, data() dereferenced) is for host blocks only;
// to_vector() and to_host() work for both.
//
// This layer knows no device: a device block is made by the gpu layer
// (gpu/device.hpp: device::make_buffer, device::to_device), which hands it
// a `device_memory_ops` table; the block keeps it for its copies to the host
// and its release, and its views carry it along.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include <caf/deserializer.hpp>
#include <caf/error.hpp>
#include <caf/meta/type_name.hpp>
#include <caf/sec.hpp>
#include <caf/serializer.hpp>

namespace chorus {

/// Where a block of floats lives.
enum class memory_kind : uint8_t { host = 0, device = 1 };

/// Counters over every block ever allocated by this process (for tests and
/// benchmarks that must prove a hop did not copy).
struct buffer_stats {
  /// Number of blocks allocated.
  static uint64_t allocations();
  /// Number of float elements allocated in total.
  static uint64_t floats_allocated();
  /// Bytes of floats this process serialized (sent to other processes:
  /// through CAF or offered to the data plane) and deserialized.
  static uint64_t bytes_sent();
  static uint64_t bytes_received();
};

/// The calls a block on a CUDA device needs, from the code that allocated
/// it: the gpu layer fills one table (device::memory_ops() in
/// gpu/device.hpp) and every device block keeps a pointer to it.
struct device_memory_ops {
  /// Throws (device_error) naming `what` if there is no device `dev`.
  void (*require)(int dev, const char* what);
  /// Allocates `bytes` on device `dev`; throws on failure.
  void* (*allocate)(size_t bytes, int dev);
  /// Frees what allocate returned; never throws.
  void (*release)(void* p, int dev) noexcept;
  /// Copies `bytes` between host and device memory (either direction, or
  /// between devices) and waits for the copy.
  void (*copy)(void* dst, memory_kind dst_kind, const void* src, memory_kind src_kind,
               size_t bytes);
};

namespace detail {
/// One 64-byte aligned block of floats; owned by shared_ptr.
struct block {
  float* data = nullptr;
  size_t size = 0;
  memory_kind kind = memory_kind::host;
  int device = -1;           // CUDA device index for device blocks
  const device_memory_ops* ops = nullptr;  // device blocks: who allocated it
  /// Host floats this process does not own: another process's block that
  /// the data plane maps here (zero-copy receive). Released, it tells the
  /// owner through `lender`, never the pool.
  std::shared_ptr<const void> lender;
  explicit block(size_t n);  // uninitialized host block
  block(const float* lent, size_t n, std::shared_ptr<const void> lender);
  block(size_t n, int device, const device_memory_ops& ops);  // uninitialized, on a CUDA device
  block(const block&) = delete;
  block& operator=(const block&) = delete;
  ~block();
};
} // namespace detail

/// Read-only view of floats (host memory unless `kind` says otherwise).
struct cview {
  const float* data = nullptr;
  size_t size = 0;
  memory_kind kind = memory_kind::host;
  /// Device views of a buffer: the calls of the code that allocated it
  /// (copy_of uses them); null for host memory.
  const device_memory_ops* ops = nullptr;
  const float& operator[](size_t i) const { return data[i]; }
  const float* begin() const { return data; }
  const float* end() const { return data + size; }
};

/// Writable view of floats.
struct view {
  float* data = nullptr;
  size_t size = 0;
  memory_kind kind = memory_kind::host;
  /// As cview::ops.
  const device_memory_ops* ops = nullptr;
  float& operator[](size_t i) const { return data[i]; }
  float* begin() const { return data; }
  float* end() const { return data + size; }
  operator cview() const { return {data, size, kind, ops}; }
};

class buffer;

/// A uniquely owned, writable block; freeze() publishes it as a buffer.
class mutable_buffer {
public:
  mutable_buffer() = default;
  /// Allocates `n` floats, uninitialized.
  explicit mutable_buffer(size_t n);
  /// Allocates `n` floats, all set to `value`.
  static mutable_buffer filled(size_t n, float value);
  /// Allocates a copy of `x` on the host (the one explicit copy in this
  /// API; x may be device memory).
  static mutable_buffer copy_of(cview x);
  /// Allocates `n` uninitialized floats on CUDA device `dev` with `ops`
  /// (which throw device_error in a build without CUDA or when there is no
  /// such device). Code above the gpu layer calls device::make_buffer.
  static mutable_buffer on_device(size_t n, int dev, const device_memory_ops& ops);

  mutable_buffer(mutable_buffer&&) noexcept = default;
  mutable_buffer& operator=(mutable_buffer&&) noexcept = default;
  mutable_buffer(const mutable_buffer&) = delete;
  mutable_buffer& operator=(const mutable_buffer&) = delete;

  float* data() { return block_ ? block_->data : nullptr; }
  const float* data() const { return block_ ? block_->data : nullptr; }
  size_t size() const { return block_ ? block_->size : 0; }
  bool empty() const { return size() == 0; }
  float& operator[](size_t i) { return block_->data[i]; }
  float operator[](size_t i) const { return block_->data[i]; }
  view span() { return {data(), size(), kind(), ops()}; }
  cview span() const { return {data(), size(), kind(), ops()}; }
  memory_kind kind() const { return block_ ? block_->kind : memory_kind::host; }
  /// CUDA device index of a device block, -1 for host memory.
  int device() const { return block_ ? block_->device : -1; }
  /// The device calls of a device block; null for host memory.
  const device_memory_ops* ops() const { return block_ ? block_->ops : nullptr; }

  /// Publishes the block; this object is left empty. No copy.
  buffer freeze() &&;

private:
  friend class buffer;
  std::shared_ptr<detail::block> block_;
};

/// A shared, immutable block of floats. Cheap to copy; never changes.
class buffer {
public:
  /// The element type. CAF 0.17 takes any type with begin()/end() for a
  /// container and asks for it when a buffer is a message element itself.
  using value_type = float;

  buffer() = default;
  /// Copies `xs` into a new block (convenience for tests and small inputs).
  static buffer from(const std::vector<float>& xs);
  static buffer from(cview xs);

  const float* data() const { return block_ ? block_->data : nullptr; }
  size_t size() const { return block_ ? block_->size : 0; }
  bool empty() const { return size() == 0; }
  float operator[](size_t i) const { return block_->data[i]; }
  cview span() const { return {data(), size(), kind(), ops()}; }
  operator cview() const { return span(); }
  memory_kind kind() const { return block_ ? block_->kind : memory_kind::host; }
  /// CUDA device index of a device block, -1 for host memory.
  int device() const { return block_ ? block_->device : -1; }
  /// The device calls of a device block; null for host memory.
  const device_memory_ops* ops() const { return block_ ? block_->ops : nullptr; }
  const float* begin() const { return data(); }
  const float* end() const { return data() + size(); }
  /// The floats, copied to the host (from either kind of block).
  std::vector<float> to_vector() const;

  /// This buffer if it is in host memory (same block, no copy), else a host
  /// copy of it.
  buffer to_host() const;
  /// This buffer if it is already on device `dev` (same block), else a copy
  /// of it there, allocated with `ops`. Code above the gpu layer calls
  /// device::to_device.
  buffer to_device(int dev, const device_memory_ops& ops) const;

  /// True if both handles point at the same block (no copy was made).
  bool same_storage(const buffer& other) const { return block_ == other.block_; }
  /// Number of handles sharing this block.
  long use_count() const { return block_.use_count(); }

  /// Bytes this buffer occupies on the wire.
  size_t wire_bytes() const { return sizeof(uint64_t) + size() * sizeof(float); }

  // -- serialization (raw bytes; a device block is copied to the host) -------

  caf::error save(caf::serializer& sink) const;
  caf::error load(caf::deserializer& source);

private:
  caf::error load_through_data_plane(caf::deserializer& source, uint64_t n);
  friend class mutable_buffer;
  explicit buffer(std::shared_ptr<const detail::block> b) : block_(std::move(b)) {}
  std::shared_ptr<const detail::block> block_;
};

/// CAF inspection: raw bytes for (de)serializers, a short summary for
/// to_string (printing 16M floats into a log helps nobody).
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, buffer& x) {
  if constexpr (std::is_base_of<caf::serializer, Inspector>::value) {
    return x.save(f);
  } else if constexpr (std::is_base_of<caf::deserializer, Inspector>::value) {
    return x.load(f);
  } else {
    std::string summary = "floats[" + std::to_string(x.size()) + "]";
    return f(caf::meta::type_name("buffer"), summary);
  }
}

} // namespace chorus
