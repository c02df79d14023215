// Payload transport between two processes on loopback: CAF's middleman
// against a plain TCP socket between the same two processes, a memcpy of the
// same size, and buffer serialization alone.
//
//   throughput  The parent sends 64 KiB, 256 KiB, 1, 4 and 16 MiB chorus::buffers to its
//               child, one request at a time, and waits for a small ack
//               after each. GB/s = payload bytes / wall time, median over
//               repetitions (each repetition a few requests in a row).
//     caf       a typed actor published by the child (this binary run with
//               --serve); the buffer crosses as length + raw bytes
//               (messages/buffer.hpp), the ack is (floats, last float).
//     caf+ucx   the same request with the UCX data plane selected (built
//               with UCX): the buffer crosses as a descriptor and the child
//               fetches the floats through UCX (messages/data_plane.hpp).
//               The buffer was made while the data plane was selected, as in
//               training, so its block is in shared memory: the child maps
//               it (once) and its buffer reads the floats in place (no copy;
//               the parent keeps the block until the child released it).
//               The ack reads one float: GB/s here is bytes made readable
//               in the child per second, not bytes read.
//     caf+ucx-read  the same, the child reading every float in place (it
//               sums them): what a consumer of the buffer pays at least once.
//     caf+ucx-copy  the same, the child copying the block out of the shared
//               memory instead (one memcpy; CHORUS_DATA_PLANE_IN_PLACE=0).
//     caf+ucx-rndv  the same with a buffer made before (a heap block): the
//               child asks for it and UCX's rendezvous moves it (cross-memory
//               attach on one host), as for a peer on another host.
//     socket    the same bytes over one plain TCP connection: an 8-byte
//               length, the bytes, an 8-byte ack back. The child reads them
//               into a fresh buffer per message, as the middleman's
//               deserializer does. This socket exists in this benchmark only,
//               as the yardstick; Chorus talks through CAF.
//     memcpy    the same size copied within one process. Target: CAF at
//               half of a memcpy (ratio_to_memcpy >= 0.5).
//     serialize buffer::save into a caf::binary_serializer and buffer::load
//               from a caf::binary_deserializer, in one process: what
//               serialization alone costs.
//   latency     small request/response round trips (p50, p99) over CAF with
//               the default work-stealing scheduler and with
//               scheduler.policy=sharing on both ends (a second child), and a
//               ping-pong of the same pattern over the socket.
//
// Run: build/bench/remote_payload   (CHORUS_BENCH_QUICK=1: fewer repetitions;
// --sizes 16M --only caf+ucx --reps 20: one path at one size, e.g. under perf)
// The child listens on 127.0.0.1 only (ports picked by the kernel) and writes
// them to the parent through a pipe; it leaves when the parent closes its
// stdin, and dies with the parent (PR_SET_PDEATHSIG) should the parent die.
// Both run on the same cores, so on a small machine the numbers include the
// two processes competing for them.
#include <caf/all.hpp>
#include <caf/binary_deserializer.hpp>
#include <caf/binary_serializer.hpp>
#include <caf/io/all.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_util.hpp"
#include "messages/atoms.hpp"
#include "messages/buffer.hpp"
#include "messages/data_plane.hpp"
#include "messages/type_ids.hpp"

using namespace chorus;

