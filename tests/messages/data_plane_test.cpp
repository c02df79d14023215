// The UCX data plane (messages/data_plane.hpp) between this test and a peer
// process (data_plane_peer.cpp) on 127.0.0.1: buffers arrive bit-identical
// whichever way they cross, and a peer that dies mid-transfer is an error
// for that message, not a hang and not garbage. Skipped in a build without
// UCX, but for the parts that need no peer.
#include <gtest/gtest.h>

#include <caf/all.hpp>
#include <caf/binary_deserializer.hpp>
#include <caf/binary_serializer.hpp>
#include <caf/io/all.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "messages/data_plane.hpp"
#include "messages/type_ids.hpp"
#include "tests/messages/data_plane_peer.hpp"

using namespace chorus;
using namespace chorus::test;

namespace {

/// data_plane_peer started with `args`; killed and reaped at the end.
class peer_process {
public:
  explicit peer_process(std::vector<std::string> args) {
    args.insert(args.begin(), DATA_PLANE_PEER);
    std::vector<char*> argv;
    for (auto& a : args)
      argv.push_back(a.data());
    argv.push_back(nullptr);
    int to[2], from[2];
    if (::pipe2(to, O_CLOEXEC) != 0 || ::pipe2(from, O_CLOEXEC) != 0)
      throw std::runtime_error("pipe");
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(to[0], STDIN_FILENO);
      ::dup2(from[1], STDOUT_FILENO);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(to[0]);
    ::close(from[1]);
    stdin_ = to[1];
    std::string line;
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (line.find('\n') == std::string::npos && std::chrono::steady_clock::now() < until) {
      pollfd p{from[0], POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0)
        continue;
      char chunk[64];
      ssize_t k = ::read(from[0], chunk, sizeof(chunk));
      if (k <= 0)
        break;
      line.append(chunk, static_cast<size_t>(k));
    }
    ::close(from[0]);
    unsigned p = 0;
    if (std::sscanf(line.c_str(), "ready %u", &p) == 1)
      port_ = static_cast<uint16_t>(p);
  }
  peer_process(const peer_process&) = delete;
  peer_process& operator=(const peer_process&) = delete;
  ~peer_process() {
    ::close(stdin_);
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  uint16_t port() const { return port_; }
  /// SIGKILL, not reaped (a zombie until the destructor).
  void kill_now() { ::kill(pid_, SIGKILL); }
  pid_t pid() const { return pid_; }

private:
  pid_t pid_ = -1;
  int stdin_ = -1;
  uint16_t port_ = 0;
};

/// An actor system with the middleman, connected to a peer.
struct connection {
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  data_plane_peer peer;
  explicit connection(uint16_t port) {
    cfg.load<caf::io::middleman>();
    cfg.add_message_types<caf::id_block::chorus>();
    sys = std::make_unique<caf::actor_system>(cfg);
    auto h = sys->middleman().remote_actor<data_plane_peer>("127.0.0.1", port);
    if (!h)
      throw std::runtime_error("remote_actor: " + sys->render(h.error()));
    peer = *h;
  }
};

/// Restores the process-wide data-plane settings at the end of a test.
struct plane_settings {
  data_plane::kind kind = data_plane::selected();
  size_t threshold = data_plane::threshold_bytes();
  std::chrono::milliseconds timeout = data_plane::fetch_timeout();
  bool in_place = data_plane::borrowing();
  ~plane_settings() {
    data_plane::set_borrowing(in_place);
    data_plane::select(kind);
    data_plane::set_threshold_bytes(threshold);
    data_plane::set_fetch_timeout(timeout);
  }
};

constexpr auto request_timeout = std::chrono::seconds(60);

/// Sends `b` to the peer; its (size, hash) reply, or an error text.
std::string send_and_hash(connection& c, const buffer& b, uint64_t& size, uint64_t& hash) {
  caf::scoped_actor self{*c.sys};
  std::string error;
  self->request(c.peer, request_timeout, hash_atom::value, b)
    .receive([&](uint64_t n, uint64_t h) { size = n, hash = h; },
             [&](caf::error& e) { error = c.sys->render(e); });
  return error;
}

/// Asks the peer for a patterned buffer.
template <class... Extra>
std::string receive(connection& c, uint64_t n, int32_t seed, buffer& out, Extra... extra) {
  caf::scoped_actor self{*c.sys};
  std::string error;
  self->request(c.peer, request_timeout, give_atom::value, n, seed, extra...)
    .receive([&](buffer& b) { out = std::move(b); },
             [&](caf::error& e) { error = c.sys->render(e); });
  return error;
}

/// How many of the peer's offers this process reads in place, as the peer
/// counts them; waits up to 10 s for it to become `want`.
uint64_t peer_lent(connection& c, uint64_t want) {
  caf::scoped_actor self{*c.sys};
  uint64_t lent = ~uint64_t{0};
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  do {
    if (lent != ~uint64_t{0})
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    self->request(c.peer, request_timeout, lent_atom::value)
      .receive([&](uint64_t k) { lent = k; }, [](caf::error&) {});
  } while (lent != want && std::chrono::steady_clock::now() < until);
  return lent;
}

/// Waits up to `limit` for this process's counters to satisfy `done`.
template <class Done>
data_plane::counters await_stats(Done done,
                                 std::chrono::milliseconds limit = std::chrono::seconds(20)) {
  const auto until = std::chrono::steady_clock::now() + limit;
  auto now = data_plane::stats();
  while (!done(now) && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    now = data_plane::stats();
  }
  return now;
}

} // namespace

TEST(DataPlane, ParsesItsNamesAndRefusesOthers) {
  EXPECT_EQ(data_plane::parse("caf"), data_plane::kind::caf);
  EXPECT_EQ(data_plane::parse("ucx"), data_plane::kind::ucx);
  EXPECT_THROW(data_plane::parse("tcp"), std::invalid_argument);
  EXPECT_TRUE(data_plane::available(data_plane::kind::caf));
}

TEST(DataPlane, AMalformedDescriptorIsAnErrorNotACrash) {
  // The wire form of a buffer whose floats come through the data plane: the
  // length with its top bit set, then a descriptor; this one is garbage.
  std::vector<char> wire;
  {
    caf::binary_serializer sink{nullptr, wire};
    uint64_t n = uint64_t{1000} | (uint64_t{1} << 63);
    std::string descriptor = "not a descriptor";
    ASSERT_FALSE(sink(n, descriptor));
  }
  caf::binary_deserializer source{nullptr, wire};
  buffer b;
  EXPECT_TRUE(b.load(source));
  EXPECT_TRUE(b.empty());
}

namespace {

/// A descriptor in the data plane's wire form (data_plane.cpp): magic "CDP1",
/// token, byte count, address length, address bytes.
std::string forged_descriptor(uint64_t bytes, const std::string& address) {
  std::string d;
  auto put = [&](auto x) { d.append(reinterpret_cast<const char*>(&x), sizeof(x)); };
  put(uint32_t{0x31504443});
  put(uint64_t{42});
  put(bytes);
  put(static_cast<uint32_t>(address.size()));
  return d + address;
}

/// The same for a block in shared memory: magic "CDP2", the fields above,
/// then arena id, the block's address, valid-until, rkey length and bytes.
std::string forged_shared_descriptor(uint64_t bytes, const std::string& address,
                                     const std::string& rkey) {
  std::string d = forged_descriptor(bytes, address);
  d[0] = 0x43, d[1] = 0x44, d[2] = 0x50, d[3] = 0x32;
  auto put = [&](auto x) { d.append(reinterpret_cast<const char*>(&x), sizeof(x)); };
  put(uint64_t{7});
  put(uint64_t{0x7f0000000000});
  put(int64_t{1} << 62);
  put(static_cast<uint32_t>(rkey.size()));
  return d + rkey;
}

/// Turns accepting on or off for one test.
struct accepting_as {
  bool before = data_plane::accepting();
  explicit accepting_as(bool on) { data_plane::set_accepting(on); }
  ~accepting_as() { data_plane::set_accepting(before); }
};

} // namespace

TEST(DataPlane, ADescriptorIsCheckedBeforeAnythingIsAllocatedForIt) {
  const auto well_formed = forged_descriptor(4000, "some worker address");
  {
    accepting_as off(false);
    // A process that never took the data plane (or runs TLS) fetches nothing,
    // however well formed the descriptor is.
    EXPECT_NE(data_plane::check(well_formed, 4000).find("does not take buffers"),
              std::string::npos);
    std::vector<char> wire;
    {
      caf::binary_serializer sink{nullptr, wire};
      uint64_t n = uint64_t{1000} | (uint64_t{1} << 63);
      std::string descriptor = well_formed;
      ASSERT_FALSE(sink(n, descriptor));
    }
    caf::binary_deserializer source{nullptr, wire};
    buffer b;
    auto err = b.load(source);
    ASSERT_TRUE(err);
    EXPECT_EQ(err.category(), caf::atom("system"));
    EXPECT_TRUE(b.empty());
  }
  accepting_as on(true);
  EXPECT_EQ(data_plane::check(well_formed, 4000), "");
  EXPECT_NE(data_plane::check(well_formed, 4004).find("of 4000 bytes for a buffer of 4004"),
            std::string::npos);
  EXPECT_EQ(data_plane::check("CDP1", 4000), "malformed data-plane descriptor");
  // A shared block's descriptor: its trailer must be whole, nothing after it.
  const auto shared = forged_shared_descriptor(4000, "some worker address", "a packed key");
  EXPECT_EQ(data_plane::check(shared, 4000), "");
  EXPECT_EQ(data_plane::check(shared.substr(0, shared.size() - 1), 4000),
            "malformed data-plane descriptor");
  EXPECT_EQ(data_plane::check(shared + "x", 4000), "malformed data-plane descriptor");
  EXPECT_EQ(data_plane::check(forged_shared_descriptor(4000, "address", ""), 4000),
            "malformed data-plane descriptor");
  EXPECT_EQ(data_plane::check(forged_descriptor(4000, "some worker address") + "x", 4000),
            "malformed data-plane descriptor");
  EXPECT_EQ(data_plane::check(forged_descriptor(4000, ""), 4000), "malformed data-plane descriptor");
  EXPECT_EQ(data_plane::check(well_formed + "x", 4000), "malformed data-plane descriptor");
  // Past CHORUS_DATA_PLANE_MAX_BYTES (1 GiB unless set), however well formed.
  const uint64_t huge = uint64_t{2} << 30;
  EXPECT_NE(data_plane::check(forged_descriptor(huge, "some worker address"), huge)
              .find("over CHORUS_DATA_PLANE_MAX_BYTES"),
            std::string::npos);
}

TEST(DataPlane, LargeAndTinyBuffersCrossProcessesBitIdentical) {
  if (!data_plane::available(data_plane::kind::ucx))
    GTEST_SKIP() << "built without UCX";
  plane_settings restore;
  peer_process child({"--data-plane", "ucx", "--threshold", "0"});
  ASSERT_NE(child.port(), 0) << "the peer did not start";
  connection c(child.port());
  data_plane::select(data_plane::kind::ucx);
  data_plane::set_threshold_bytes(0);
  for (uint64_t n : {uint64_t{4} << 20, uint64_t{1}, uint64_t{3}}) {  // 16 MiB and tiny
    const auto before = data_plane::stats();
    const buffer b = pattern(n, static_cast<int32_t>(n));
    // A large block is in shared memory, which the peer copies from.
    EXPECT_EQ(data_plane::is_shared_block(b.data()),
              n * sizeof(float) >= data_plane::shared_block_min_bytes());
    uint64_t size = 0, hash = 0;
    ASSERT_EQ(send_and_hash(c, b, size, hash), "");
    EXPECT_EQ(size, n);
    EXPECT_EQ(hash, bytes_hash(b)) << n << " floats";
    EXPECT_EQ(data_plane::stats().offered, before.offered + 1) << "did not go through the data plane";
    // The peer took it (copied, it said so; or fetched): the offer is released.
    const auto after = await_stats([&](const auto& s) { return s.served != before.served; },
                                   std::chrono::seconds(10));
    EXPECT_EQ(after.served, before.served + 1) << n << " floats";
  }
  // Below the threshold a buffer takes CAF's bytes path.
  data_plane::set_threshold_bytes(size_t{1} << 20);
  {
    const auto before = data_plane::stats();
    const buffer small = pattern(1000, 7);
    uint64_t size = 0, hash = 0;
    ASSERT_EQ(send_and_hash(c, small, size, hash), "");
    EXPECT_EQ(hash, bytes_hash(small));
    EXPECT_EQ(data_plane::stats().offered, before.offered);
  }
  // The other way: the peer offers, this process fetches: 16 MiB read in
  // place in the peer's shared memory, then copied out of it; 8 bytes (a
  // heap block of the peer) asked for.
  for (bool in_place : {true, false}) {
    data_plane::set_borrowing(in_place);
    for (uint64_t n : {uint64_t{4} << 20, uint64_t{2}}) {
      const auto before = data_plane::stats();
      buffer got;
      ASSERT_EQ(receive(c, n, 11, got), "");
      EXPECT_EQ(got.size(), n);
      EXPECT_EQ(bytes_hash(got), bytes_hash(pattern(n, 11)));
      const auto after = data_plane::stats();
      EXPECT_EQ(after.fetched, before.fetched + 1);
      const uint64_t shared = n > 2 ? 1 : 0;
      EXPECT_EQ(after.borrowed, before.borrowed + (in_place ? shared : 0)) << n << " floats";
      EXPECT_EQ(after.copied, before.copied + (in_place ? 0 : shared)) << n << " floats";
    }
  }
}

TEST(DataPlane, ABufferReadInPlaceStaysWholeWhileItsSenderGoesOn) {
  if (!data_plane::available(data_plane::kind::ucx))
    GTEST_SKIP() << "built without UCX";
  plane_settings restore;
  accepting_as fetching(true);
  data_plane::set_borrowing(true);
  peer_process child({"--data-plane", "ucx", "--threshold", "0"});
  ASSERT_NE(child.port(), 0) << "the peer did not start";
  connection c(child.port());
  const uint64_t n = uint64_t{1} << 20;
  const auto before = data_plane::stats();
  buffer first;
  ASSERT_EQ(receive(c, n, 21, first), "");
  ASSERT_EQ(data_plane::stats().borrowed, before.borrowed + 1) << "not read in place";
  EXPECT_EQ(peer_lent(c, 1), 1u) << "the peer did not hear that its block is read in place";
  // The peer dropped its handle when it replied. Had it taken its block
  // back, the next buffers of that size (its pool's) would be made in it.
  for (int32_t seed = 22; seed < 26; ++seed) {
    buffer other;
    ASSERT_EQ(receive(c, n, seed, other), "");
    EXPECT_TRUE(is_pattern(other, n, seed));
    EXPECT_FALSE(other.data() == first.data());
  }
  EXPECT_TRUE(is_pattern(first, n, 21)) << "the lent block changed under its reader";
  EXPECT_EQ(data_plane::stats().borrowed, before.borrowed + 5);
  first = buffer();
  EXPECT_EQ(peer_lent(c, 0), 0u) << "the peer did not hear that its block was released";
}

TEST(DataPlane, ABlockLentToAProcessThatDiedIsTakenBack) {
  if (!data_plane::available(data_plane::kind::ucx))
    GTEST_SKIP() << "built without UCX";
  plane_settings restore;
  peer_process child({"--data-plane", "ucx", "--in-place", "1"});
  ASSERT_NE(child.port(), 0) << "the peer did not start";
  connection c(child.port());
  data_plane::select(data_plane::kind::ucx);
  data_plane::set_threshold_bytes(0);
  // (a block an earlier test's peer still read is given back first)
  ASSERT_EQ(await_stats([](const auto& s) { return s.lent == 0; }).lent, 0u);
  const auto before = data_plane::stats();
  const uint64_t n = uint64_t{1} << 20;
  {
    const buffer b = pattern(n, 31);  // in shared memory
    ASSERT_TRUE(data_plane::is_shared_block(b.data()));
    caf::scoped_actor self{*c.sys};
    uint64_t size = 0;
    self->request(c.peer, request_timeout, keep_atom::value, b)
      .receive([&](uint64_t k) { size = k; }, [](caf::error&) {});
    ASSERT_EQ(size, n);
  }
  // The peer holds it, read in place: this process keeps the block for it.
  EXPECT_EQ(await_stats([](const auto& s) { return s.lent == 1; }).lent, 1u);
  // It dies holding it (a zombie until the test ends): this process takes
  // the block back when it sees the pid gone (it looks every second), not
  // after the offer's time to live (60 s).
  child.kill_now();
  const auto now = await_stats([&](const auto& s) {
    return s.expired != before.expired && s.lent == 0;
  });
  EXPECT_EQ(now.offered, before.offered + 1);
  EXPECT_EQ(now.expired, before.expired + 1) << "the lent block was not taken back";
  EXPECT_EQ(now.lent, before.lent);
  EXPECT_EQ(now.served, before.served);
}

TEST(DataPlane, AProcessThatSendsOverCafStillFetchesWhatItIsOffered) {
  if (!data_plane::available(data_plane::kind::ucx))
    GTEST_SKIP() << "built without UCX";
  plane_settings restore;
  peer_process child({"--data-plane", "caf"});  // its data plane starts on the first descriptor
  ASSERT_NE(child.port(), 0) << "the peer did not start";
  connection c(child.port());
  data_plane::select(data_plane::kind::ucx);
  data_plane::set_threshold_bytes(size_t{1} << 20);
  const buffer b = pattern(uint64_t{4} << 20, 3);
  for (int i = 0; i < 3; ++i) {
    uint64_t size = 0, hash = 0;
    ASSERT_EQ(send_and_hash(c, b, size, hash), "");
    EXPECT_EQ(hash, bytes_hash(b));
  }
}

TEST(DataPlane, APeerKilledMidTransferIsAnErrorNotAHang) {
  if (!data_plane::available(data_plane::kind::ucx))
    GTEST_SKIP() << "built without UCX";
  plane_settings restore;
  accepting_as fetching(true);  // this process fetches what the peer offers
  data_plane::set_fetch_timeout(std::chrono::seconds(5));
  peer_process child({"--data-plane", "ucx", "--threshold", "0"});
  ASSERT_NE(child.port(), 0) << "the peer did not start";
  connection c(child.port());
  // 256 MiB: the peer kills itself 10 ms after its reply left, while this
  // process is fetching the floats (or before it started). The floats were
  // whole and immutable when offered: copied from shared memory mapped
  // before the peer died they arrive whole; else the fetch fails.
  const auto before = data_plane::stats();
  buffer got;
  const uint64_t n = uint64_t{64} << 20;
  std::string error;
  {
    caf::scoped_actor self{*c.sys};
    self->request(c.peer, std::chrono::seconds(20), give_atom::value, n, int32_t{5}, die_atom::value)
      .receive([&](buffer& b) { got = std::move(b); },
               [&](caf::error& e) { error = c.sys->render(e); });
  }
  if (error.empty()) {
    const auto after = data_plane::stats();
    EXPECT_EQ(after.copied + after.borrowed, before.copied + before.borrowed + 1)
      << "a buffer arrived by a path that needs the sender alive";
    EXPECT_TRUE(is_pattern(got, n, 5));
  } else {
    EXPECT_TRUE(got.empty());
    // (On a busy machine the peer may die before its reply left: no fetch.)
    if (error.find("request_timeout") == std::string::npos)
      EXPECT_EQ(data_plane::stats().failed, before.failed + 1) << error;
  }
  // The data plane still serves other peers.
  peer_process other({"--data-plane", "ucx"});
  ASSERT_NE(other.port(), 0);
  connection c2(other.port());
  data_plane::select(data_plane::kind::ucx);
  data_plane::set_threshold_bytes(0);
  const buffer b = pattern(uint64_t{1} << 20, 9);
  uint64_t size = 0, hash = 0;
  ASSERT_EQ(send_and_hash(c2, b, size, hash), "");
  EXPECT_EQ(hash, bytes_hash(b));
}

TEST(DataPlane, AnOfferOfAPeerThatExitedIsAnErrorAtOnce) {
  if (!data_plane::available(data_plane::kind::ucx))
    GTEST_SKIP() << "built without UCX";
  plane_settings restore;
  accepting_as fetching(true);
  data_plane::set_fetch_timeout(std::chrono::seconds(5));
  const uint64_t n = uint64_t{1} << 20;
  std::string descriptor;
  {
    peer_process child({"--data-plane", "ucx", "--threshold", "0"});
    ASSERT_NE(child.port(), 0) << "the peer did not start";
    connection c(child.port());
    caf::scoped_actor self{*c.sys};
    self->request(c.peer, request_timeout, give_atom::value, n, int32_t{4}, offer_atom::value)
      .receive([&](std::string& d) { descriptor = std::move(d); }, [](caf::error&) {});
  }  // the peer is killed and reaped: its shared memory is gone
  ASSERT_EQ(data_plane::check(descriptor, n * sizeof(float)), "");
  const auto before = data_plane::stats();
  auto dest = std::make_shared<std::vector<float>>(n);
  auto error = data_plane::fetch(descriptor, dest, dest->data(), n * sizeof(float));
  EXPECT_NE(error, "") << "floats arrived from a process that no longer exists";
  EXPECT_EQ(error.find("no data within"), std::string::npos) << "it waited for the timeout: " << error;
  EXPECT_EQ(data_plane::stats().failed, before.failed + 1);
}
