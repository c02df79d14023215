// An NCCL group as actors: one rank actor per GPU, each owning an nccl_comm,
// and a front that the rest of Chorus talks to.
//
// The ranks are spawned DETACHED: they block in ncclCommInitRank (until
// every rank has joined) and in stream waits, and a blocked actor on one of
// CAF's scheduler threads would stall every actor scheduled behind it. The
// front never blocks and runs on the scheduler.
//
// Forming. Rank 0 makes the unique id as soon as it starts and sends it to
// the other ranks in a (join_atom, nccl_unique_id) message; each rank then
// builds its nccl_comm. The id is a plain serializable payload, so a rank
// can as well live in another process: actors/nccl_nodes.hpp spreads one
// rank per worker over node processes (spawn_nccl_rank below). The front asks every rank whether
// it joined (ready_atom) and holds requests until all have.
//
// Order. NCCL needs every rank to issue the same collectives in the same
// order. The front is the one sender of all-reduce requests to the ranks,
// and CAF delivers the messages of one sender to one receiver in order, so
// every rank sees the same sequence.
//
// Errors are caf::error replies, never crashes or hangs: a rank that cannot
// join or whose collective fails (no device, NCCL or CUDA error, a peer that
// does not show up within the timeout) replies with why; a rank that dies
// is noticed by the front (worker_lost). Either breaks the group: the front
// raises the cancel flag, so ranks waiting in NCCL for the broken peer give
// up at once, stops the ranks, and answers every pending and later request
// with the error.
//
// Lifetime. spawn_nccl_group returns an owning handle; when its last copy is
// gone the group shuts down (cancel flag, then an exit to every actor of the
// group), so an actor system never waits at shutdown for a group nobody
// holds, even one whose ranks are blocked in NCCL.
#pragma once

#include <chrono>
#include <memory>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/expected.hpp>

#include "actors/interfaces.hpp"
#include "gpu/assert.hpp"
#include "gpu/nccl_comm.hpp"

namespace chorus {

/// How an NCCL group waits.
struct nccl_group_options {
  /// Longest wait on the other ranks in one NCCL call (joining, an
  /// all-reduce); past it the group breaks with a timeout error.
  std::chrono::milliseconds timeout{std::chrono::minutes(2)};
};

/// An owning handle to an NCCL group. Copies share the group; when the last
/// copy is destroyed (or reset) the group shuts down.
class nccl_group {
public:
  nccl_group() = default;

  /// The front: ready, reduce (the mean of any set of buffers) and
  /// per-rank all-reduce requests.
  const nccl_group_actor& actor() const;
  /// The rank actors, rank i on devices()[i]. Requests sent to them
  /// directly must come from one actor only (see all_reduce_each).
  const std::vector<nccl_rank_actor>& ranks() const;
  /// The GPU of each rank.
  const std::vector<int>& devices() const;

  /// False for a default-constructed or reset handle.
  explicit operator bool() const { return shared_ != nullptr; }
  /// Drops this handle's share (the group shuts down if it was the last).
  void reset() { shared_.reset(); }

private:
  struct shared;  // the handles and the cancel flag (nccl_group.cpp)
  friend nccl_group spawn_nccl_group(caf::actor_system&, std::vector<int>, nccl_group_options);
  explicit nccl_group(std::shared_ptr<const shared> s) : shared_(std::move(s)) {}
  std::shared_ptr<const shared> shared_;
};

/// Spawns an NCCL group with one rank per entry of `devices` (rank i on
/// devices[i]) and returns at once; the communicator forms in the
/// background (ask the front with ready_atom). Throws std::invalid_argument
/// for an empty list, a negative index or a device listed twice (NCCL allows
/// one rank per GPU in a communicator). A missing GPU or a build without
/// CUDA is not an exception here: the front answers with the error.
nccl_group spawn_nccl_group(caf::actor_system& sys, std::vector<int> devices,
                            nccl_group_options opts = {});

/// Spawns one detached rank actor, `rank` of `nranks` on GPU `device`, that
/// waits for the unique id in a (join_atom, nccl_unique_id) message from
/// whoever made it (a rank of a group spread over processes: the id comes
/// from another process, actors/nccl_nodes.hpp). Throws
/// std::invalid_argument for a rank outside [0, nranks) or a negative device.
/// The caller ends it (an exit; raise wait.cancel first if it may be blocked
/// in NCCL).
nccl_rank_actor spawn_nccl_rank(caf::actor_system& sys, int rank, int nranks, int device,
                                nccl_wait wait);

/// Sends inputs[i] (a buffer or a reduce_share) to ranks[i] as one
/// all-reduce request each, and calls `done` exactly once with the N results
/// in rank order, or with the first error. `self` is an event-based actor
/// (typed or not); `done` runs in it. Every rank must get the same sequence
/// of requests: send all of a group's requests from one actor.
template <class Self, class Input, class Done>
void all_reduce_each(Self self, const std::vector<nccl_rank_actor>& ranks,
                     std::vector<Input> inputs, std::chrono::milliseconds timeout, Done done) {
  CHORUS_ASSERT(inputs.size() == ranks.size() && !ranks.empty(),
                "all_reduce_each: one input per rank");
  struct collector {
    std::vector<buffer> results;
    size_t left;
    bool finished = false;
    Done done;
  };
  auto c = std::make_shared<collector>(
    collector{std::vector<buffer>(ranks.size()), ranks.size(), false, std::move(done)});
  for (size_t i = 0; i < ranks.size(); ++i)
    self->request(ranks[i], timeout, all_reduce_atom_v, std::move(inputs[i]))
      .then(
        [c, i](buffer& result) {
          if (c->finished)
            return;
          c->results[i] = std::move(result);
          if (--c->left == 0) {
            c->finished = true;
            c->done(caf::expected<std::vector<buffer>>{std::move(c->results)});
          }
        },
        [c](caf::error& err) {
          if (c->finished)
            return;
          c->finished = true;
          c->done(caf::expected<std::vector<buffer>>{std::move(err)});
        });
}

} // namespace chorus