namespace {

using ping_atom = caf::atom_constant<caf::atom("ping")>;
using in_place_atom = caf::atom_constant<caf::atom("inplace")>;
using read_atom = caf::atom_constant<caf::atom("read")>;

/// What the child publishes: takes a buffer and acks with its length and
/// last element (so the parent can tell the bytes arrived); echoes pings.
using payload_actor = caf::typed_actor<
  caf::replies_to<buffer>::with<uint64_t, float>,
  caf::replies_to<ping_atom, int64_t>::with<int64_t>,
  caf::replies_to<in_place_atom, bool>::with<bool>,
  caf::replies_to<read_atom, buffer>::with<uint64_t, float>>;

constexpr auto request_timeout = std::chrono::seconds(20);  // a dead peer shows only as a timeout (FACTS §2)
const char* const bench_name = "remote_payload";

[[noreturn]] void fail(const std::string& what) { throw std::runtime_error(what); }

std::string errno_text(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

// -- plain sockets (the yardstick) ---------------------------------------------

void write_all(int fd, const void* data, size_t n) {
  auto* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t k = ::send(fd, p, n, MSG_NOSIGNAL);
    if (k < 0) {
      if (errno == EINTR)
        continue;
      fail(errno_text("socket send"));
    }
    p += k;
    n -= static_cast<size_t>(k);
  }
}

/// Reads exactly n bytes; false on a clean end of stream before the first.
bool read_all(int fd, void* data, size_t n) {
  auto* p = static_cast<char*>(data);
  size_t got = 0;
  while (got < n) {
    ssize_t k = ::recv(fd, p + got, n - got, 0);
    if (k == 0) {
      if (got == 0)
        return false;
      fail("socket closed in the middle of a message");
    }
    if (k < 0) {
      if (errno == EINTR)
        continue;
      fail(errno_text("socket recv"));
    }
    got += static_cast<size_t>(k);
  }
  return true;
}

/// Closes a file descriptor when it goes out of scope.
struct fd_guard {
  int fd;
  fd_guard(const fd_guard&) = delete;
  fd_guard& operator=(const fd_guard&) = delete;
  ~fd_guard() { ::close(fd); }
};

void set_nodelay(int fd) {
  int one = 1;
  if (::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0)
    fail(errno_text("setsockopt TCP_NODELAY"));
}

/// A listening socket on 127.0.0.1 with a kernel-chosen port.
int listen_loopback(uint16_t& port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    fail(errno_text("socket"));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof(a);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || ::listen(fd, 4) != 0
      || ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0)
    fail(errno_text("bind/listen on 127.0.0.1"));
  port = ntohs(a.sin_port);
  return fd;
}

int connect_loopback(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    fail(errno_text("socket"));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0)
    fail(errno_text("connect to 127.0.0.1"));
  set_nodelay(fd);
  return fd;
}

/// The child's side of one connection: length, bytes into a fresh buffer,
/// the length back; until the parent closes it.
void serve_connection(int fd) {
  set_nodelay(fd);
  constexpr uint64_t max_bytes = uint64_t{1} << 34;
  for (;;) {
    uint64_t n = 0;
    if (!read_all(fd, &n, sizeof(n)))
      return;
    if (n > max_bytes || n % sizeof(float) != 0)
      fail("socket message of " + std::to_string(n) + " bytes: not a float payload");
    mutable_buffer b(static_cast<size_t>(n / sizeof(float)));
    if (n > 0 && !read_all(fd, b.data(), static_cast<size_t>(n)))
      fail("socket closed before the payload");
    buffer frozen = std::move(b).freeze();  // as a receiver would hold it
    write_all(fd, &n, sizeof(n));
  }
}

/// Accepts connections one after the other until `stop`.
void serve_socket(int lfd, const std::atomic<bool>& stop) {
  while (!stop.load()) {
    pollfd p{lfd, POLLIN, 0};
    int r = ::poll(&p, 1, 100);
    if (r <= 0)
      continue;
    int fd = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0)
      continue;
    fd_guard conn{fd};
    try {
      serve_connection(conn.fd);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "remote_payload --serve: %s\n", e.what());
    }
  }
}

/// One payload over the socket and its ack.
void socket_send(int fd, const buffer& b) {
  const uint64_t n = b.size() * sizeof(float);
  write_all(fd, &n, sizeof(n));
  write_all(fd, b.data(), static_cast<size_t>(n));
  uint64_t ack = 0;
  if (!read_all(fd, &ack, sizeof(ack)) || ack != n)
    fail("socket ack " + std::to_string(ack) + ", expected " + std::to_string(n));
}

// -- the actor systems ------------------------------------------------------------

