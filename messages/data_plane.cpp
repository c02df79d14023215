// The data plane (see data_plane.hpp): the process-wide choice, and the UCX
// engine when Chorus is built with UCX (CHORUS_HAVE_UCX).
//
// How one fetch goes (UCP, the UCX protocol layer: tag matching and active
// messages):
//   sender    save(): offer() puts the block in `exports_` under a random
//             64-bit token and writes {token, bytes, its worker address}.
//   receiver  load(): fetch(), on the deserializing thread, posts a tag
//             receive into the destination block under a fresh tag, sends
//             the sender an active message (id `fetch_am`) {token, tag,
//             bytes, the receiver's worker address} and drives the worker
//             itself until the block is in (5 ms at most; then the progress
//             thread takes over and the caller waits).
//   sender    the AM handler queues it; whichever thread drives the worker
//             (the progress thread, or one fetching) looks the token up, takes the entry out of `exports_` and tag-sends
//             the block to the receiver under that tag (UCX's rendezvous
//             protocol for large sizes: the receiver pulls the bytes, with
//             cross-memory attach on one host). The block is released when
//             the send completes. An unknown token gets an empty message.
//   receiver  the receive completes: the length must be `bytes`.
// Both sides open their endpoints with peer error handling, so a dead peer
// fails its operations instead of leaving them pending; the caller's wait is
// bounded by fetch_timeout() in any case, after which the receive is
// cancelled (the op keeps the destination block alive until UCX lets go).
#include "messages/data_plane.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <random>
#include <stdexcept>
#include <thread>
#include <unordered_map>
#include <vector>

#ifdef CHORUS_HAVE_UCX
#include <cerrno>
#include <poll.h>
#include <signal.h>
#include <pthread.h>
#include <ucp/api/ucp.h>
#endif

