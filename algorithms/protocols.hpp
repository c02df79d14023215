// Every protocol's entry point. Each is defined in its own file in this
// folder and listed by name in registry.cpp.
#pragma once

#include <caf/actor_system.hpp>

#include "engines/round_server.hpp"

namespace chorus {

/// sync_sgd: w+ = Prox(w - eta mean_i g_i) (sync_sgd.cpp).
protocol_actor spawn_sync_sgd(caf::actor_system& sys, run_context ctx);
/// sync_sgd_avg: w+ = mean_i Prox(w - eta g_i) (sync_sgd.cpp).
protocol_actor spawn_sync_sgd_avg(caf::actor_system& sys, run_context ctx);

/// async_sgd: w <- Prox(w - eta_tau g_i(w_{t-tau})) as each gradient arrives (async_sgd.cpp).
protocol_actor spawn_async_sgd(caf::actor_system& sys, run_context ctx);
/// local_sgd: tau local steps, then a shard-weighted model average (local_sgd.cpp).
protocol_actor spawn_local_sgd(caf::actor_system& sys, run_context ctx);
/// lazy_sgd: sync SGD where a worker skips uploads that carry little news (lazy_sgd.cpp).
protocol_actor spawn_lazy_sgd(caf::actor_system& sys, run_context ctx);
/// ri_sgd: local SGD over redundantly held shards; survives crashes (ri_sgd.cpp).
protocol_actor spawn_ri_sgd(caf::actor_system& sys, run_context ctx);
/// ri_sgd's data: every worker's base shard plus copies of round(mu (n-1))
/// other shards (option redundancy = mu), before the workers exist.
partition ri_sgd_shards(const partition& base, const run_plan& plan);

/// Refuse, before a run, options these protocols cannot run with (a robust
/// aggregator's f against the inputs per aggregation); throw std::invalid_argument.
void check_robust_round(const run_plan& plan, size_t workers);  // sync_sgd, sync_sgd_avg
void check_local_sgd(const run_plan& plan, size_t workers);
void check_async_sgd(const run_plan& plan, size_t workers);

/// The round rules behind them, for protocols that reuse or wrap them.
round_rule sync_sgd_rule(const run_plan& plan);
round_rule sync_sgd_avg_rule(const run_plan& plan);
/// Local SGD's rule (options tau, fraction, post_local); weights by shard size.
/// Its step-size schedule counts local steps: call use_local_step_clock on
/// the plan first.
round_rule local_sgd_rule(const run_plan& plan, std::vector<int64_t> shard_sizes);
/// Sets plan.clock so the schedule's t counts local steps (post_local
/// rounds of one step, then tau per round).
void use_local_step_clock(run_plan& plan);

/// Adds the metrics column grad_diversity to a round rule (Yin et al. 2018,
/// "Gradient Diversity"): Delta = sum_i ||u_i||^2 / ||sum_i u_i||^2 over the
/// round's replies, u_i the gradient (`model_changes` false) or the model
/// change x_i - w (true: local steps). Computed before rule.combine, so
/// with any combine (plain, robust); left out for a reduced reply (NCCL)
/// and when the sum is zero.
void add_grad_diversity(round_rule& rule, bool model_changes);

/// The mean of the replies' vectors (n floats each), weighted by their
/// samples (the plain mean when every reply has the same count).
buffer mean_of(backend& be, const std::vector<round_reply>& replies, size_t n);
/// Whether every reply processed the same number of samples.
bool same_samples(const std::vector<round_reply>& replies);
/// scale * n_i / sum_j n_j per reply (1/m each when no reply has samples).
std::vector<float> sample_weights(const std::vector<round_reply>& replies, float scale);

} // namespace chorus