void configure(caf::actor_system_config& cfg, const std::string& policy) {
  cfg.load<caf::io::middleman>();
  cfg.add_message_types<caf::id_block::chorus>();
  if (policy != "stealing")
    cfg.set("scheduler.policy", caf::atom_from_string(policy));
}

/// `reply_tag` is only there because CAF 0.17 reads a function actor's
/// arguments from a tuple it never made when there are none (UBSan).
payload_actor::behavior_type sink_behavior(int64_t reply_tag) {
  return {
    [](const buffer& b) -> caf::result<uint64_t, float> {
      return {static_cast<uint64_t>(b.size()), b.empty() ? 0.0f : b[b.size() - 1]};
    },
    [reply_tag](ping_atom, int64_t x) { return x + reply_tag; },
    // Reads every float (their sum, in 16 lanes so the loop vectorizes):
    // what a consumer of the buffer pays at least once.
    [](read_atom, const buffer& b) -> caf::result<uint64_t, float> {
      float lanes[16] = {};
      const size_t n = b.size(), whole = n / 16 * 16;
      const float* x = b.data();
      for (size_t i = 0; i < whole; i += 16)
        for (int k = 0; k < 16; ++k)
          lanes[k] += x[i + k];
      float sum = 0;
      for (size_t i = whole; i < n; ++i)
        sum += x[i];
      for (float l : lanes)
        sum += l;
      return {static_cast<uint64_t>(n), sum};
    },
    // Whether this process reads shared blocks in place or copies them.
    [](in_place_atom, bool on) {
      data_plane::set_borrowing(on);
      return on;
    },
  };
}

// -- the child ----------------------------------------------------------------------

/// --serve: publish the sink, listen on a socket, print "ready CAF_PORT
/// TCP_PORT" and serve until stdin closes.
int serve(const std::string& policy) {
  uint16_t tcp_port = 0;
  int lfd = listen_loopback(tcp_port);
  std::atomic<bool> stop{false};
  std::thread tcp([&] { serve_socket(lfd, stop); });
  int rc = 0;
  {
    caf::actor_system_config cfg;
    configure(cfg, policy);
    caf::actor_system sys{cfg};
    auto sink = sys.spawn(sink_behavior, int64_t{0});
    // Peers' descriptors are fetched whichever plane they send with.
    data_plane::set_accepting(data_plane::available(data_plane::kind::ucx));
    auto port = sys.middleman().publish(sink, 0, "127.0.0.1", true);
    if (!port) {
      std::fprintf(stderr, "remote_payload --serve: publish failed: %s\n",
                   sys.render(port.error()).c_str());
      rc = 1;
    } else {
      std::printf("ready %u %u\n", static_cast<unsigned>(*port), static_cast<unsigned>(tcp_port));
      std::fflush(stdout);
      char c;
      for (;;) {  // until the parent closes our stdin
        ssize_t k = ::read(STDIN_FILENO, &c, 1);
        if (k == 0 || (k < 0 && errno != EINTR))
          break;
      }
    }
    // A published actor keeps ~actor_system waiting forever unless it exits.
    caf::anon_send_exit(sink, caf::exit_reason::user_shutdown);
  }
  const auto got = data_plane::stats();
  if (got.fetched + got.failed > 0)
    bench::note("remote_payload --serve: data plane: " + std::to_string(got.fetched)
                + " buffers fetched (" + std::to_string(got.borrowed) + " read in place in shared "
                + "memory, " + std::to_string(got.copied) + " copied from it), "
                + std::to_string(got.failed) + " failed");
  stop = true;
  tcp.join();
  ::close(lfd);
  return rc;
}

// -- the parent's handle on a child ------------------------------------------------------