namespace chorus::data_plane {

namespace {

std::atomic<kind> g_kind{kind::caf};
/// Whether this process fetches the descriptors its peers send (select(ucx)
/// and set_accepting turn it on; off until then).
std::atomic<bool> g_accepting{false};
/// A byte count from the environment variable `name`, or `fallback` (with a
/// word on stderr) when it is set to something that is not one.
size_t env_bytes(const char* name, size_t fallback) {
  const char* env = std::getenv(name);
  if (env == nullptr)
    return fallback;
  char* end = nullptr;
  unsigned long long v = std::strtoull(env, &end, 10);
  if (end != env && *end == '\0' && env[0] != '-')
    return static_cast<size_t>(v);
  std::fprintf(stderr, "chorus: %s='%.40s' is not a number of bytes; using %zu\n", name, env,
               fallback);
  return fallback;
}

/// The default threshold, or CHORUS_DATA_PLANE_MIN_BYTES.
size_t initial_threshold() {
  // Where UCX overtakes CAF's serializer (bench/remote_payload, one host,
  // request + ack at a time: 256 KiB 0.54-0.71 GB/s against 0.39-0.51,
  // 1 MiB 1.8-2.0 against 0.9-1.1).
  return env_bytes("CHORUS_DATA_PLANE_MIN_BYTES", size_t{256} << 10);
}

std::atomic<size_t> g_threshold{initial_threshold()};
std::atomic<int64_t> g_timeout_ms{-1};  // -1: not set, read the environment

std::atomic<uint64_t> c_offered{0}, c_served{0}, c_fetched{0}, c_failed{0}, c_expired{0},
    c_copied{0}, c_borrowed{0}, c_lent{0}, c_shared_blocks{0};

/// Whether shared blocks are read in place (CHORUS_DATA_PLANE_IN_PLACE=0: copied).
std::atomic<bool> g_borrowing{[] {
  const char* env = std::getenv("CHORUS_DATA_PLANE_IN_PLACE");
  return env == nullptr || std::string(env) != "0";
}()};

constexpr uint32_t descriptor_magic = 0x31504443;  // "CDP1"
/// A descriptor of a block in shared memory: "CDP1"'s fields, then the
/// block's arena (its id, its address in the sender, the remote key), and
/// until when the sender keeps it (CLOCK_MONOTONIC, shared by the processes
/// of one host).
constexpr uint32_t shared_descriptor_magic = 0x32504443;  // "CDP2"
constexpr uint32_t max_rkey_bytes = 1024;

/// Little helpers to write and read fixed-size fields of a byte string.
template <class T>
void put(std::string& out, T x) {
  out.append(reinterpret_cast<const char*>(&x), sizeof(T));
}
template <class T>
bool get(const std::string& in, size_t& at, T& x) {
  if (in.size() < at + sizeof(T))
    return false;
  std::memcpy(&x, in.data() + at, sizeof(T));
  at += sizeof(T);
  return true;
}

/// A descriptor's fields, or why it is not one.
struct parsed_descriptor {
  uint64_t token = 0;
  uint64_t size = 0;
  std::string address;
  std::string error;
  // "CDP2": the block is in shared memory
  bool shared = false;
  uint64_t arena = 0;        // the sender's id of the mapping (never reused)
  uint64_t remote = 0;       // the block's address in the sender
  int64_t valid_until = 0;   // steady_clock ns: the sender keeps the block until then
  std::string rkey;          // the arena's packed remote key
};

parsed_descriptor parse_descriptor(const std::string& descriptor, size_t bytes) {
  parsed_descriptor d;
  size_t at = 0;
  uint32_t magic = 0, len = 0, rkey_len = 0;
  bool ok = get(descriptor, at, magic)
            && (magic == descriptor_magic || magic == shared_descriptor_magic)
            && get(descriptor, at, d.token) && get(descriptor, at, d.size)
            && get(descriptor, at, len) && len != 0 && descriptor.size() - at >= len;
  if (ok) {
    d.address = descriptor.substr(at, len);
    at += len;
    d.shared = magic == shared_descriptor_magic;
    if (d.shared)
      ok = get(descriptor, at, d.arena) && get(descriptor, at, d.remote)
           && get(descriptor, at, d.valid_until) && get(descriptor, at, rkey_len)
           && rkey_len != 0 && rkey_len <= max_rkey_bytes && descriptor.size() - at >= rkey_len
           && d.remote + d.size >= d.remote;  // (no wrap-around)
    if (ok && d.shared) {
      d.rkey = descriptor.substr(at, rkey_len);
      at += rkey_len;
    }
    ok = ok && at == descriptor.size();
  }
  if (!ok) {
    d = {};
    d.error = "malformed data-plane descriptor";
  } else if (d.size != bytes) {
    d.error = "data-plane descriptor of " + std::to_string(d.size) + " bytes for a buffer of "
              + std::to_string(bytes);
  }
  return d;
}

} // namespace

void set_accepting(bool on) { g_accepting = on; }
bool accepting() { return g_accepting.load(); }

std::string check(const std::string& descriptor, size_t bytes) {
  if (!accepting())
    return "this process does not take buffers through the data plane (its --data-plane is caf "
           "with TLS, or it never selected one): the sender must use --data-plane caf";
  if (auto error = parse_descriptor(descriptor, bytes).error; !error.empty())
    return error;
  // The receiver takes the block before it asks the sender, on the
  // descriptor's word: bound it (a forged length would otherwise allocate up
  // to 64 GiB; found by fuzz_buffer).
  static const size_t max_bytes = env_bytes("CHORUS_DATA_PLANE_MAX_BYTES", size_t{1} << 30);
  if (bytes > max_bytes)
    return "a buffer of " + std::to_string(bytes) + " bytes is over CHORUS_DATA_PLANE_MAX_BYTES ("
           + std::to_string(max_bytes) + ")";
  return {};
}

const char* name(kind k) { return k == kind::ucx ? "ucx" : "caf"; }

kind parse(const std::string& text) {
  if (text == "caf")
    return kind::caf;
  if (text == "ucx")
    return kind::ucx;
  throw std::invalid_argument("unknown data plane '" + text.substr(0, 40) + "' (valid: caf, ucx)");
}

bool available(kind k) {
#ifdef CHORUS_HAVE_UCX
  (void)k;
  return true;
#else
  return k == kind::caf;
#endif
}

kind default_kind() { return available(kind::ucx) ? kind::ucx : kind::caf; }

kind selected() { return g_kind.load(); }

size_t shared_block_min_bytes() { return size_t{64} << 10; }

size_t threshold_bytes() { return g_threshold.load(); }
void set_threshold_bytes(size_t bytes) { g_threshold = bytes; }

std::chrono::milliseconds fetch_timeout() {
  int64_t ms = g_timeout_ms.load();
  if (ms < 0) {
    ms = 20000;
    if (const char* env = std::getenv("CHORUS_DATA_PLANE_TIMEOUT_MS")) {
      char* end = nullptr;
      long long v = std::strtoll(env, &end, 10);
      if (end != env && *end == '\0' && v > 0 && v <= 3600000)
        ms = v;
      else
        std::fprintf(stderr, "chorus: CHORUS_DATA_PLANE_TIMEOUT_MS='%.40s' is not a number of "
                             "milliseconds in 1..3600000; using %lld\n",
                     env, static_cast<long long>(ms));
    }
    g_timeout_ms = ms;
  }
  return std::chrono::milliseconds(ms);
}

bool borrowing() { return g_borrowing.load(); }
void set_borrowing(bool on) { g_borrowing = on; }

void set_fetch_timeout(std::chrono::milliseconds t) { g_timeout_ms = std::max<int64_t>(1, t.count()); }

counters stats() {
  counters c;
  c.offered = c_offered.load();
  c.served = c_served.load();
  c.fetched = c_fetched.load();
  c.failed = c_failed.load();
  c.expired = c_expired.load();
  c.copied = c_copied.load();
  c.borrowed = c_borrowed.load();
  c.lent = c_lent.load();
  c.shared_blocks = c_shared_blocks.load();
  return c;
}

#ifdef CHORUS_HAVE_UCX

namespace {

constexpr uint16_t fetch_am = 17;  // the active message id of a fetch request
constexpr uint16_t done_am = 18;   // a receiver copied a shared block, or released it: {token}
constexpr uint16_t hold_am = 19;   // a receiver reads a shared block in place: {token, pid, start}

std::string ucx_text(ucs_status_t s) { return ucs_status_string(s); }

/// steady_clock in ns: CLOCK_MONOTONIC, the same clock in every process of a
/// host (a shared block's descriptor says until when its sender keeps it).
int64_t monotonic_ns(std::chrono::steady_clock::time_point t = std::chrono::steady_clock::now()) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

/// What /proc/PID/stat says of a process: its state letter and its start
/// time (clock ticks after boot; a pid the kernel reuses has another).
struct process_entry {
  bool found = false;
  char state = '?';
  uint64_t start = 0;
};

process_entry read_process(int64_t pid) {
  process_entry out;
  char path[64];
  std::snprintf(path, sizeof(path), "/proc/%lld/stat", static_cast<long long>(pid));
  FILE* f = std::fopen(path, "r");
  if (f == nullptr)
    return out;
  char line[1024];
  const size_t k = std::fread(line, 1, sizeof(line) - 1, f);
  std::fclose(f);
  line[k] = '\0';
  // "pid (comm) S ppid ...": the fields follow the last ')' (comm may hold
  // any character); the start time is the 20th of them.
  const char* at = std::strrchr(line, ')');
  if (at == nullptr || at[1] != ' ')
    return out;
  out.found = true;
  out.state = at[2];
  at += 2;
  for (int field = 1; field < 20 && at != nullptr; ++field)
    if ((at = std::strchr(at, ' ')) != nullptr)
      ++at;
  if (at != nullptr)
    out.start = std::strtoull(at, nullptr, 10);
  return out;
}

/// This process's start time (read_process), sent with its pid.
uint64_t own_start() {
  static const uint64_t start = read_process(::getpid()).start;
  return start;
}

/// True if process `pid` (of this host), started at `start` (0: unknown),
/// exited: no such process, a zombie its parent has not reaped yet (a
/// node's coordinator, a test), or another process under a reused pid.
bool process_gone(int64_t pid, uint64_t start) {
  if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH)
    return true;
  const auto p = read_process(pid);
  if (!p.found)
    return errno == ENOENT;
  return p.state == 'Z' || p.state == 'X' || (start != 0 && p.start != start);
}

/// How long an offer nobody fetched is kept (the receiver died, or the
/// message never got there).
std::chrono::milliseconds offer_ttl() {
  return std::max<std::chrono::milliseconds>(fetch_timeout() * 3, std::chrono::seconds(60));
}

/// The blocks in shared memory (shared_block): UCX allocated each with
/// `ucp_mem_map` (on this host: a SysV or POSIX shared-memory segment) and
/// packed its remote key once. A peer on this host unpacks the key once
/// (it attaches the segment), gets a pointer into it with `ucp_rkey_ptr`,
/// and copies the floats itself: one memcpy, no page pinning, and no
/// progress of the sender on the way. The engine's UCX context stays alive
/// after the engine while blocks are mapped (buffers may outlive the data
/// plane's shutdown at exit); the last unmap then cleans it up.
struct arena {
  ucp_mem_h mem = nullptr;
  size_t length = 0;
  uint64_t id = 0;   // never reused in this process: a receiver's cache key
  std::string rkey;  // packed
};

struct arena_table {
  std::mutex m;
  ucp_context_h ctx = nullptr;  // while UCX runs
  bool orphaned = false;        // the engine is gone: clean ctx up with the last arena
  std::map<uintptr_t, arena> by_base;
  uint64_t next_id = 0;

  static arena_table& get() {
    static auto* table = new arena_table;  // never destroyed: blocks may outlive statics
    return *table;
  }

