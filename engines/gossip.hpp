// The gossip engine: runs every decentralized protocol (gossip_sgd,
// gradient_tracking, async_gossip in algorithms/) given its rule. This header
// is what a protocol's rule sees; engines/gossip_peer.hpp holds what the
// engine's own actors share.
//
// Shape of every run: one PEER actor per worker holds node i's model x_i and
// talks only to its own worker and to its graph neighbours; no central actor
// is in the data path. A COORDINATOR (the protocol_actor a spawn_* returns)
// spawns the peers, takes a small report from each after each of its rounds
// (or local steps), counts the budget, evaluates the average model x_bar and
// ends the run. It never sends weights to anyone, and it takes no part in
// the peers' rounds: reports carry buffer handles, so they cost no copy.
//
// Two kinds of peer run on the same coordinator:
//   synchronous   rounds: a gradient, one message to each out-neighbour of
//                 the round's W_k, a mix once the in-neighbours' messages are
//                 in (gossip_rule; engines/gossip_round_peer.cpp);
//   asynchronous  no rounds: a gradient, a local update, then a pairwise
//                 exchange with one neighbour (pairwise_rule;
//                 engines/gossip_async_peer.cpp).
//
// Flow control: a report is a request, and the coordinator answers it once
// it has counted the report (for a round: once every live peer has reported
// that round). A peer with `window` reports unanswered waits before its next
// round or step. The window is wider than the rounds neighbours can drift
// apart, so in steady state nobody waits; it bounds the models the
// coordinator holds (n * window) while it evaluates or lags, and keeps a
// coordinator starved by the scheduler from falling ever further behind.
//
// Lifetime: the coordinator monitors every peer and every worker; when it
// terminates, for whatever reason, it sends every peer an exit, so a run
// always ends with all its peers. A peer whose worker dies (or stops
// answering within plan.timeout) leaves; its neighbours see it go and mix
// without it from then on. When lost peers cut the graph (the union over
// phases of the edges between live peers) into several components, the run
// goes on, each part gossiping on its own, and the coordinator says so: a
// warning in the log naming the parts, and "components" in the metrics
// rows and the summary.
//
// Byzantine peers (run_context::byzantine, from --byzantine RANKS:ATTACK):
// peer i of RANKS runs the protocol honestly, worker and own model
// included, but every model it sends a neighbour (a round's message; in an
// exchange, what it sends and what it replies) is replaced by the attack's
// forgery of it (engines/byzantine.hpp: signflip -x, scale:K K x,
// gaussian:S noise, zero, nan, inf). One forgery per round goes to all its
// out-neighbours. labelflip stays a data attack (its worker trains on
// flipped labels; its models go out as they are). The omniscient attacks
// (alie, ipm, mimic) are refused: they forge from the honest vectors of a
// round, which no peer sees. With Byzantine peers the coordinator's x_bar,
// consensus distance and worst_worker_acc are over the honest peers only.
//
// Robust mixing is the protocol's rule (algorithms/gossip_sgd.cpp); the
// engine passes the rule every in-neighbour's message as it came, invalid
// ones included, and reports the counts the rule keeps in gossip_vars
// (rejected, clipped) with each report: the coordinator's metrics name
// them per peer (rejected_p<i>, clipped_p<i>) and in total.
//
// Not here: the mixing matrices (engines/topology.hpp), the protocols' update
// rules (algorithms/), compression.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "engines/protocol.hpp"
#include "engines/topology.hpp"