/// This binary started again with --serve, its stdin and stdout on pipes.
class child_process {
public:
  explicit child_process(const std::string& policy) {
    int to_child[2], from_child[2];
    if (::pipe2(to_child, O_CLOEXEC) != 0 || ::pipe2(from_child, O_CLOEXEC) != 0)
      fail(errno_text("pipe"));
    const pid_t parent = ::getpid();
    pid_ = ::fork();
    if (pid_ < 0)
      fail(errno_text("fork"));
    if (pid_ == 0) {
      // Only async-signal-safe calls until exec (the parent may have threads).
      // PDEATHSIG fires when the forking thread exits: the parent's main thread.
      if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || ::getppid() != parent)
        ::_exit(127);
      if (::dup2(to_child[0], STDIN_FILENO) < 0 || ::dup2(from_child[1], STDOUT_FILENO) < 0)
        ::_exit(127);
      ::execl("/proc/self/exe", "remote_payload", "--serve", "--policy", policy.c_str(),
              static_cast<char*>(nullptr));
      ::_exit(127);
    }
    ::close(to_child[0]);
    ::close(from_child[1]);
    stdin_ = to_child[1];
    stdout_ = from_child[0];
    read_ports();
  }

  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;

  ~child_process() {
    if (pid_ > 0) {  // only after an error: kill it rather than wait
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    close_fds();
  }

  uint16_t caf_port() const { return caf_port_; }
  uint16_t tcp_port() const { return tcp_port_; }

  /// Closes its stdin and waits for it to exit (throws after `limit`).
  void finish(std::chrono::seconds limit = std::chrono::seconds(20)) {
    ::close(stdin_);
    stdin_ = -1;
    bench::timer t;
    int status = 0;
    for (;;) {
      pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_)
        break;
      if (r < 0)
        fail(errno_text("waitpid"));
      if (t.seconds() > static_cast<double>(limit.count()))
        fail("the child did not exit within " + std::to_string(limit.count())
             + " s of its stdin closing");
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    pid_ = -1;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
      fail("the child ended with status " + std::to_string(status));
  }

private:
  void read_ports() {
    std::string line;
    bench::timer t;
    while (line.find('\n') == std::string::npos) {
      pollfd p{stdout_, POLLIN, 0};
      if (t.seconds() > 30)
        fail("the child did not report its ports within 30 s");
      if (::poll(&p, 1, 100) <= 0)
        continue;
      char chunk[128];
      ssize_t k = ::read(stdout_, chunk, sizeof(chunk));
      if (k == 0)
        fail("the child exited before reporting its ports");
      if (k < 0 && errno != EINTR)
        fail(errno_text("read from the child"));
      if (k > 0)
        line.append(chunk, static_cast<size_t>(k));
    }
    unsigned a = 0, b = 0;
    if (std::sscanf(line.c_str(), "ready %u %u", &a, &b) != 2 || a == 0 || a > 65535 || b == 0
        || b > 65535)
      fail("unexpected line from the child: " + line);
    caf_port_ = static_cast<uint16_t>(a);
    tcp_port_ = static_cast<uint16_t>(b);
  }

  void close_fds() {
    if (stdin_ >= 0)
      ::close(stdin_);
    if (stdout_ >= 0)
      ::close(stdout_);
    stdin_ = stdout_ = -1;
  }

  pid_t pid_ = -1;
  int stdin_ = -1;
  int stdout_ = -1;
  uint16_t caf_port_ = 0;
  uint16_t tcp_port_ = 0;
};

// -- measurements ---------------------------------------------------------------------------

struct settings {
  int reps = 7;
  int lat_samples = 2000;
  std::vector<size_t> sizes_bytes;
  /// --only PATH: measure that throughput path alone (caf, caf+ucx,
  /// caf+ucx-rndv or socket; memcpy always), no serialization, no latency:
  /// for profiling one path.
  std::string only;
  bool runs(const char* path) const { return only.empty() || only == path; }
  int requests_for(size_t bytes) const {
    const bool quick = bench::quick();
    if (bytes >= (size_t{8} << 20))
      return quick ? 3 : 10;
    return quick ? 20 : 100;
  }
};

buffer make_payload(size_t bytes) {
  mutable_buffer m(bytes / sizeof(float));
  for (size_t i = 0; i < m.size(); ++i)
    m[i] = static_cast<float>(i % 1021) * 0.5f;
  return std::move(m).freeze();
}