  /// The arena holding [p, p + bytes), copied out; false if none does.
  bool find(const void* p, size_t bytes, arena& out) {
    const auto at = reinterpret_cast<uintptr_t>(p);
    std::lock_guard<std::mutex> lock(m);
    auto i = by_base.upper_bound(at);
    if (i == by_base.begin())
      return false;
    --i;
    if (at + bytes > i->first + i->second.length)
      return false;
    out = i->second;
    return true;
  }
};

class engine;

/// What outlives the engine in borrowed buffers: whether it still runs (and
/// where), so that a buffer released after the data plane shut down (at exit)
/// touches no UCX object.
struct engine_link {
  std::mutex m;
  engine* e = nullptr;  // under m
  std::atomic<bool> alive{true};
};

/// Remote keys whose engine shut down while a buffer still read through
/// them: kept (their memory stays mapped), reachable for leak checkers.
std::vector<ucp_rkey_h>& kept_keys() {
  static auto* keys = new std::vector<ucp_rkey_h>;
  return *keys;
}

/// A sender's arena mapped into this process (its remote key unpacked).
/// Destroyed under the engine's ucx_ while the engine runs (the cache and
/// the loans hand their last reference to it).
struct mapping {
  ucp_rkey_h rkey = nullptr;
  size_t bytes = 0;  // of the block it was mapped for (the arena's size, about)
  uint64_t last_use = 0;
  std::shared_ptr<engine_link> link;
  mapping(ucp_rkey_h k, size_t n, std::shared_ptr<engine_link> l)
      : rkey(k), bytes(n), link(std::move(l)) {}
  mapping(const mapping&) = delete;
  mapping& operator=(const mapping&) = delete;
  ~mapping() {
    if (link->alive) {
      ucp_rkey_destroy(rkey);  // (under ucx_: it returns the key to the worker)
    } else {
      static std::mutex kept;
      std::lock_guard<std::mutex> lock(kept);
      kept_keys().push_back(rkey);
    }
  }
};

/// A block read in place: the owner handle of a borrowed buffer. Released,
/// it hands its mapping and a "done" for the sender to the engine.
struct loan {
  std::shared_ptr<engine_link> link;
  std::shared_ptr<mapping> mapped;
  std::string address;  // the sender's worker
  uint64_t token = 0;
  loan() = default;
  loan(const loan&) = delete;
  loan& operator=(const loan&) = delete;
  ~loan();
};

/// One fetch, shared by the caller (who waits) and the progress thread.
struct fetch_op {
  std::string address;  // the sender's worker address
  uint64_t token = 0;
  void* dest = nullptr;
  size_t bytes = 0;
  std::shared_ptr<void> keep;  // the destination block
  // progress thread only
  uint64_t tag = 0;
  void* recv_req = nullptr;
  struct peer* via = nullptr;
  // the outcome
  std::mutex m;
  std::condition_variable cv;
  bool done = false;
  std::string error;

  bool finished() {
    std::lock_guard<std::mutex> lock(m);
    return done;
  }

  void finish(std::string err) {
    std::lock_guard<std::mutex> lock(m);
    if (done)
      return;
    done = true;
    error = std::move(err);
    cv.notify_all();
  }
};

/// An endpoint to another process's worker.
struct peer {
  ucp_ep_h ep = nullptr;
  std::string address;
  bool failed = false;
  std::string failure;
};

/// A block offered for one fetch.
struct offered_block {
  std::shared_ptr<const void> keep;
  const void* data = nullptr;
  size_t bytes = 0;
  // Until when it is kept if nobody takes it: fixed at the offer (a shared
  // block's descriptor names it; a later set_fetch_timeout changes nothing).
  std::chrono::steady_clock::time_point until;
  int64_t lent_to = 0;  // the pid of a process reading it in place (hold_am): no expiry
  uint64_t lent_start = 0;  // and its start time (process_gone)
};

/// A fetch request that reached this process, to be served.
struct serve_job {
  uint64_t token = 0, tag = 0, bytes = 0;
  std::string address;  // the receiver's worker address
};

/// Heap state of a send in flight: freed by its completion callback.
struct send_ctx {
  engine* owner = nullptr;
  std::shared_ptr<const void> keep;  // the block being sent (serving)
  std::string header;                // the AM header (requesting)
  std::shared_ptr<fetch_op> op;      // requesting: fails if the request does
  bool serving = false;
};

class engine {
public:
  explicit engine(bool off_host) : off_host_(off_host) {
    ucp_config_t* config = nullptr;
    check(ucp_config_read(nullptr, nullptr, &config), "reading UCX's configuration");
    // Peers on this host only: shared memory and cross-memory attach, no
    // network listener at all (UCX's TCP transport would listen on every
    // interface, unauthenticated). A UCX_TLS the user set wins.
    if (!off_host && std::getenv("UCX_TLS") == nullptr)
      ucp_config_modify(config, "TLS", "sm,self");
    ucp_params_t params{};
    params.field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_MT_WORKERS_SHARED;
    params.features = UCP_FEATURE_TAG | UCP_FEATURE_AM | UCP_FEATURE_WAKEUP;
    // The block pool maps and unmaps shared blocks from any thread while
    // the worker runs: context-level calls need the context's lock.
    params.mt_workers_shared = 1;
    ucs_status_t st = ucp_init(&params, config, &ctx_);
    ucp_config_release(config);
    check(st, "ucp_init");
    ucp_worker_params_t wp{};
    wp.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
    // The progress thread and a fetching thread call the worker, one at a
    // time (`ucx_`).
    wp.thread_mode = UCS_THREAD_MODE_SERIALIZED;
    st = ucp_worker_create(ctx_, &wp, &worker_);
    if (st != UCS_OK) {
      ucp_cleanup(ctx_);
      check(st, "ucp_worker_create");
    }
    ucp_address_t* addr = nullptr;
    size_t len = 0;
    st = ucp_worker_get_address(worker_, &addr, &len);
    if (st == UCS_OK) {
      address_.assign(reinterpret_cast<const char*>(addr), len);
      ucp_worker_release_address(worker_, addr);
      st = ucp_worker_get_efd(worker_, &efd_);
    }
    if (st == UCS_OK) {
      ucp_am_handler_param_t hp{};
      hp.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_CB
                      | UCP_AM_HANDLER_PARAM_FIELD_ARG;
      hp.id = fetch_am;
      hp.cb = &engine::on_request;
      hp.arg = this;
      st = ucp_worker_set_am_recv_handler(worker_, &hp);
      if (st == UCS_OK) {
        hp.id = done_am;
        hp.cb = &engine::on_done;
        st = ucp_worker_set_am_recv_handler(worker_, &hp);
      }
      if (st == UCS_OK) {
        hp.id = hold_am;
        hp.cb = &engine::on_hold;
        st = ucp_worker_set_am_recv_handler(worker_, &hp);
      }
    }
    if (st != UCS_OK) {
      ucp_worker_destroy(worker_);
      ucp_cleanup(ctx_);
      check(st, "setting up the UCX worker");
    }
    {
      auto& arenas = arena_table::get();
      std::lock_guard<std::mutex> lock(arenas.m);
      if (arenas.ctx == nullptr)
        arenas.ctx = ctx_;
    }
    link_->e = this;
    std::random_device rd;
    rng_.seed((uint64_t{rd()} << 32) ^ rd());
    thread_ = std::thread([this] {
      ::pthread_setname_np(::pthread_self(), "chorus.ucx");  // for perf and top
      loop();
    });
  }

  engine(const engine&) = delete;
  engine& operator=(const engine&) = delete;

