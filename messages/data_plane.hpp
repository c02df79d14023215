// The data plane: how a large buffer's floats cross processes.
//
// CAF (the control plane) carries every message. A buffer serializes as its
// length and raw bytes (messages/buffer.hpp), which CAF's middleman moves at
// about 1 GB/s on loopback. With the UCX data plane selected, a host buffer
// of at least `threshold_bytes()` leaving the process is written as a small
// descriptor instead (a one-time token, its length, the sender's UCX worker
// address); the receiver's deserialization fetches the floats through UCX
// (UCX picks the transport: cross-memory attach or shared memory between
// processes of one host, TCP or RDMA between hosts) into a host block, and
// the sender keeps its block alive, uncopied, until the transfer completed.
// A block in shared memory (shared_block) is not transferred at all between
// processes of one host: the receiver maps it and its buffer reads the
// floats in place (borrow), and the sender keeps the block until that
// buffer is released.
//
// One UCX worker per process, driven by a fetching thread while it fetches
// and by one progress thread otherwise; it is started on first use (a
// process that only receives starts it when the first descriptor arrives). A fetch that fails (the sender died, the transport
// failed, `fetch_timeout()` passed) is an error for that message, named on
// stderr: never a hang, never garbage floats.
//
// Without UCX (built without libucx-dev), `available(kind::ucx)` is false,
// select(kind::ucx) throws, and a descriptor that arrives is refused with an
// error that says so.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace chorus::data_plane {

enum class kind : uint8_t { caf = 0, ucx = 1 };

/// "caf" or "ucx".
const char* name(kind k);
/// Parses "caf" / "ucx"; throws std::invalid_argument naming the choices.
kind parse(const std::string& text);
/// True if this build can use `k` (caf always; ucx when built with UCX).
bool available(kind k);
/// The kind to use when the user names none: the faster one this build has.
kind default_kind();

/// Selects how this process sends large buffers (process-wide). Throws
/// std::runtime_error if `k` is not available or UCX cannot start.
/// `off_host`: peers may be on other hosts (UCX may use TCP or RDMA, and
/// watches its peers); else UCX uses shared memory and cross-memory attach
/// only, and opens no network listener. Fixed once UCX started.
void select(kind k, bool off_host = false);
kind selected();

/// Buffers of at least this many bytes go through the selected data plane
/// (smaller ones always take CAF's bytes path); 256 KiB unless the
/// environment says CHORUS_DATA_PLANE_MIN_BYTES=N.
size_t threshold_bytes();
void set_threshold_bytes(size_t bytes);

/// How long a fetch may take before it is an error (env
/// CHORUS_DATA_PLANE_TIMEOUT_MS overrides the default of 20 s).
std::chrono::milliseconds fetch_timeout();
void set_fetch_timeout(std::chrono::milliseconds t);

/// True if a buffer of `bytes` in host memory leaving this process now goes
/// as a descriptor.
bool offers(size_t bytes);

/// Registers `bytes` at `data` (kept alive by `keep`) for one fetch and
/// returns the descriptor to send in its place; "" if the data plane could
/// not take it (then the caller sends the bytes).
std::string offer(std::shared_ptr<const void> keep, const void* data, size_t bytes);

/// Host memory that a peer on this host can read directly (one copy): a
/// block of `bytes` that UCX allocated in shared memory (`ucp_mem_map`),
/// its remote key packed once. Null unless the UCX data plane is selected,
/// `bytes` is at least threshold_bytes() and shared_block_min_bytes(), and
/// UCX could allocate it. The block pool (messages/buffer.cpp) takes its
/// large host blocks here, so what it later offers goes as a descriptor
/// that names the block: the receiver maps it once and copies from it.
void* shared_block(size_t bytes);
/// True if `p` is a block shared_block returned (and not released).
bool is_shared_block(const void* p);
/// Unmaps a block shared_block returned; false if `p` is not one.
bool release_shared_block(void* p);
/// The smallest block shared_block takes (below it a block is on the heap,
/// and its offers take the request path): 64 KiB.
size_t shared_block_min_bytes();

/// Whether this process fetches the descriptors its peers send. Off until
/// select(kind::ucx) or set_accepting(true) (tools/network.cpp's
/// use_data_plane: on for every process without TLS in a UCX build, so a
/// peer's choice of plane need not match this one's). A process under TLS
/// never fetches: the floats would travel outside the TLS connection.
void set_accepting(bool on);
bool accepting();

/// Checks a descriptor before anything is allocated for it: this process
/// accepts descriptors, it is well formed, names `bytes`, and `bytes` is at
/// most CHORUS_DATA_PLANE_MAX_BYTES (1 GiB). "" if so, else what is wrong.
std::string check(const std::string& descriptor, size_t bytes);

/// Fetches the floats a descriptor names into `dest` (`bytes` long, kept
/// alive by `keep` for as long as the transfer may still write into it).
/// Returns "" on success, else what went wrong.
std::string fetch(const std::string& descriptor, std::shared_ptr<void> keep, void* dest,
                  size_t bytes);

/// The zero-copy receive: if `descriptor` names a block in the shared
/// memory of a sender on this host, maps it (once per sender's arena), tells
/// the sender the block is lent, and returns its owner handle with `data`
/// pointing at the floats in place. The sender keeps the block, unchanged,
/// until the handle's last copy is released (then it hears so); a sender
/// whose borrower's process is gone takes it back. Null (nothing done) when
/// the block cannot be read in place: another host, not shared memory,
/// borrowing turned off, or too close to the offer's expiry: fetch() then.
std::shared_ptr<const void> borrow(const std::string& descriptor, size_t bytes, const void*& data);
/// Whether borrow() reads shared blocks in place (default: yes, unless the
/// environment says CHORUS_DATA_PLANE_IN_PLACE=0); off, they are copied.
bool borrowing();
void set_borrowing(bool on);

/// Counters of this process (for tests and benchmarks).
struct counters {
  uint64_t offered = 0;         // descriptors written
  uint64_t served = 0;          // offers fetched by a peer (read in place: once released)
  uint64_t fetched = 0;         // descriptors this process fetched
  uint64_t failed = 0;          // fetches that failed
  uint64_t expired = 0;         // offers nobody fetched in time, or lent to a process
                                //   that is gone: released
  uint64_t copied = 0;          // of `fetched`: copied from the sender's shared memory
  uint64_t borrowed = 0;        // of `fetched`: read in place in the sender's shared memory
  uint64_t lent = 0;            // offers a peer reads in place now (not yet released)
  uint64_t shared_blocks = 0;   // blocks in shared memory now (shared_block)
};
counters stats();

/// Stops the progress thread and releases UCX (also run at exit). Offers not
/// yet fetched are released; later fetches of them fail.
void shutdown();

} // namespace chorus::data_plane