/// One CAF payload request and its ack (checked). `read`: the child reads
/// every float and acks with their sum, else with the last float.
void caf_send(caf::scoped_actor& self, const payload_actor& sink, const buffer& b,
              bool read = false) {
  std::string error;
  auto check = [&](uint64_t n, float x) {
    if (n != b.size() || (read ? !std::isfinite(x) : x != b[b.size() - 1]))
      error = "ack (" + std::to_string(n) + ", " + std::to_string(x) + ") does not match";
  };
  auto failed = [&](caf::error& e) { error = self->system().render(e); };
  if (read)
    self->request(sink, request_timeout, read_atom::value, b).receive(check, failed);
  else
    self->request(sink, request_timeout, b).receive(check, failed);
  if (!error.empty())
    fail("caf payload request: " + error);
}

/// Tells the child to read shared blocks in place (or to copy them).
void set_in_place(caf::scoped_actor& self, const payload_actor& sink, bool on) {
  std::string error;
  self->request(sink, request_timeout, in_place_atom::value, on)
    .receive([](bool) {}, [&](caf::error& e) { error = self->system().render(e); });
  if (!error.empty())
    fail("in-place switch: " + error);
}

/// p-quantile of sorted samples (nearest rank).
double quantile(const std::vector<double>& sorted, double p) {
  size_t k = static_cast<size_t>(std::ceil(p * static_cast<double>(sorted.size())));
  return sorted[k == 0 ? 0 : k - 1];
}

struct latency {
  double p50_us, p99_us, min_us;
};

template <class F>
latency measure_latency(int samples, F&& round_trip) {
  for (int i = 0; i < samples / 10 + 10; ++i)
    round_trip(i);  // warm-up
  std::vector<double> us;
  us.reserve(static_cast<size_t>(samples));
  for (int i = 0; i < samples; ++i) {
    bench::timer t;
    round_trip(i);
    us.push_back(t.seconds() * 1e6);
  }
  std::sort(us.begin(), us.end());
  return {quantile(us, 0.5), quantile(us, 0.99), us.front()};
}

latency caf_latency(caf::scoped_actor& self, const payload_actor& sink, int samples) {
  return measure_latency(samples, [&](int i) {
    std::string error;
    self->request(sink, request_timeout, ping_atom::value, int64_t{i})
      .receive(
        [&](int64_t x) {
          if (x != i)
            error = "ping echo " + std::to_string(x) + " for " + std::to_string(i);
        },
        [&](caf::error& e) { error = self->system().render(e); });
    if (!error.empty())
      fail("caf ping: " + error);
  });
}

latency socket_latency(int fd, int samples) {
  const buffer one = make_payload(sizeof(float));
  return measure_latency(samples, [&](int) { socket_send(fd, one); });
}

void print_latency(const char* path, const char* scheduler, const latency& l, int samples,
                   const latency* socket) {
  auto o = bench::line(bench_name);
  o.add("metric", "latency")
    .add("path", path)
    .add("scheduler", scheduler)
    .add("samples", int32_t{samples})
    .add("p50_us", l.p50_us)
    .add("p99_us", l.p99_us)
    .add("min_us", l.min_us);
  if (socket)
    o.add("ratio_to_socket", l.p50_us / socket->p50_us);
  bench::print(o);
}

/// memcpy GB/s for `bytes`, median over reps (destination reused, so its
/// pages are mapped).
double memcpy_gbps(size_t bytes, int reps, int copies) {
  std::vector<char> src(bytes, 1), dst(bytes, 0);
  std::memcpy(dst.data(), src.data(), bytes);
  std::vector<double> rates;
  for (int r = 0; r < reps; ++r) {
    bench::timer t;
    for (int i = 0; i < copies; ++i) {
      src[static_cast<size_t>(i) % bytes] = static_cast<char>(i);
      std::memcpy(dst.data(), src.data(), bytes);
      bench::keep(dst[static_cast<size_t>(i) % bytes]);
    }
    rates.push_back(static_cast<double>(bytes) * copies / t.seconds() / 1e9);
  }
  return bench::median(rates);
}