namespace chorus {

// -- measures and options -----------------------------------------------------------

/// Consensus distance mean_i ||x_i - x_bar||^2 with x_bar = mean_i x_i,
/// computed with `be`; writes x_bar to *mean when given. 0 for no vectors.
double consensus_distance(backend& be, const std::vector<buffer>& xs, buffer* mean = nullptr);

/// The graph a gossip run uses, from the plan's options "topology" (spec),
/// "weights" ("uniform" | "metropolis") and "seed" (for random graphs).
/// Throws std::invalid_argument.
topology read_topology(const run_plan& plan, int n);

/// Every node peer i ever exchanges with: its in- and out-neighbours over
/// all phases of `t`, sorted.
std::vector<int32_t> all_neighbours(const topology& t, int i);

/// Per rank: whether ctx.byzantine makes it a Byzantine peer (all false
/// when it is empty). Throws std::invalid_argument for a bad spec, and for
/// an omniscient attack (alie, ipm, mimic), which a gossip peer cannot
/// carry out.
std::vector<bool> byzantine_peers(const run_context& ctx);

/// The fewest inputs one peer's robust mix gets under `t`: 1 (its own
/// message) + its fewest in-neighbours in any phase, over all peers.
size_t fewest_mix_inputs(const topology& t);

/// Peer i's x_i^0: `given` when not empty (it must hold one vector of
/// ctx.initial's length per worker), else ctx.initial for every peer.
/// Throws std::invalid_argument on a length mismatch.
std::vector<buffer> initial_models(const run_context& ctx, std::vector<buffer> given);

// -- synchronous gossip (rounds) ----------------------------------------------------

/// A peer's variables in a synchronous gossip protocol.
struct gossip_vars {
  buffer x;       ///< the model x_i
  buffer y;       ///< gradient tracking: y_i, sent this round
  buffer y_mix;   ///< gradient tracking: sum_j w_ij y_j of the last round
  buffer g_prev;  ///< gradient tracking: the gradient of the last round
  int32_t rank = -1;  ///< the peer's rank (set by the engine)
  /// CHOCO: the public copies x_hat_j, by rank (the peer's own included).
  std::map<int32_t, buffer> hat;
  /// Robust mixing: in-neighbour messages the rule set aside so far
  /// (non-finite or of the wrong length).
  int64_t rejected = 0;
  /// Robust mixing: in-neighbour messages the rule gave less than their
  /// weight so far (clipped, or rejected by the aggregator's rule).
  int64_t clipped = 0;
  /// Lines for the run's log; the peer sends and clears them after each mix.
  std::vector<std::string> log;
};

/// One round of a synchronous gossip protocol at one peer, cut where the
/// network sits. The peer asks its worker for g = g_i(x_i); `prepare` turns
/// it into the message the peer sends its out-neighbours; once every live
/// in-neighbour's message of the round is in, `mix` writes the variables of
/// the next round. Both run inside the peer, with the peer's backend.
struct gossip_rule {
  /// Messages carry y besides x (for the byte count).
  bool sends_y = false;
  /// Rules whose messages are not the model (CHOCO sends an encoded
  /// difference): the wire bytes of one message to one neighbour, given
  /// x^0. Empty: wire_bytes of x (and y).
  std::function<int64_t(const buffer& x0)> message_bytes;
  std::function<peer_state(gossip_vars& v, backend& be, const gradient& g, int64_t round)> prepare;
  /// `in[0]` is the peer's own message, then its in-neighbours'; `w` holds
  /// the matching weights of row i of W (summing to 1; a dropped
  /// neighbour's weight is added to w[0]).
  std::function<void(gossip_vars& v, backend& be, const std::vector<const peer_state*>& in,
                     const std::vector<float>& w, const gradient& g)>
    mix;
};

/// A synchronous gossip run (no global barrier: each peer waits only for
/// its in-neighbours' messages of its round): reads topology, weights and
/// seed from the plan, spawns one peer per worker running `rule` and a
/// coordinator in rounds mode. A step of the run is one round. `initial`:
/// per-peer x_i^0 (see initial_models). Throws std::invalid_argument for
/// bad options.
protocol_actor spawn_synchronous_gossip(caf::actor_system& sys, run_context ctx, gossip_rule rule,
                                        std::vector<buffer> initial);

/// Only peer `rank` of that run, spawned here and reporting to
/// `coordinator` (the run's protocol actor in another process): what a node
/// spawns beside its worker (run_context::beside). ctx must describe
/// the same run (plan, w_0, one worker slot per rank; only `rank`'s is used).
caf::actor spawn_synchronous_gossip_peer(caf::actor_system& sys, run_context ctx, gossip_rule rule,
                                         std::vector<buffer> initial, int32_t rank,
                                         const caf::actor& coordinator);

// -- asynchronous gossip (pairwise exchanges) ----------------------------------------

/// An asynchronous pairwise protocol at one peer. The peer loops with no
/// rounds: g <- g_i(x_i) from its worker, x_i <- step(x_i, g), then, if it
/// has a live neighbour left, j <- pick(...) and one exchange with j: i sends
/// s = x_i, j sets x_j <- answer(x_j, s) and replies with its x_j from
/// before, and i sets x_i <- complete(x_i, s, x_j). Each of answer and
/// complete runs inside one message handler of its peer, so nothing else
/// touches that peer's model meanwhile; x_i may have changed between
/// sending s and complete (exchanges other peers started with i).
struct pairwise_rule {
  /// The local update after a gradient at x.
  std::function<buffer(backend& be, const buffer& x, const gradient& g)> step;
  /// Whom to exchange with: one of `live` (never empty: the peer's
  /// neighbours still answering, sorted), drawn with the peer's own
  /// generator (seeded from the plan's "seed" and the peer's rank).
  std::function<int32_t(const std::vector<int32_t>& live, std::mt19937_64& rng)> pick;
  /// The partner's new model, from its model and the initiator's s.
  std::function<buffer(backend& be, const buffer& mine, const buffer& theirs)> answer;
  /// The initiator's new model, from its model now, the s it sent and the
  /// partner's reply.
  std::function<buffer(backend& be, const buffer& mine, const buffer& sent, const buffer& theirs)>
    complete;
};

/// An asynchronous gossip run: reads the topology (its graph: in- and
/// out-neighbours over all phases) and seed from the plan, spawns one peer
/// per worker running `rule` and a coordinator in steps mode. A step of the
/// run is one local step of one peer; its bytes are one exchange (x both
/// ways). `initial`: as for spawn_synchronous_gossip. Throws
/// std::invalid_argument for bad options.
protocol_actor spawn_asynchronous_gossip(caf::actor_system& sys, run_context ctx, pairwise_rule rule,
                                         std::vector<buffer> initial);

/// Only peer `rank` of that run (as spawn_synchronous_gossip_peer).
caf::actor spawn_asynchronous_gossip_peer(caf::actor_system& sys, run_context ctx,
                                          pairwise_rule rule, std::vector<buffer> initial,
                                          int32_t rank, const caf::actor& coordinator);

} // namespace chorus
