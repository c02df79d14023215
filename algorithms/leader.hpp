// Two protocols over per-worker replicas, run by the replica engine
// (engines/replicas.hpp): leader SGD (LSGD, with groups; leader_sgd.cpp) and
// its baseline, elastic averaging SGD (EASGD; easgd.cpp). In both, every
// worker i trains its own model x_i and is pulled toward a shared point: the
// leader's model (LSGD) or a centre variable (EASGD).
//
// This header holds their entry points and the pure pieces of their math
// (elections and the pulled and elastic steps), declared here so they can be
// tested on their own; each is defined in its protocol's file.
//
// Not here: compression of the exchanges.
#pragma once

#include <utility>
#include <vector>

#include <caf/actor_system.hpp>

#include "engines/protocol.hpp"

namespace chorus {

// -- entry points ---------------------------------------------------------------

/// leader_sgd: x_i <- Prox(x_i - eta (g_i + lambda (x_i - x_leader))), the
/// leader re-elected by lowest recent loss (leader_sgd.cpp). Options: lambda,
/// tau, groups, lambda_global, async. Throws std::invalid_argument for a bad
/// option value before any actor exists.
protocol_actor spawn_leader_sgd(caf::actor_system& sys, run_context ctx);

/// easgd: local SGD steps, and every tau steps the elastic exchange
/// x_i <- x_i - alpha (x_i - x~), x~ <- x~ + alpha sum_i (x_i - x~)
/// (easgd.cpp). Options: alpha, tau, async. Throws std::invalid_argument
/// for a bad option value before any actor exists.
protocol_actor spawn_easgd(caf::actor_system& sys, run_context ctx);

/// The agent that holds x_i beside worker `rank` for a leader_sgd (or easgd)
/// engine in another process (engines/replicas.hpp; the registry's
/// spawn_agent). ctx.plan must be complete.
caf::actor spawn_leader_sgd_agent(caf::actor_system& sys, run_context ctx, int32_t rank,
                                  const caf::actor& engine);
caf::actor spawn_easgd_agent(caf::actor_system& sys, run_context ctx, int32_t rank,
                             const caf::actor& engine);

// -- leader SGD's pure pieces (leader_sgd.cpp) ------------------------------------

/// The rank of the alive worker with the lowest recent loss (NaN counts as
/// +infinity); ties go to the lowest rank; -1 when no worker is alive.
int select_leader(const std::vector<double>& recent_losses, const std::vector<bool>& alive);

/// The group of worker `rank` when `workers` workers form `groups` groups of
/// contiguous ranks: rank * groups / workers. Group sizes differ by at most
/// one and none is empty when 1 <= groups <= workers; neighbours in rank
/// (often neighbours in a machine) share a group.
int group_of(int rank, int workers, int groups);

/// Each group's leader: select_leader restricted to the group's members
/// (-1 for a group with no alive member).
std::vector<int> select_group_leaders(const std::vector<double>& recent_losses,
                                      const std::vector<bool>& alive, int groups);

/// out <- x - eta (g + sum_k lambda_k (x - y_k)), in one pass over memory:
/// an SGD step pulled toward the points y_k. `out` must not overlap the inputs.
void pulled_sgd_step(backend& be, float eta, cview g, cview x,
                     const std::vector<std::pair<float, cview>>& pulls, view out);

/// Multi-leader step:
///   out <- x - eta (g + lambda_local (x - x_local_leader)
///                     + lambda_global (x - x_global_leader)).
/// `out` must not overlap the inputs.
void multi_leader_step(backend& be, float eta, float lambda_local, float lambda_global, cview g,
                       cview x_local_leader, cview x_global_leader, cview x, view out);

// -- EASGD's pure pieces (easgd.cpp) ---------------------------------------------

/// out <- x - alpha (x - target): one side of an elastic exchange (a worker
/// moving toward the centre, or the asynchronous centre toward one worker).
void elastic_move(backend& be, float alpha, cview x, cview target, view out);

/// out <- centre + alpha sum_k (xs_k - centre): the synchronous centre update.
void elastic_center(backend& be, float alpha, cview centre, const std::vector<cview>& xs,
                    view out);

} // namespace chorus