/// buffer::save / load through CAF's binary (de)serializer, GB/s of payload.
void serialization(size_t bytes, int reps, int copies) {
  const buffer b = make_payload(bytes);
  std::vector<char> wire;
  wire.reserve(b.wire_bytes() + 64);
  std::vector<double> save_rates, load_rates;
  {  // warm-up: the first save faults the wire vector's pages in
    caf::binary_serializer sink{nullptr, wire};
    if (auto err = b.save(sink))
      fail("buffer::save failed");
  }
  for (int r = 0; r < reps; ++r) {
    bench::timer t;
    for (int i = 0; i < copies; ++i) {
      wire.clear();
      caf::binary_serializer sink{nullptr, wire};
      if (auto err = b.save(sink))
        fail("buffer::save failed");
    }
    save_rates.push_back(static_cast<double>(bytes) * copies / t.seconds() / 1e9);
    t.reset();
    for (int i = 0; i < copies; ++i) {
      caf::binary_deserializer source{nullptr, wire};
      buffer out;
      if (auto err = out.load(source))
        fail("buffer::load failed");
      if (out.size() != b.size() || out[out.size() - 1] != b[b.size() - 1])
        fail("buffer::load gave back different floats");
    }
    load_rates.push_back(static_cast<double>(bytes) * copies / t.seconds() / 1e9);
  }
  for (auto [op, rates] : {std::pair{"save", &save_rates}, std::pair{"load", &load_rates}}) {
    auto o = bench::line(bench_name);
    o.add("metric", "throughput")
      .add("path", "serialize")
      .add("op", op)
      .add("bytes", uint64_t{bytes})
      .add("wire_bytes", uint64_t{wire.size()})
      .add("gbps", bench::median(*rates))
      .add("max_gbps", *std::max_element(rates->begin(), rates->end()));
    bench::print(o);
  }
}

/// Starts a child with scheduler `policy`, connects to it over CAF (a system
/// of the same policy here) and over the socket, runs f(self, sink, fd), and
/// waits for the child to exit.
template <class F>
void with_peer(const std::string& policy, F&& f) {
  child_process child(policy);
  {
    caf::actor_system_config cfg;
    configure(cfg, policy);
    caf::actor_system sys{cfg};
    auto sink = sys.middleman().remote_actor<payload_actor>("127.0.0.1", child.caf_port());
    if (!sink)
      fail("remote_actor (" + policy + "): " + sys.render(sink.error()));
    caf::scoped_actor self{sys};
    fd_guard conn{connect_loopback(child.tcp_port())};
    f(self, *sink, conn.fd);
  }  // the parent holds proxies only: its system ends at once
  child.finish();
}

