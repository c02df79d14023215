// A worker in another process, seen through a local stand-in.
//
// CAF answers a request to an actor on a node that died only when the
// request's own timeout expires (FACTS.md §2: a killed peer's pending
// requests wait out their timeout, however soon the connection dropped).
// Protocols wait plan.timeout for a worker reply, so a killed node would
// stall every protocol for a full timeout, and one whose protocol waits with
// no timeout at all would never learn it. The stand-in closes that gap: it
// has the worker's interface, forwards each request to the remote worker
// (payloads by handle: nothing is copied here), monitors it, and when the
// monitor reports it gone (CAF notices a closed connection within
// milliseconds, a silent one after the middleman's connection timeout),
// fails every pending request with errc::worker_lost and terminates with
// that error, so the protocol drops the worker exactly as when a local one
// crashes. When the stand-in ends, for whatever reason, it sends the remote
// worker an exit.
//
// It also counts payload bytes each way, per link (the node lines of a run's
// summary).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include <caf/actor_system.hpp>

#include "actors/interfaces.hpp"

namespace chorus {

/// Payload bytes that crossed one link (shared by the stand-ins of the
/// workers of one node).
struct link_counters {
  std::atomic<int64_t> sent{0};      ///< to the remote side
  std::atomic<int64_t> received{0};  ///< from it
};

/// Spawns the stand-in for `remote`; `where` names its node in errors and
/// logs ("worker 3 on node 1 (host:pid)").
worker_actor spawn_remote_worker(caf::actor_system& sys, worker_actor remote, std::string where,
                                 std::shared_ptr<link_counters> link);

} // namespace chorus