  ~engine() {
    {
      std::lock_guard<std::mutex> lock(mtx_);
      stop_ = true;
    }
    idle_.notify_all();
    ucp_worker_signal(worker_);
    thread_.join();
    std::lock_guard<std::mutex> ucx(ucx_);
    // Fail what is still waiting, give UCX a moment to finish what it
    // started, then close every endpoint.
    std::vector<std::shared_ptr<fetch_op>> waiting;
    for (auto& [tag, op] : active_)
      waiting.push_back(op);
    for (auto& op : waiting)
      fail(*op, "the data plane shut down");
    drain(std::chrono::milliseconds(500), [&] { return active_.empty() && sending_ == 0; });
    for (auto& [tag, op] : active_)
      op->finish("the data plane shut down");
    {
      // (released outside mtx_: a block offered may be one this process
      // borrowed, whose release takes mtx_)
      std::unordered_map<uint64_t, offered_block> offers;
      {
        std::lock_guard<std::mutex> lock(mtx_);
        offers.swap(exports_);
        c_lent = 0;
      }
    }
    // The mappings go before the endpoints their keys came through. One a
    // buffer still reads through stays mapped: from here on its key is kept.
    auto take_returns = [&] {
      std::vector<returned> list;
      std::lock_guard<std::mutex> lock(mtx_);
      list.swap(returns_);
      return list;
    };
    for (auto& r : take_returns())
      r.m.reset();
    mappings_.clear();
    mapped_bytes_ = 0;
    {
      std::lock_guard<std::mutex> lock(link_->m);
      link_->e = nullptr;
      link_->alive = false;
    }
    take_returns();  // (released meanwhile: dropped without UCX)
    std::vector<void*> closing;
    auto close_all = [&](auto& peers) {
      for (auto& p : peers) {
        ucp_request_param_t cp{};
        cp.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
        cp.flags = UCP_EP_CLOSE_FLAG_FORCE;
        void* r = ucp_ep_close_nbx(p->ep, &cp);
        if (UCS_PTR_IS_PTR(r))
          closing.push_back(r);
      }
      peers.clear();
    };
    std::vector<std::unique_ptr<peer>> all;
    for (auto& [a, p] : peers_)
      all.push_back(std::move(p));
    peers_.clear();
    for (auto& p : failed_)
      all.push_back(std::move(p));
    failed_.clear();
    close_all(all);
    drain(std::chrono::milliseconds(500), [&] {
      return std::all_of(closing.begin(), closing.end(), [](void* r) {
        return ucp_request_check_status(r) != UCS_INPROGRESS;
      });
    });
    for (void* r : closing)
      ucp_request_free(r);
    ucp_worker_destroy(worker_);
    bool blocks_mapped = false;
    {
      auto& arenas = arena_table::get();
      std::lock_guard<std::mutex> lock(arenas.m);
      if (arenas.ctx == ctx_) {
        blocks_mapped = !arenas.by_base.empty();
        arenas.orphaned = blocks_mapped;
        if (!blocks_mapped)
          arenas.ctx = nullptr;
      }
    }
    if (!blocks_mapped)
      ucp_cleanup(ctx_);
  }

  std::string offer(std::shared_ptr<const void> keep, const void* data, size_t bytes) {
    uint64_t token;
    arena in;
    const bool shared = arena_table::get().find(data, bytes, in);
    const auto until = std::chrono::steady_clock::now() + offer_ttl();
    {
      std::lock_guard<std::mutex> lock(mtx_);
      do
        token = rng_();
      while (token == 0 || exports_.count(token) != 0);
      exports_[token] = {std::move(keep), data, bytes, until};
    }
    std::string d;
    d.reserve(64 + address_.size() + in.rkey.size());
    put(d, shared ? shared_descriptor_magic : descriptor_magic);
    put(d, token);
    put(d, uint64_t{bytes});
    put(d, static_cast<uint32_t>(address_.size()));
    d += address_;
    if (shared) {
      // The receiver may copy until the offer would expire here (expire()).
      put(d, in.id);
      put(d, static_cast<uint64_t>(reinterpret_cast<uintptr_t>(data)));
      put(d, monotonic_ns(until));
      put(d, static_cast<uint32_t>(in.rkey.size()));
      d += in.rkey;
    }
    ++c_offered;
    return d;
  }

  std::string fetch(const std::string& descriptor, std::shared_ptr<void> keep, void* dest,
                    size_t bytes) {
    auto d = parse_descriptor(descriptor, bytes);
    if (!d.error.empty())
      return d.error;
    {
      std::lock_guard<std::mutex> lock(mtx_);
      if (stop_)
        return "the data plane shut down";
    }
    if (d.shared) {
      std::string error;
      switch (copy_shared(d, dest, bytes, error)) {
        case done: ++c_copied, ++c_fetched; return "";
        case failed: return error;
        case not_mapped: break;  // (another host's block) ask the sender for it
      }
    }
    auto op = std::make_shared<fetch_op>();
    op->address = std::move(d.address);
    op->token = d.token;
    op->dest = dest;
    op->bytes = bytes;
    op->keep = std::move(keep);
    drive(op);
    // The timeout, plus the time the bytes take at 10 MB/s (a slow link).
    const auto limit = fetch_timeout() + std::chrono::milliseconds(bytes / 10000);
    std::unique_lock<std::mutex> lock(op->m);
    if (!op->cv.wait_for(lock, limit, [&] { return op->done; })) {
      lock.unlock();
      {
        std::lock_guard<std::mutex> guard(mtx_);
        cancels_.push_back(op);
      }
      ucp_worker_signal(worker_);
      return "no data within " + std::to_string(limit.count())
             + " ms (CHORUS_DATA_PLANE_TIMEOUT_MS)";
    }
    return op->error;
  }

  /// See data_plane::borrow.
  std::shared_ptr<const void> borrow(const std::string& descriptor, size_t bytes,
                                     const void*& data) {
    auto d = parse_descriptor(descriptor, bytes);
    // The sender must hear of the loan (hold_am, a message of a few bytes)
    // long before it would give the offer up: else this process copies.
    if (!d.error.empty() || !d.shared || d.valid_until - monotonic_ns() < lend_margin_ns)
      return nullptr;
    auto held = std::make_shared<loan>();
    bool pending = false;
    {
      std::lock_guard<std::mutex> ucx(ucx_);
      {
        std::lock_guard<std::mutex> lock(mtx_);
        if (stop_)
          return nullptr;
      }
      std::shared_ptr<mapping> m;  // (after the guard: let go of under ucx_)
      std::string error;
      void* local = nullptr;
      // (a failure here shows again, with its words, in the fetch that follows)
      if (map_shared(d, bytes, m, local, error) != done)
        return nullptr;
      if (reinterpret_cast<uintptr_t>(local) % 64 != 0)  // (a pool block is; a forged one may not be)
        return nullptr;
      std::string hold;
      put(hold, d.token);
      put(hold, static_cast<int64_t>(::getpid()));
      put(hold, own_start());
      const ucs_status_t st = send_to(d.address, hold_am, std::move(hold));
      if (st != UCS_OK && st != UCS_INPROGRESS)
        return nullptr;  // the sender would not know: copy instead
      pending = st == UCS_INPROGRESS;
      held->mapped = std::move(m);
      held->link = link_;
      held->address = std::move(d.address);
      held->token = d.token;
      data = local;
    }
    if (pending)
      ucp_worker_signal(worker_);
    ++c_borrowed, ++c_fetched;
    return held;
  }

  /// A loan was released (any thread): the progress thread tells the sender.
  void give_back(std::shared_ptr<mapping> m, std::string address, uint64_t token) {
    {
      std::lock_guard<std::mutex> lock(mtx_);
      returns_.push_back({std::move(m), std::move(address), token});
    }
    ucp_worker_signal(worker_);
  }

private:
  /// How long before its offer's expiry a block is still read in place.
  static constexpr int64_t lend_margin_ns = int64_t{20} * 1000 * 1000 * 1000;

  /// A released loan, for the progress thread.
  struct returned {
    std::shared_ptr<mapping> m;
    std::string address;
    uint64_t token = 0;
  };

  /// Tells the senders of released loans (under ucx_), and lets go of their
  /// mappings here.
  void settle_returns(std::vector<returned>& list) {
    for (auto& r : list) {
      tell_done(r.address, r.token);
      r.m.reset();
    }
    list.clear();
  }