/// Throughput of caf and socket for each size, interleaved rep by rep so
/// both see the same load, with memcpy of the same size beside them.
void throughput(const settings& s, caf::scoped_actor& self, const payload_actor& sink, int fd) {
  for (size_t bytes : s.sizes_bytes) {
    const buffer b = make_payload(bytes);
    const int n = s.requests_for(bytes);
    for (int i = 0; i < 2; ++i) {  // warm-up (connections, pools, pages)
      caf_send(self, sink, b);
      socket_send(fd, b);
    }
    const bool ucx = data_plane::available(data_plane::kind::ucx);
    buffer shared;  // b's floats in a block made with the data plane selected
    if (ucx) {  // warm-up of the data plane (endpoints, the receiver's pool)
      data_plane::select(data_plane::kind::ucx);
      shared = buffer::from(b.span());
      for (int i = 0; i < 2; ++i) {
        caf_send(self, sink, shared);
        caf_send(self, sink, b);
      }
      data_plane::select(data_plane::kind::caf);
    }
    std::vector<double> caf_rates, ucx_rates, read_rates, copy_rates, rndv_rates, socket_rates;
    // n requests of `path`, its GB/s added to `rates`.
    auto measure = [&](const char* path, std::vector<double>& rates, auto&& send_one) {
      if (!s.runs(path))
        return;
      bench::timer t;
      for (int i = 0; i < n; ++i)
        send_one();
      rates.push_back(static_cast<double>(bytes) * n / t.seconds() / 1e9);
    };
    for (int r = 0; r < s.reps; ++r) {
      measure("caf", caf_rates, [&] { caf_send(self, sink, b); });
      if (ucx) {
        data_plane::select(data_plane::kind::ucx);
        measure("caf+ucx", ucx_rates, [&] { caf_send(self, sink, shared); });
        measure("caf+ucx-read", read_rates, [&] { caf_send(self, sink, shared, true); });
        if (s.runs("caf+ucx-copy")) {
          set_in_place(self, sink, false);
          measure("caf+ucx-copy", copy_rates, [&] { caf_send(self, sink, shared); });
          set_in_place(self, sink, true);
        }
        measure("caf+ucx-rndv", rndv_rates, [&] { caf_send(self, sink, b); });
        data_plane::select(data_plane::kind::caf);
      }
      measure("socket", socket_rates, [&] { socket_send(fd, b); });
    }
    auto median_or_0 = [](const std::vector<double>& x) { return x.empty() ? 0.0 : bench::median(x); };
    const double caf = median_or_0(caf_rates), sock = median_or_0(socket_rates);
    const double mem = memcpy_gbps(bytes, s.reps, n);
    auto line = [&](const char* path, double gbps, const std::vector<double>* rates) {
      auto o = bench::line(bench_name);
      o.add("metric", "throughput")
        .add("path", path)
        .add("bytes", uint64_t{bytes})
        .add("requests", int32_t{n})
        .add("reps", int32_t{s.reps})
        .add("gbps", gbps);
      if (rates)
        o.add("max_gbps", *std::max_element(rates->begin(), rates->end()));
      if (rates && rates != &socket_rates)
      {
        if (sock > 0)
          o.add("ratio_to_socket", gbps / sock);
        o.add("ratio_to_memcpy", gbps / mem);
      }
      if (rates == &socket_rates)
        o.add("ratio_to_memcpy", sock / mem);
      bench::print(o);
    };
    if (s.runs("caf"))
      line("caf", caf, &caf_rates);
    if (ucx && s.runs("caf+ucx"))
      line("caf+ucx", median_or_0(ucx_rates), &ucx_rates);
    if (ucx && s.runs("caf+ucx-read"))
      line("caf+ucx-read", median_or_0(read_rates), &read_rates);
    if (ucx && s.runs("caf+ucx-copy"))
      line("caf+ucx-copy", median_or_0(copy_rates), &copy_rates);
    if (ucx && s.runs("caf+ucx-rndv"))
      line("caf+ucx-rndv", median_or_0(rndv_rates), &rndv_rates);
    if (s.runs("socket"))
      line("socket", sock, &socket_rates);
    line("memcpy", mem, nullptr);
  }
}

/// Throughput and round trips with the default (work-stealing) scheduler,
/// then the round trips again with the sharing scheduler on both ends.
void transport(const settings& s) {
  with_peer("stealing", [&](caf::scoped_actor& self, const payload_actor& sink, int fd) {
    throughput(s, self, sink, fd);
    if (!s.only.empty())
      return;
    const latency sock = socket_latency(fd, s.lat_samples);
    const latency caf = caf_latency(self, sink, s.lat_samples);
    print_latency("socket", "-", sock, s.lat_samples, nullptr);
    print_latency("caf", "stealing", caf, s.lat_samples, &sock);
  });
  if (!s.only.empty())
    return;
  with_peer("sharing", [&](caf::scoped_actor& self, const payload_actor& sink, int fd) {
    const latency sock = socket_latency(fd, s.lat_samples);
    print_latency("caf", "sharing", caf_latency(self, sink, s.lat_samples), s.lat_samples, &sock);
  });
}

