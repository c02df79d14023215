// Every protocol's entry point. Each is defined in its own file in this
// folder and listed by name in registry.cpp.
#pragma once

#include <caf/actor_system.hpp>

#include "actors/server.hpp"

namespace chorus {

/// sync_sgd: w+ = Prox(w - eta mean_i g_i) (sync_sgd.cpp).
protocol_actor spawn_sync_sgd(caf::actor_system& sys, run_context ctx);
/// sync_sgd_avg: w+ = mean_i Prox(w - eta g_i) (sync_sgd.cpp).
protocol_actor spawn_sync_sgd_avg(caf::actor_system& sys, run_context ctx);

/// The round rules behind them, for protocols that reuse or wrap them.
round_rule sync_sgd_rule();
round_rule sync_sgd_avg_rule();

} // namespace chorus