  /// Arenas mapped at most at once, and their bytes: a least recently used
  /// one goes first. (A mapping keeps its segment alive after the sender
  /// let go of it: a sender that frees blocks must not make this process
  /// hold them all.)
  static constexpr size_t max_mappings = 256;
  static constexpr size_t max_mapped_bytes = size_t{1} << 30;

  /// How copy_shared and map_shared went: `done` (copied; mapped),
  /// `failed` (with an error), `not_mapped` (no shared memory reaches the
  /// block from here: another host's; ask the sender instead).
  enum shared_outcome { done, failed, not_mapped };

  /// The one-copy path: maps the sender's arena (once; cached by sender and
  /// arena id), copies the block out of it on this thread, and tells the
  /// sender it may take the block back. `not_mapped`: no shared memory
  /// reaches that block from here (another host), ask the sender instead.
  shared_outcome copy_shared(const parsed_descriptor& d, void* dest, size_t bytes,
                           std::string& error) {
    std::shared_ptr<mapping> m;
    void* local = nullptr;
    {
      std::lock_guard<std::mutex> ucx(ucx_);
      if (auto outcome = map_shared(d, bytes, m, local, error); outcome != done)
        return outcome;
    }
    std::memcpy(dest, local, bytes);
    // The sender keeps the block until `valid_until` (the clock is the
    // host's): copied before then, the copy is whole.
    const bool whole = monotonic_ns() < d.valid_until;
    bool pending = false;
    {
      std::lock_guard<std::mutex> ucx(ucx_);
      m.reset();
      if (whole)
        pending = tell_done(d.address, d.token);
    }
    if (pending)
      ucp_worker_signal(worker_);  // the progress thread finishes sending it
    if (!whole)
      error = "the sender gave this buffer up before it was copied (it waited too long)";
    return whole ? done : failed;
  }

  /// Maps the arena of `d`'s block (cached by sender and arena id; under
  /// ucx_): `local` points at the block here. `done` if so (the mapping is
  /// in `m`).
  shared_outcome map_shared(const parsed_descriptor& d, size_t bytes, std::shared_ptr<mapping>& m,
                            void*& local, std::string& error) {
    peer* via = peer_for(d.address, error);
    if (!via)
      return failed;
    std::string key = d.address;
    put(key, d.arena);
    auto i = mappings_.find(key);
    if (i != mappings_.end()) {
      m = i->second;
    } else {
      ucp_rkey_h rkey = nullptr;
      ucs_status_t st = ucp_ep_rkey_unpack(via->ep, d.rkey.data(), &rkey);
      if (st != UCS_OK) {
        error = "cannot map the sender's shared memory (did its process exit?): " + ucx_text(st);
        return failed;
      }
      m = std::make_shared<mapping>(rkey, bytes, link_);
      while (!mappings_.empty()
             && (mappings_.size() >= max_mappings || mapped_bytes_ + bytes > max_mapped_bytes)) {
        auto lru = std::min_element(mappings_.begin(), mappings_.end(),
                                    [](const auto& a, const auto& b) {
                                      return a.second->last_use < b.second->last_use;
                                    });
        mapped_bytes_ -= lru->second->bytes;
        mappings_.erase(lru);
      }
      mappings_.emplace(std::move(key), m);
      mapped_bytes_ += bytes;
    }
    m->last_use = ++uses_;
    ucs_status_t st = ucp_rkey_ptr(m->rkey, d.remote, &local);
    if (st != UCS_OK) {
      m.reset();  // (its key stays cached: the next fetch knows at once)
      if (st == UCS_ERR_UNREACHABLE)
        return not_mapped;
      error = "cannot reach the sender's shared memory: " + ucx_text(st);
      return failed;
    }
    return done;
  }

  /// Tells a sender that its block `token` was copied or released (under
  /// ucx_); true if the message is still on its way (the worker must
  /// progress). A sender that is gone is told nothing: so is its block.
  bool tell_done(const std::string& address, uint64_t token) {
    std::string header;
    put(header, token);
    return send_to(address, done_am, std::move(header)) == UCS_INPROGRESS;
  }

  /// Sends `header` as active message `id` to the worker at `address`
  /// (under ucx_); as send_am, or UCS_ERR_UNREACHABLE when no endpoint to
  /// it can be made.
  ucs_status_t send_to(const std::string& address, uint16_t id, std::string header) {
    std::string error;
    peer* to = peer_for(address, error);
    if (!to)
      return UCS_ERR_UNREACHABLE;
    auto* ctx = new send_ctx;
    ctx->owner = this;
    ctx->header = std::move(header);
    return send_am(to, id, ctx);
  }

  /// Sends `ctx->header` as active message `id` (under ucx_); `ctx` is freed
  /// when it left. UCS_INPROGRESS if it is still on its way, else how its
  /// sending ended at once (UCS_OK: sent).
  ucs_status_t send_am(peer* to, uint16_t id, send_ctx* ctx) {
    ucp_request_param_t sp{};
    sp.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA
                      | UCP_OP_ATTR_FIELD_FLAGS;
    sp.flags = UCP_AM_SEND_FLAG_EAGER;
    sp.cb.send = &engine::on_sent;
    sp.user_data = ctx;
    void* s = ucp_am_send_nbx(to->ep, id, ctx->header.data(), ctx->header.size(), nullptr, 0, &sp);
    if (UCS_PTR_IS_PTR(s)) {
      ++sending_;
      return UCS_INPROGRESS;
    }
    const ucs_status_t st = UCS_PTR_STATUS(s);
    sent(ctx, st);
    return st;
  }

  /// Starts `op` and drives the worker on this thread for a while: a fetch
  /// handed to the progress thread waited for it to wake, and again for
  /// this thread to wake, each a scheduler's delay on a busy machine (50 us
  /// to 2 ms measured). Requests for this process's own offers that come in
  /// meanwhile are served here too (two processes fetching from each other
  /// serve each other). If the sender is slow to answer, the progress
  /// thread takes over and this thread sleeps.
  void drive(const std::shared_ptr<fetch_op>& op) {
    std::vector<serve_job> scratch;
    {
      std::lock_guard<std::mutex> lock(mtx_);
      ++drivers_;  // the progress thread stands aside meanwhile
    }
    std::unique_lock<std::mutex> ucx(ucx_);
    start(op);
    const auto until = std::chrono::steady_clock::now() + spin_limit;
    int turns = 0;
    while (!op->finished()) {
      unsigned n = ucp_worker_progress(worker_);
      serve(scratch);
      close_failed();
      if (n == 0) {
        if ((++turns & 63) == 0 && std::chrono::steady_clock::now() > until)
          break;
        ucx.unlock();  // let the progress thread, and the sender, run
        std::this_thread::yield();
        ucx.lock();
      }
    }
    ucx.unlock();
    {
      std::lock_guard<std::mutex> lock(mtx_);
      --drivers_;
    }
    idle_.notify_all();
    ucp_worker_signal(worker_);  // the progress thread: serve, poll, take over
  }

  /// How long a fetching thread drives the worker itself.
  static constexpr std::chrono::milliseconds spin_limit{5};

  static void check(ucs_status_t st, const char* what) {
    if (st != UCS_OK)
      throw std::runtime_error(std::string("UCX data plane: ") + what + ": " + ucx_text(st));
  }

