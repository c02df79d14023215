// Shared helpers for tests that run actors: an actor system configured like
// the runner's (test_system), and a guard that sends exit to every actor a test spawned
// so the system's destructor never waits forever.
#pragma once

#include <chrono>
#include <vector>

#include <caf/all.hpp>

#include "actors/system.hpp"
#include "messages/type_ids.hpp"

namespace chorus::test {

/// An actor system configured like the runner's; the config lives as long
/// as the system (CAF keeps a reference to it).
struct test_system {
  caf::actor_system_config cfg;
  caf::actor_system sys;
  explicit test_system(size_t threads = 2) : sys(configure(cfg, threads)) {}

  static caf::actor_system_config& configure(caf::actor_system_config& c, size_t threads) {
    configure_actor_system(c, threads);
    return c;
  }
};

/// The reply of type T to one request (within 60 s), or the error.
template <class T, class Handle, class... Ts>
caf::expected<T> ask(caf::scoped_actor& self, const Handle& h, Ts... xs) {
  caf::expected<T> out{caf::error{}};
  self->request(h, std::chrono::seconds(60), xs...)
    .receive([&](T& x) { out = std::move(x); }, [&](caf::error& e) { out = std::move(e); });
  return out;
}

/// Exits every added actor when it goes out of scope.
struct actor_guard {
  std::vector<caf::actor> members;
  template <class Handle>
  Handle add(Handle h) {
    members.push_back(caf::actor_cast<caf::actor>(h));
    return h;
  }
  ~actor_guard() {
    for (auto& a : members)
      caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  }
};

} // namespace chorus::test
