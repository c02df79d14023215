// The link model (--link BW[,LATENCY], e.g. --link 1gbit,100us): a message
// between two actors of a run arrives latency + bytes / bandwidth after it
// was sent, and a sender's messages queue behind each other on its link (a
// NIC sends one message at a time):
//
//   leaves_at  = max(now, the sender's link free at) + bytes / bandwidth
//   arrives_at = leaves_at + latency
//
// Bytes are the wire bytes of the message's payload (buffer::wire_bytes: the
// encoded form when a compressor is on the link); messages without one (an
// ok, an evaluation) cost the latency only. The delay is a timer on the
// actor clock, never a sleep: the sender goes on at once, and a run with a
// huge configured delay still ends promptly.
//
// Where it applies (the protocols know nothing of it):
//   - centralized protocols: a link stage (spawn_link_stage) wraps each
//     worker's handle on the protocol's side. Requests from the protocol
//     actor (weights down) queue on one link shared by all stages of the
//     run, the protocol actor's NIC; replies (gradients, models up) queue on
//     the worker's own link.
//   - gossip: each round peer sends its messages to its neighbours through
//     its own link_queue (engines/gossip_round_peer.cpp); an asynchronous
//     peer's exchange request leaves on its own link, and the partner's
//     reply on the partner's (engines/gossip_async_peer.cpp).
// --link-delay stays what it was: a latency the worker itself holds its
// replies back by (actors/injection.hpp), added to this one.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include <caf/actor_system.hpp>

#include "actors/interfaces.hpp"
#include "actors/pending_calls.hpp"

namespace chorus {

/// A link's bandwidth and latency. Default: off (no delay).
struct link_spec {
  double bytes_per_s = 0;                 ///< <= 0: infinite bandwidth
  std::chrono::nanoseconds latency{0};    ///< one way

  /// Parses "BW[,LATENCY]": BW a number with a unit, bits per second
  /// (bit, kbit, mbit, gbit) or bytes per second (B, KB, MB, GB; decimal
  /// prefixes), LATENCY a duration (250us, 2ms, 1.5s; a bare number is ms).
  /// "" and "none" are off. Throws std::invalid_argument naming the forms.
  static link_spec parse(const std::string& spec);
  bool active() const { return bytes_per_s > 0 || latency.count() > 0; }
  /// "1 gbit/s, 100 us" style, for logs and configs.
  std::string describe() const;
  /// bytes / bandwidth, at most max_injected_wait.
  std::chrono::nanoseconds transmit_time(size_t bytes) const;
};

/// One sender's link: its queue of messages. Thread-safe (the protocol
/// actor's link is shared by the link stages of all its workers).
class link_queue {
public:
  explicit link_queue(link_spec spec = {}) : spec_(spec) {}
  const link_spec& spec() const { return spec_; }
  bool active() const { return spec_.active(); }
  /// Puts a message of `bytes` on the link now; returns the time from now
  /// until it arrives (at most max_injected_wait).
  std::chrono::nanoseconds send(size_t bytes);

private:
  link_spec spec_;
  std::mutex mutex_;
  std::chrono::steady_clock::time_point free_at_{};
};

/// Steps an actor runs after a delay (a message's time on a link): each
/// waits in a map for a timer message (tick_atom, id) that the actor sends
/// itself, so the wait is on the actor clock, never a sleep, and the step
/// runs in the actor's own context. The owner's behavior passes
/// (tick_atom, uint64_t id) to run(id). Not thread-safe: one per actor.
class delayed_steps {
public:
  /// Runs `step` now if `delay` <= 0, else when the timer for it arrives.
  template <class SelfPointer>
  void after(SelfPointer self, std::chrono::nanoseconds delay, std::function<void()> step) {
    if (delay.count() <= 0) {
      step();
      return;
    }
    self->delayed_send(self, delay, caf::tick_atom_v, due_.add(std::move(step)));
  }
  /// Runs the step of timer `id` (once; an unknown id is ignored).
  void run(uint64_t id) { due_.call(id); }

private:
  pending_calls<> due_;
};

/// A decorator with the worker interface that puts `worker` behind a link:
/// every request reaches it after `down`'s delay for the request's payload
/// (down: the requester's link, shared by every stage of that requester),
/// and every reply reaches the requester after the delay of the worker's
/// own link (`spec`). It lives and dies with its worker.
worker_actor spawn_link_stage(caf::actor_system& sys, worker_actor worker, link_spec spec,
                              std::shared_ptr<link_queue> down);

} // namespace chorus