  template <class Done>
  void drain(std::chrono::milliseconds limit, Done done) {
    auto until = std::chrono::steady_clock::now() + limit;
    while (!done() && std::chrono::steady_clock::now() < until) {
      ucp_worker_progress(worker_);
      close_failed();
    }
  }

  // -- the progress thread ------------------------------------------------------

  void loop() {
    int spins = 0;
    auto last_expiry = std::chrono::steady_clock::now();
    // Reused every turn: a turn allocates nothing while it spins.
    std::vector<std::shared_ptr<fetch_op>> cancels;
    std::vector<returned> returns;
    std::vector<serve_job> jobs;
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mtx_);
        // While a fetching thread drives the worker, it does this thread's
        // work; two threads taking turns at the worker only slowed both.
        idle_.wait(lock, [this] { return stop_ || drivers_ == 0; });
        if (stop_)
          return;
        cancels.swap(cancels_);
        returns.swap(returns_);
      }
      std::unique_lock<std::mutex> ucx(ucx_);
      for (auto& op : cancels)
        if (op->recv_req && active_.count(op->tag)) {
          op->finish("no data within the timeout");
          ucp_request_cancel(worker_, op->recv_req);
        }
      cancels.clear();
      settle_returns(returns);
      unsigned events = 0;
      while (unsigned n = ucp_worker_progress(worker_))
        events += n;
      serve(jobs);
      close_failed();
      if (spins % 256 == 0) {  // (a clock read per turn showed in perf)
        auto now = std::chrono::steady_clock::now();
        if (now - last_expiry > std::chrono::seconds(1)) {
          expire(now);
          last_expiry = now;
        }
      }
      // While transfers are in flight, poll (the sender must progress for
      // a rendezvous); else sleep on the worker's event fd.
      // A transfer whose peer went silent (dead, on one host) must not keep
      // this thread spinning: poll only while something happened lately.
      const bool pending = !active_.empty() || sending_ > 0 || !jobs_.empty();
      if (events > 0 || !jobs_.empty())
        spins = 0;
      if (pending && ++spins < 2000) {
        if (events == 0) {  // let the peer (on the same cores, perhaps) run
          ucx.unlock();
          std::this_thread::yield();
        }
        continue;
      }
      spins = 0;
      if (ucp_worker_arm(worker_) == UCS_ERR_BUSY)
        continue;
      ucx.unlock();
      pollfd p{efd_, POLLIN, 0};
      ::poll(&p, 1, pending ? 1 : 200);
    }
  }

  peer* peer_for(const std::string& address, std::string& error) {
    auto i = peers_.find(address);
    if (i != peers_.end())
      return i->second.get();
    auto p = std::make_unique<peer>();
    p->address = address;
    ucp_ep_params_t ep{};
    ep.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE
                    | UCP_EP_PARAM_FIELD_ERR_HANDLER;
    ep.address = reinterpret_cast<const ucp_address_t*>(address.data());
    // UCX 1.13's shared-memory transports take no endpoint that asks for
    // peer failure handling ("Destination is unreachable"), and with it the
    // transfers between processes of one host ran 2-3x slower here (TCP and
    // cross-memory attach only). On one host, then, a dead sender shows as
    // an error of the transfer (cross-memory attach fails) or as the fetch
    // timeout; between hosts UCX watches its peers.
    ep.err_mode = off_host_ ? UCP_ERR_HANDLING_MODE_PEER : UCP_ERR_HANDLING_MODE_NONE;
    ep.err_handler.cb = &engine::on_peer_error;
    ep.err_handler.arg = p.get();
    ucs_status_t st = ucp_ep_create(worker_, &ep, &p->ep);
    if (st != UCS_OK) {
      error = "cannot reach the peer's UCX worker: " + ucx_text(st);
      return nullptr;
    }
    auto* raw = p.get();
    peers_[address] = std::move(p);
    return raw;
  }

  void start(const std::shared_ptr<fetch_op>& op) {
    if (op->done)
      return;  // timed out before it started
    std::string error;
    peer* via = peer_for(op->address, error);
    if (!via) {
      op->finish(error);
      return;
    }
    op->via = via;
    op->tag = ++next_tag_;
    active_[op->tag] = op;
    ucp_request_param_t rp{};
    rp.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA
                      | UCP_OP_ATTR_FLAG_NO_IMM_CMPL;
    rp.cb.recv = &engine::on_received;
    rp.user_data = this;
    void* r = ucp_tag_recv_nbx(worker_, op->dest, op->bytes, op->tag, ~ucp_tag_t{0}, &rp);
    if (UCS_PTR_IS_ERR(r)) {
      active_.erase(op->tag);
      op->finish("cannot post the receive: " + ucx_text(UCS_PTR_STATUS(r)));
      return;
    }
    op->recv_req = r;
    // The request: {token, tag, bytes, our address}.
    auto* ctx = new send_ctx;
    ctx->owner = this;
    put(ctx->header, op->token);
    put(ctx->header, op->tag);
    put(ctx->header, uint64_t{op->bytes});
    ctx->header += address_;
    ctx->op = op;
    send_am(via, fetch_am, ctx);
  }

  /// A request or a served block left (or failed to).
  void sent(send_ctx* ctx, ucs_status_t st) {
    if (st != UCS_OK && ctx->op)
      fail(*ctx->op, "cannot send the fetch request: " + ucx_text(st));
    if (st == UCS_OK && ctx->serving)
      ++c_served;
    delete ctx;
  }

  /// Fails an op whose receive is posted: cancels it (the callback removes it).
  void fail(fetch_op& op, const std::string& why) {
    op.finish(why);
    if (op.recv_req && active_.count(op.tag))
      ucp_request_cancel(worker_, op.recv_req);
  }

  /// Serves the requests that came in (`jobs`: scratch space, left empty).
  void serve(std::vector<serve_job>& jobs) {
    jobs.swap(jobs_);
    for (auto& job : jobs) {
      offered_block block;
      bool found = false;
      {
        std::lock_guard<std::mutex> lock(mtx_);
        auto i = exports_.find(job.token);
        // (a block read in place is not sent as well: a duplicate or forged request)
        if (i != exports_.end() && i->second.bytes == job.bytes && i->second.lent_to == 0) {
          block = std::move(i->second);
          exports_.erase(i);
          found = true;
        }
      }
      std::string error;
      peer* to = peer_for(job.address, error);
      if (!to) {
        std::fprintf(stderr, "chorus: data plane: cannot answer a fetch: %s\n", error.c_str());
        continue;
      }
      auto* ctx = new send_ctx;
      ctx->owner = this;
      ctx->serving = found;
      ctx->keep = std::move(block.keep);
      ucp_request_param_t sp{};
      sp.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
      sp.cb.send = &engine::on_sent;
      sp.user_data = ctx;
      // Not found: an empty message tells the receiver at once.
      void* s = ucp_tag_send_nbx(to->ep, found ? block.data : nullptr, found ? job.bytes : 0,
                                 job.tag, &sp);
      if (UCS_PTR_IS_PTR(s)) {
        ++sending_;
        continue;
      }
      sent(ctx, UCS_PTR_STATUS(s));
    }
    jobs.clear();
  }

  void close_failed() {
    for (auto i = peers_.begin(); i != peers_.end();) {
      if (!i->second->failed) {
        ++i;
        continue;
      }
      peer* p = i->second.get();
      // (a cancel may complete at once and erase from active_: collect first)
      std::vector<std::shared_ptr<fetch_op>> lost;
      for (auto& [tag, op] : active_)
        if (op->via == p)
          lost.push_back(op);
      for (auto& op : lost)
        fail(*op, "the sending process is unreachable (" + p->failure + ")");
      failed_.push_back(std::move(i->second));
      i = peers_.erase(i);
    }
    // Close the failed endpoints once nothing of theirs is in flight.
    for (auto i = failed_.begin(); i != failed_.end();) {
      peer* p = i->get();
      bool used = std::any_of(active_.begin(), active_.end(),
                              [p](const auto& a) { return a.second->via == p; });
      if (used || p->ep == nullptr) {
        ++i;
        continue;
      }
      ucp_request_param_t cp{};
      cp.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
      cp.flags = UCP_EP_CLOSE_FLAG_FORCE;
      void* r = ucp_ep_close_nbx(p->ep, &cp);
      if (UCS_PTR_IS_PTR(r))
        ucp_request_free(r);  // completes on its own; nobody waits for it
      i = failed_.erase(i);
    }
  }

  void expire(std::chrono::steady_clock::time_point now) {
    // An offer nobody fetched (the receiver died, or the message never got
    // there) is released after a while. A block read in place stays until
    // it is released, or until the process reading it is gone (a pid of
    // this host: shared memory), looked at outside the lock.
    struct reader {
      uint64_t token;
      int64_t pid;
      uint64_t start;
    };
    std::vector<reader> lent;
    std::vector<std::shared_ptr<const void>> released;
    {
      std::lock_guard<std::mutex> lock(mtx_);
      for (auto i = exports_.begin(); i != exports_.end();) {
        if (i->second.lent_to != 0) {
          lent.push_back({i->first, i->second.lent_to, i->second.lent_start});
          ++i;
        } else if (now > i->second.until) {
          released.push_back(std::move(i->second.keep));
          i = exports_.erase(i);
          ++c_expired;
        } else {
          ++i;
        }
      }
    }
    lent.erase(std::remove_if(lent.begin(), lent.end(),
                              [](const reader& r) { return !process_gone(r.pid, r.start); }),
               lent.end());
    if (lent.empty())
      return;
    std::lock_guard<std::mutex> lock(mtx_);
    for (const auto& r : lent) {
      auto i = exports_.find(r.token);
      if (i == exports_.end() || i->second.lent_to != r.pid)
        continue;  // released meanwhile
      released.push_back(std::move(i->second.keep));
      exports_.erase(i);
      --c_lent;
      ++c_expired;
    }
  }

  // -- UCX callbacks (on the progress thread, inside ucp_worker_progress) --------

  static ucs_status_t on_request(void* arg, const void* header, size_t header_length, void*,
                                 size_t, const ucp_am_recv_param_t*) {
    auto* self = static_cast<engine*>(arg);
    std::string h(static_cast<const char*>(header), header_length);
    serve_job job;
    size_t at = 0;
    if (!get(h, at, job.token) || !get(h, at, job.tag) || !get(h, at, job.bytes) || at == h.size())
      return UCS_OK;  // malformed: ignore
    job.address = h.substr(at);
    self->jobs_.push_back(std::move(job));
    return UCS_OK;
  }

  /// A receiver copied a shared block: it goes back to the pool.
  static ucs_status_t on_done(void* arg, const void* header, size_t header_length, void*, size_t,
                              const ucp_am_recv_param_t*) {
    auto* self = static_cast<engine*>(arg);
    uint64_t token = 0;
    if (header_length != sizeof(token))
      return UCS_OK;  // malformed: ignore
    std::memcpy(&token, header, sizeof(token));
    std::shared_ptr<const void> released;  // (let go of outside mtx_)
    std::lock_guard<std::mutex> lock(self->mtx_);
    auto i = self->exports_.find(token);
    if (i != self->exports_.end()) {
      released = std::move(i->second.keep);
      if (i->second.lent_to != 0)
        --c_lent;
      self->exports_.erase(i);
      ++c_served;
    }
    return UCS_OK;
  }

  /// A receiver reads a shared block in place: it stays until released.
  static ucs_status_t on_hold(void* arg, const void* header, size_t header_length, void*, size_t,
                              const ucp_am_recv_param_t*) {
    auto* self = static_cast<engine*>(arg);
    uint64_t token = 0, start = 0;
    int64_t pid = 0;
    if (header_length != sizeof(token) + sizeof(pid) + sizeof(start))
      return UCS_OK;  // malformed: ignore
    const auto* h = static_cast<const char*>(header);
    std::memcpy(&token, h, sizeof(token));
    std::memcpy(&pid, h + sizeof(token), sizeof(pid));
    std::memcpy(&start, h + sizeof(token) + sizeof(pid), sizeof(start));
    std::lock_guard<std::mutex> lock(self->mtx_);
    auto i = self->exports_.find(token);
    if (i != self->exports_.end() && i->second.lent_to == 0 && pid > 0) {
      i->second.lent_to = pid;
      i->second.lent_start = start;
      ++c_lent;
    }
    return UCS_OK;
  }

  static void on_sent(void* request, ucs_status_t st, void* user_data) {
    auto* ctx = static_cast<send_ctx*>(user_data);
    engine* self = ctx->owner;
    ucp_request_free(request);
    --self->sending_;
    self->sent(ctx, st);
  }

  static void on_received(void* request, ucs_status_t st, const ucp_tag_recv_info_t* info,
                          void* user_data) {
    auto* self = static_cast<engine*>(user_data);
    settle(self, request, st, info);
    ucp_request_free(request);
  }

  static void settle(engine* self, void* request, ucs_status_t st, const ucp_tag_recv_info_t* info) {
    // Find the op by its request.
    for (auto i = self->active_.begin(); i != self->active_.end(); ++i) {
      auto& op = i->second;
      if (op->recv_req != request)
        continue;
      // (info is filled only for a completed receive)
      if (st == UCS_OK && info->length == op->bytes && info->sender_tag == op->tag) {
        ++c_fetched;
        op->finish("");
      } else if (st == UCS_OK && info->length == 0) {
        op->finish("the sender no longer holds this buffer (fetched already, expired, or its "
                   "process restarted)");
      } else if (st == UCS_OK) {
        op->finish("received " + std::to_string(info->length) + " bytes, expected "
                   + std::to_string(op->bytes));
      } else {
        op->finish("the transfer failed: " + ucx_text(st));
      }
      op->recv_req = nullptr;
      self->active_.erase(i);
      return;
    }
  }

  static void on_peer_error(void* arg, ucp_ep_h, ucs_status_t st) {
    auto* p = static_cast<peer*>(arg);
    p->failed = true;
    p->failure = ucx_text(st);
  }

  bool off_host_ = false;
  ucp_context_h ctx_ = nullptr;
  ucp_worker_h worker_ = nullptr;
  std::string address_;
  int efd_ = -1;
  std::thread thread_;
  std::mt19937_64 rng_;  // under mtx_

  std::mutex mtx_;  // guards what follows up to `ucx_`
  bool stop_ = false;
  int drivers_ = 0;  // fetching threads driving the worker
  std::condition_variable idle_;  // drivers_ fell to 0, or stop_
  std::vector<std::shared_ptr<fetch_op>> cancels_;
  std::vector<returned> returns_;  // loans released, for the progress thread
  std::unordered_map<uint64_t, offered_block> exports_;
  std::shared_ptr<engine_link> link_ = std::make_shared<engine_link>();

  // Every call into UCX, and what follows: whoever drives the worker (the
  // progress thread, or a fetching thread) holds it. Taken before mtx_.
  std::mutex ucx_;
  std::unordered_map<std::string, std::unique_ptr<peer>> peers_;
  std::vector<std::unique_ptr<peer>> failed_;
  std::unordered_map<uint64_t, std::shared_ptr<fetch_op>> active_;  // by tag
  std::vector<serve_job> jobs_;
  uint64_t next_tag_ = 0;
  long sending_ = 0;
  // The senders' arenas mapped here, by the sender's address and arena id.
  std::unordered_map<std::string, std::shared_ptr<mapping>> mappings_;
  size_t mapped_bytes_ = 0;
  uint64_t uses_ = 0;
};