int run_parent(settings s) {
  // Every size goes through the data plane when it is selected: the
  // threshold a run uses is chosen from these lines.
  data_plane::set_threshold_bytes(0);
  if (bench::quick()) {
    s.reps = std::min(s.reps, 3);
    s.lat_samples = 200;
  }
  if (s.sizes_bytes.empty())
    s.sizes_bytes = {size_t{64} << 10, size_t{256} << 10, size_t{1} << 20, size_t{4} << 20,
                     size_t{16} << 20};
  if (s.only.empty()) {
    bench::note("remote_payload: serialization in one process");
    for (size_t bytes : s.sizes_bytes)
      serialization(bytes, s.reps, s.requests_for(bytes));
  }
  bench::note("remote_payload: caf vs socket between two processes on 127.0.0.1");
  transport(s);
  return 0;
}

} // namespace

/// "16M", "64K", "4096": a byte count (a multiple of 4), or 0 if it is not one.
size_t parse_size(const std::string& text) {
  char* end = nullptr;
  const unsigned long long v = std::strtoull(text.c_str(), &end, 10);
  if (end == text.c_str() || text[0] == '-')
    return 0;
  const std::string unit = end;
  const int shift = unit.empty() ? 0 : unit == "K" ? 10 : unit == "M" ? 20 : -1;
  if (shift < 0 || v == 0 || v > (uint64_t{1} << 30) >> shift)
    return 0;
  const size_t bytes = static_cast<size_t>(v) << shift;
  return bytes % sizeof(float) == 0 ? bytes : 0;
}

int main(int argc, char** argv) {
  std::string policy = "stealing";
  bool serve_mode = false;
  settings s;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--sizes" && i + 1 < argc) {
      std::string list = argv[++i];
      for (size_t at = 0; at <= list.size();) {
        size_t comma = std::min(list.find(',', at), list.size());
        const size_t bytes = parse_size(list.substr(at, comma - at));
        if (bytes == 0) {
          std::fprintf(stderr, "remote_payload: --sizes takes byte counts such as 64K,1M,16M "
                               "(multiples of 4, at most 1 GiB), not '%s'\n", list.c_str());
          return 2;
        }
        s.sizes_bytes.push_back(bytes);
        at = comma + 1;
      }
    } else if (a == "--only" && i + 1 < argc) {
      s.only = argv[++i];
      if (s.only != "caf" && s.only != "caf+ucx" && s.only != "caf+ucx-read"
          && s.only != "caf+ucx-copy" && s.only != "caf+ucx-rndv" && s.only != "socket") {
        std::fprintf(stderr, "remote_payload: --only takes caf, caf+ucx, caf+ucx-read, caf+ucx-copy, "
                             "caf+ucx-rndv or socket, "
                             "not '%s'\n", s.only.c_str());
        return 2;
      }
    } else if (a == "--reps" && i + 1 < argc) {
      s.reps = std::atoi(argv[++i]);
      if (s.reps < 1 || s.reps > 1000) {
        std::fprintf(stderr, "remote_payload: --reps takes 1..1000\n");
        return 2;
      }
    } else if (a == "--serve") {
      serve_mode = true;
    } else if (a == "--policy" && i + 1 < argc) {
      policy = argv[++i];
      if (policy != "stealing" && policy != "sharing") {
        std::fprintf(stderr, "remote_payload: --policy must be stealing or sharing, not '%s'\n",
                     policy.c_str());
        return 2;
      }
    } else {
      std::fprintf(stderr,
                   "usage: remote_payload [--sizes 64K,1M,16M] [--only PATH] [--reps N]\n"
                   "         (the benchmark; starts its own peer. --only: one throughput path,\n"
                   "          caf, caf+ucx, caf+ucx-read, caf+ucx-copy, caf+ucx-rndv or socket)\n"
                   "       remote_payload --serve [--policy stealing|sharing]   (the peer)\n"
                   "unknown argument: %s\n",
                   a.c_str());
      return 2;
    }
  }
  try {
    return serve_mode ? serve(policy) : run_parent(s);
  } catch (const std::exception& e) {
    bench::note(std::string("remote_payload") + (serve_mode ? " --serve" : "") + " failed: "
                + e.what());
    return 1;
  }
}
