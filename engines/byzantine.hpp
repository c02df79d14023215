// Byzantine workers: attacks as values, and the actors that carry them out
// on the uplink between an honest worker and a protocol.
//
// An attack is a value (one registry, `chorus list` prints it): a function
// that forges the vector a Byzantine worker sends from its own honest
// update and, for the omniscient attacks, the honest updates of the same
// round. An "update" is what a protocol aggregates: a gradient (compute) or
// a model change x - w (local steps; the decorator sends w + forged).
//
// The graph (make_byzantine_graph wraps the workers of a run):
//
//   honest worker j --[tap j]--------------------------> protocol
//                        \ observe (rank, step, update: the same buffer handle)
//                         v
//                      adversary  <-- honest(step) --  [byzantine i] <-- worker i
//                                                       forges, sends on --> protocol
//
// - BYZANTINE DECORATOR: an actor with the worker's interface around an
//   honest worker: it forwards each request, then replaces the reply's
//   vector with the attack's (evaluate/apply/fetch pass through). The
//   worker stays honest code; the protocol sees a worker.
// - TAP: the honest workers' uplinks are observed by a colluding ADVERSARY
//   actor, the standard omniscient threat model (the attacker sees what the
//   honest workers send in the round it attacks). A tap forwards every
//   request unchanged and, on each reply, sends the adversary the reply's
//   buffer handle (no copy, nothing extra computed, the honest workers'
//   mini-batch streams untouched). Taps exist only when an omniscient attack
//   is in the run, so a run without one has no adversary at all.
// - ADVERSARY: keeps the latest update of every honest worker. A Byzantine
//   decorator asks it for the honest updates of step s; it answers once
//   every honest worker has reported an update at step >= s (in a
//   synchronous round: exactly that round's vectors; in async SGD: each
//   honest worker's next fresh gradient), or, after `wait`, with the latest
//   it has (an honest worker that died or was not sampled this round).
//   Nothing of the protocol's state is read: the adversary only sees the
//   messages on the honest uplinks, as a network eavesdropper would.
//
// labelflip is a data attack: the worker computes honestly on a copy of its
// shard whose labels are permuted (class c -> C-1-c; regression: y -> -y),
// built by flip_labels into the worker's config; its decorator forwards
// unchanged.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include <caf/actor_system.hpp>

#include "actors/interfaces.hpp"
#include "data/dataset.hpp"

namespace chorus {

/// What an attack forges from.
struct attack_input {
  buffer own;                   ///< the Byzantine worker's own honest update (host)
  std::vector<buffer> honest;   ///< omniscient attacks: the honest updates of the round (host)
  std::mt19937_64* rng = nullptr;
};

/// An attack as a value.
struct attack {
  std::string spec;          ///< as given, e.g. "scale:-4"
  bool omniscient = false;   ///< needs the honest updates (an adversary in the graph)
  bool data = false;         ///< a data attack (labelflip): the vector is left alone
  /// The vector to send instead of `in.own` (same length).
  std::function<buffer(const attack_input& in)> forge;
};

/// One registry entry.
struct attack_info {
  std::string name;   ///< what a spec starts with
  std::string usage;  ///< the spec with its parameters
  std::string help;   ///< one line
};

/// Every attack, in the order `chorus list` prints them.
const std::vector<attack_info>& attack_registry();

/// The attack `spec` for a run of n workers with f of them Byzantine (alie
/// takes its z from n and f). Throws std::invalid_argument on an unknown
/// name (listing the valid ones) or a bad parameter.
attack make_attack(const std::string& spec, size_t n, size_t f);

/// ALIE's z (Baruch et al. 2019): s = floor(n/2 + 1) - f workers must be
/// won over, z = Phi^{-1}((n - s) / n).
double alie_z(size_t n, size_t f);

/// A parsed --byzantine RANKS:ATTACK.
struct byzantine_plan {
  std::vector<int32_t> ranks;  ///< sorted, distinct
  attack atk;
  bool active() const { return !ranks.empty(); }
  bool is_byzantine(int32_t rank) const;
};

/// Parses "0,3:alie" for n workers ("" : none). Throws std::invalid_argument
/// for ranks out of range or repeated, no attack, or every worker Byzantine.
byzantine_plan parse_byzantine(const std::string& spec, int32_t workers);

/// labelflip's data: worker's shard of `data` as its own dataset, labels
/// permuted (class c -> C-1-c; regression y -> -y); its shard is then all
/// of it. Dense datasets only (throws std::invalid_argument otherwise).
dataset_ptr flip_labels(const dataset& data, const std::vector<int64_t>& shard);

/// The colluding adversary (see above).
using adversary_actor = caf::typed_actor<
  // A tapped honest worker's update: rank, step, the reply's vector, and
  // the weights it started from for local steps (empty for gradients).
  caf::reacts_to<observe_atom, int32_t, int64_t, buffer, buffer>,
  // The honest updates of step s, in rank order (see above for when).
  caf::replies_to<honest_atom, int64_t>::with<std::vector<buffer>>,
  // Its own timer: answer query `id` with what it has.
  caf::reacts_to<expire_atom, uint64_t>>;

/// Spawns the adversary for these honest ranks.
adversary_actor spawn_adversary(caf::actor_system& sys, std::vector<int32_t> honest,
                                std::chrono::milliseconds wait);

/// Wraps an honest worker: forwards everything, shows replies to `adv`.
worker_actor spawn_tap(caf::actor_system& sys, worker_actor worker, adversary_actor adv);

/// Wraps a worker with an attack; `adv` is needed by omniscient attacks only.
worker_actor spawn_byzantine(caf::actor_system& sys, worker_actor worker, attack atk,
                             adversary_actor adv, uint64_t seed);

/// What the runner wraps: every worker of `workers` (in rank order) is
/// replaced by its tap or its Byzantine decorator as `plan` says; the
/// adversary (if any) is returned for the graph's teardown.
adversary_actor wrap_byzantine(caf::actor_system& sys, std::vector<worker_actor>& workers,
                               const byzantine_plan& plan, uint64_t seed,
                               std::chrono::milliseconds wait);

} // namespace chorus