loan::~loan() {
  if (!link)
    return;
  std::lock_guard<std::mutex> lock(link->m);
  if (link->e != nullptr)
    link->e->give_back(std::move(mapped), std::move(address), token);
}

std::mutex g_engine_mtx;
std::unique_ptr<engine> g_engine;
bool g_shut = false;
bool g_off_host = false;  // what select() asked for; the engine keeps what it started with

/// The engine, started on first use; null (with `error`) if UCX cannot start.
engine* the_engine(std::string& error) {
  std::lock_guard<std::mutex> lock(g_engine_mtx);
  if (g_shut) {
    error = "the data plane shut down";
    return nullptr;
  }
  if (!g_engine) {
    try {
      g_engine = std::make_unique<engine>(g_off_host);
      std::atexit([] { shutdown(); });
    } catch (const std::exception& e) {
      error = e.what();
      return nullptr;
    }
  }
  return g_engine.get();
}

} // namespace

void select(kind k, bool off_host) {
  if (!available(k))
    throw std::runtime_error(std::string("data plane '") + name(k)
                             + "' is not in this build (rebuild with libucx-dev installed)");
  {
    std::lock_guard<std::mutex> lock(g_engine_mtx);
    if (g_engine && off_host != g_off_host && k == kind::ucx)
      throw std::runtime_error("the UCX data plane already runs for peers "
                               + std::string(g_off_host ? "on other hosts" : "on this host only"));
    g_off_host = off_host;
  }
  if (k == kind::ucx) {
    std::string error;
    if (!the_engine(error))
      throw std::runtime_error("cannot start the UCX data plane: " + error);
    g_accepting = true;
  }
  g_kind = k;
}

