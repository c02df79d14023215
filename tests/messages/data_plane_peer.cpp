// The peer process of tests/messages/data_plane_test.cpp: publishes a
// data_plane_peer on 127.0.0.1 (a kernel-chosen port), prints "ready PORT"
// and serves until its stdin closes (it dies with its parent too).
//   data_plane_peer --data-plane caf|ucx [--threshold BYTES] [--in-place 0|1]
#include <caf/io/all.hpp>

#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "messages/data_plane.hpp"
#include "messages/type_ids.hpp"
#include "tests/messages/data_plane_peer.hpp"

using namespace chorus;
using namespace chorus::test;

namespace {

// `die_after`: how long the give-and-die handler lives after handing out its
// buffer. (It is an argument also because CAF 0.17 dereferences a null
// argument tuple when a function actor is spawned with none: UBSan stops it.)
data_plane_peer::behavior_type peer_behavior(std::chrono::milliseconds die_after) {
  return {
    [](hash_atom, const buffer& b) -> caf::result<uint64_t, uint64_t> {
      return {static_cast<uint64_t>(b.size()), bytes_hash(b)};
    },
    [](give_atom, uint64_t n, int32_t seed) { return pattern(n, seed); },
    [die_after](give_atom, uint64_t n, int32_t seed, die_atom) {
      auto b = pattern(n, seed);
      // Dies while the receiver fetches the floats (a large buffer takes
      // far longer than this to cross).
      std::thread([die_after] {
        std::this_thread::sleep_for(die_after);
        ::raise(SIGKILL);
      }).detach();
      return b;
    },
    [](keep_atom, const buffer& b) {
      static std::vector<buffer> kept;  // (held until the process ends)
      kept.push_back(b);
      return static_cast<uint64_t>(b.size());
    },
    [](lent_atom) { return data_plane::stats().lent; },
    [](give_atom, uint64_t n, int32_t seed, offer_atom) {
      auto b = std::make_shared<const buffer>(pattern(n, seed));
      return data_plane::offer(b, b->data(), b->size() * sizeof(float));
    },
  };
}

} // namespace

int main(int argc, char** argv) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  try {
    for (int i = 1; i + 1 < argc; i += 2) {
      std::string a = argv[i];
      if (a == "--data-plane")
        data_plane::select(data_plane::parse(argv[i + 1]));
      else if (a == "--threshold")
        data_plane::set_threshold_bytes(std::stoull(argv[i + 1]));
      else if (a == "--in-place")  // (whatever CHORUS_DATA_PLANE_IN_PLACE says)
        data_plane::set_borrowing(std::string(argv[i + 1]) != "0");
      else
        throw std::invalid_argument("unknown argument " + a);
    }
    // As use_data_plane does for a process without TLS: descriptors are
    // fetched whichever plane this one sends with.
    data_plane::set_accepting(data_plane::available(data_plane::kind::ucx));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "data_plane_peer: %s\n", e.what());
    return 2;
  }
  caf::actor_system_config cfg;
  cfg.load<caf::io::middleman>();
  cfg.add_message_types<caf::id_block::chorus>();
  caf::actor_system sys{cfg};
  auto peer = sys.spawn(peer_behavior, std::chrono::milliseconds(10));
  auto port = sys.middleman().publish(peer, 0, "127.0.0.1", true);
  int rc = 0;
  if (!port) {
    std::fprintf(stderr, "data_plane_peer: publish failed: %s\n", sys.render(port.error()).c_str());
    rc = 1;
  } else {
    std::printf("ready %u\n", static_cast<unsigned>(*port));
    std::fflush(stdout);
    char c;
    for (;;) {
      ssize_t k = ::read(STDIN_FILENO, &c, 1);
      if (k == 0 || (k < 0 && errno != EINTR))
        break;
    }
  }
  caf::anon_send_exit(peer, caf::exit_reason::user_shutdown);  // else ~actor_system waits forever
  return rc;
}
