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
round_rule local_sgd_rule(const run_plan& plan, std::vector<int64_t> shard_sizes);

/// The plain mean of the replies' vectors (n floats each).
buffer mean_of(backend& be, const std::vector<round_reply>& replies, size_t n);

} // namespace chorus