bool offers(size_t bytes) { return g_kind.load() == kind::ucx && bytes >= g_threshold.load(); }

void* shared_block(size_t bytes) {
  if (!offers(bytes) || bytes < shared_block_min_bytes())
    return nullptr;
  auto& t = arena_table::get();
  std::lock_guard<std::mutex> lock(t.m);
  if (t.ctx == nullptr || t.orphaned)
    return nullptr;
  ucp_mem_map_params_t mp{};
  mp.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH
                  | UCP_MEM_MAP_PARAM_FIELD_FLAGS;
  mp.address = nullptr;
  mp.length = bytes;
  mp.flags = UCP_MEM_MAP_ALLOCATE;
  ucp_mem_h mem = nullptr;
  if (ucp_mem_map(t.ctx, &mp, &mem) != UCS_OK)
    return nullptr;  // (the heap then)
  ucp_mem_attr_t attr{};
  attr.field_mask = UCP_MEM_ATTR_FIELD_ADDRESS | UCP_MEM_ATTR_FIELD_LENGTH;
  void* packed = nullptr;
  size_t packed_len = 0;
  if (ucp_mem_query(mem, &attr) != UCS_OK || attr.length < bytes
      || ucp_rkey_pack(t.ctx, mem, &packed, &packed_len) != UCS_OK) {
    ucp_mem_unmap(t.ctx, mem);
    return nullptr;
  }
  arena a;
  a.mem = mem;
  a.length = attr.length;
  a.id = ++t.next_id;
  a.rkey.assign(static_cast<const char*>(packed), packed_len);
  ucp_rkey_buffer_release(packed);
  if (packed_len > max_rkey_bytes) {
    ucp_mem_unmap(t.ctx, mem);
    return nullptr;
  }
  t.by_base.emplace(reinterpret_cast<uintptr_t>(attr.address), std::move(a));
  ++c_shared_blocks;
  return attr.address;
}

bool is_shared_block(const void* p) {
  // The pool asks at every release of a large host block: a process that
  // never made one (no UCX, or not selected) takes no lock for it.
  if (c_shared_blocks.load() == 0)
    return false;
  auto& t = arena_table::get();
  std::lock_guard<std::mutex> lock(t.m);
  return t.by_base.count(reinterpret_cast<uintptr_t>(p)) != 0;
}

bool release_shared_block(void* p) {
  auto& t = arena_table::get();
  std::lock_guard<std::mutex> lock(t.m);
  auto i = t.by_base.find(reinterpret_cast<uintptr_t>(p));
  if (i == t.by_base.end())
    return false;
  ucp_mem_unmap(t.ctx, i->second.mem);
  t.by_base.erase(i);
  --c_shared_blocks;
  if (t.by_base.empty() && t.orphaned) {  // the last block of a data plane shut down
    ucp_cleanup(t.ctx);
    t.ctx = nullptr;
    t.orphaned = false;
  }
  return true;
}

std::string offer(std::shared_ptr<const void> keep, const void* data, size_t bytes) {
  std::string error;
  engine* e = the_engine(error);
  return e ? e->offer(std::move(keep), data, bytes) : std::string();
}

std::shared_ptr<const void> borrow(const std::string& descriptor, size_t bytes,
                                   const void*& data) {
  if (!borrowing())
    return nullptr;
  std::string error;
  engine* e = the_engine(error);
  return e ? e->borrow(descriptor, bytes, data) : nullptr;
}

std::string fetch(const std::string& descriptor, std::shared_ptr<void> keep, void* dest,
                  size_t bytes) {
  std::string error;
  engine* e = the_engine(error);
  if (!e) {
    ++c_failed;
    return "cannot start the UCX data plane to fetch a buffer: " + error;
  }
  error = e->fetch(descriptor, std::move(keep), dest, bytes);
  if (!error.empty())
    ++c_failed;
  return error;
}

void shutdown() {
  std::unique_ptr<engine> e;
  {
    std::lock_guard<std::mutex> lock(g_engine_mtx);
    g_shut = true;
    e = std::move(g_engine);
  }
  e.reset();  // outside the lock: joins the progress thread
  g_kind = kind::caf;
}

#else  // built without UCX

void select(kind k, bool) {
  if (!available(k))
    throw std::runtime_error(std::string("data plane '") + name(k)
                             + "' is not in this build (rebuild with libucx-dev installed)");
  g_kind = k;
}

bool offers(size_t) { return false; }

void* shared_block(size_t) { return nullptr; }
bool is_shared_block(const void*) { return false; }
bool release_shared_block(void*) { return false; }

std::string offer(std::shared_ptr<const void>, const void*, size_t) { return {}; }

std::shared_ptr<const void> borrow(const std::string&, size_t, const void*&) { return nullptr; }

std::string fetch(const std::string&, std::shared_ptr<void>, void*, size_t) {
  ++c_failed;
  return "the sender used the UCX data plane, but this process was built without UCX "
         "(run every process with --data-plane caf, or rebuild with libucx-dev)";
}

void shutdown() {}

#endif

} // namespace chorus::data_plane
