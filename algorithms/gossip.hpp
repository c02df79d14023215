// The decentralized (gossip) protocols' entry points. Each file holds one
// protocol's rule; the gossip engine (engines/gossip.hpp) runs them:
//   gossip_sgd         DSGD, adapt-then-combine or combine-then-adapt (gossip_sgd.cpp)
//   async_gossip       AD-PSGD-like asynchronous pairwise averaging (async_gossip.cpp)
//   gradient_tracking  DIGing / gradient tracking (gradient_tracking.cpp)
//   choco_gossip       CHOCO-SGD: gossip of compressed differences (choco_gossip.cpp)
//   allreduce_sgd      sync SGD by an all-gather of gradients among the peers (allreduce_sgd.cpp)
#pragma once

#include <vector>

#include <caf/all.hpp>

#include "engines/protocol.hpp"

namespace chorus {

/// gossip_sgd (DSGD): a local step, then x_i <- sum_j w_ij x_j over
/// in-neighbours (or a robust mix of them: algorithms/robust_gossip.hpp).
/// Options: topology, weights, mix_order (atc | cta), aggregator, pre, f, seed.
/// Throws std::invalid_argument for a bad option (e.g. an unknown topology).
protocol_actor spawn_gossip_sgd(caf::actor_system& sys, run_context ctx);
/// gossip_sgd's check before a run (registry): its robust mix (aggregator,
/// pre, f) against the fewest inputs a peer gets on the plan's topology.
/// Throws std::invalid_argument.
void check_gossip_sgd(const run_plan& plan, size_t workers);
/// Only its peer `rank`, reporting to `coordinator` (registry's spawn_peer).
caf::actor spawn_gossip_sgd_peer(caf::actor_system& sys, run_context ctx, int32_t rank,
                                 const caf::actor& coordinator);

/// allreduce_sgd: every peer all-gathers the round's gradients and takes
/// sync_sgd's step, w+ = Prox(w - eta sum_i n_i g_i / sum_j n_j) with the
/// gradients in rank order: the same floats as sync_sgd. No options.
protocol_actor spawn_allreduce_sgd(caf::actor_system& sys, run_context ctx);
/// Only its peer `rank`, reporting to `coordinator` (registry's spawn_peer).
caf::actor spawn_allreduce_sgd_peer(caf::actor_system& sys, run_context ctx, int32_t rank,
                                    const caf::actor& coordinator);

/// gossip_sgd with peer i starting from initial[i] instead of ctx.initial
/// (consensus studies and tests; empty: every peer starts at ctx.initial).
protocol_actor spawn_gossip_sgd_from(caf::actor_system& sys, run_context ctx,
                                     std::vector<buffer> initial);

/// async_gossip: after each local step a peer averages its model with one
/// random neighbour, x_i, x_j <- (x_i + x_j) / 2. Options: topology,
/// weights (only the graph's edges matter), seed.
protocol_actor spawn_async_gossip(caf::actor_system& sys, run_context ctx);
/// Only its peer `rank`, reporting to `coordinator` (registry's spawn_peer).
caf::actor spawn_async_gossip_peer(caf::actor_system& sys, run_context ctx, int32_t rank,
                                   const caf::actor& coordinator);

/// async_gossip with per-peer initial models (see spawn_gossip_sgd_from).
protocol_actor spawn_async_gossip_from(caf::actor_system& sys, run_context ctx,
                                       std::vector<buffer> initial);

/// gradient_tracking (DIGing): x_i <- sum_j w_ij x_j - eta y_i, with y_i
/// tracking the network's mean gradient. Options: topology, weights, seed.
/// Throws std::invalid_argument for a regularizer (no prox step here).
protocol_actor spawn_gradient_tracking(caf::actor_system& sys, run_context ctx);
/// Only its peer `rank`, reporting to `coordinator` (registry's spawn_peer).
caf::actor spawn_gradient_tracking_peer(caf::actor_system& sys, run_context ctx, int32_t rank,
                                        const caf::actor& coordinator);

/// choco_gossip (CHOCO-SGD): DSGD whose peers gossip compressed differences
/// q_i = C(x_i - x_hat_i) to public copies x_hat (algorithms/choco_gossip.cpp).
/// Options: compress, gamma, topology (static graphs only), weights, seed.
/// Throws std::invalid_argument for a bad option.
protocol_actor spawn_choco_gossip(caf::actor_system& sys, run_context ctx);
/// Only its peer `rank`, reporting to `coordinator` (registry's spawn_peer).
caf::actor spawn_choco_gossip_peer(caf::actor_system& sys, run_context ctx, int32_t rank,
                                   const caf::actor& coordinator);
/// The registry's check of a completed choco_gossip plan for `workers`
/// workers: the compressor, gamma and a static topology.
void check_choco_gossip(const run_plan& plan, size_t workers);

/// gradient_tracking with per-peer initial models (see spawn_gossip_sgd_from).
protocol_actor spawn_gradient_tracking_from(caf::actor_system& sys, run_context ctx,
                                            std::vector<buffer> initial);

} // namespace chorus
