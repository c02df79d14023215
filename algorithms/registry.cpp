#include "algorithms/registry.hpp"

#include <stdexcept>

#include "algorithms/gossip.hpp"
#include "algorithms/leader.hpp"
#include "algorithms/protocols.hpp"

namespace chorus {

namespace {

// RI-SGD: every worker also holds copies of other workers' shards.
partition redundant_shards(const partition& base, const run_plan& plan, run_context& ctx) {
  double mu = plan.number("redundancy", 0.25);
  auto held = std::make_shared<redundant_partition>(make_redundant(base, mu, plan.number("seed", 1)));
  ctx.redundancy = held;
  return held->held;
}

} // namespace

const std::vector<algorithm_info>& algorithm_registry() {
  static const std::vector<algorithm_info> table = {
    {"sync_sgd", "synchronous parallel SGD, server-side prox: w+ = Prox(w - eta mean_i g_i)",
     "one round: every worker computes one mini-batch gradient", spawn_sync_sgd, {},
     {"allreduce"}},
    {"sync_sgd_avg", "synchronous parallel SGD, averaged prox: w+ = mean_i Prox(w - eta g_i)",
     "one round: every worker takes one proximal step", spawn_sync_sgd_avg, {}, {"allreduce"}},
    {"async_sgd", "asynchronous delayed-gradient SGD: w <- Prox(w - eta_tau g_i(w_{t-tau})) per arrival",
     "one applied gradient (one worker's mini-batch)", spawn_async_sgd, {},
     {"staleness_bound", "staleness_lr"}},
    {"local_sgd", "local SGD / FedAvg: tau local steps, then w+ = sum_i n_i/n x_i",
     "one communication round (tau local steps per worker)", spawn_local_sgd, {},
     {"tau", "fraction", "post_local"}},
    {"lazy_sgd", "event-triggered sync SGD (LAG): upload g_i only if it changed enough",
     "one round: every worker computes a gradient, some skip the upload", spawn_lazy_sgd, {},
     {"lazy_threshold"}},
    {"ri_sgd", "redundancy-infused local SGD: local_sgd over shards held with redundancy mu",
     "one communication round (tau local steps per worker)", spawn_ri_sgd, redundant_shards,
     {"tau", "redundancy", "fraction"}},
    {"gossip_sgd",
     "decentralized SGD (DSGD): local step and x_i <- sum_j w_ij x_j over graph neighbours "
     "(--mix-order atc | cta)",
     "one round: every node takes one gradient step and mixes with its in-neighbours",
     spawn_gossip_sgd, {}, {"topology", "weights", "mix_order"}},
    {"async_gossip",
     "asynchronous gossip SGD (AD-PSGD): after each local step, average with one random neighbour",
     "one local step of one node (with its pairwise average)", spawn_async_gossip, {},
     {"topology", "weights"}},
    {"gradient_tracking",
     "gradient tracking (DIGing): x_i <- sum_j w_ij x_j - eta y_i, y_i tracks the mean gradient",
     "one round: every node takes one tracked step and mixes x and y with its in-neighbours",
     spawn_gradient_tracking, {}, {"topology", "weights"}},
    {"leader_sgd",
     "leader SGD (LSGD): x_i <- Prox(x_i - eta (g_i + lambda (x_i - x_leader))), leader = lowest "
     "recent loss; groups > 1: also pulled to the global leader (lambda_global)",
     "sync: one round (every live worker takes one step); async: one applied update",
     spawn_leader_sgd, {}, {"lambda", "tau", "groups", "lambda_global", "async"}},
    {"easgd",
     "elastic averaging SGD: local steps; every tau steps x_i <- x_i - alpha (x_i - x~), "
     "x~ <- x~ + alpha sum_i (x_i - x~)",
     "sync: one round (every live worker takes one step); async: one applied update", spawn_easgd,
     {}, {"alpha", "tau", "async"}},
  };
  return table;
}

const algorithm_info& find_algorithm(const std::string& name) {
  for (auto& entry : algorithm_registry())
    if (entry.name == name)
      return entry;
  std::string valid;
  for (auto& entry : algorithm_registry())
    valid += (valid.empty() ? "" : ", ") + entry.name;
  throw std::invalid_argument("unknown algorithm '" + name + "'; valid algorithms: " + valid);
}

} // namespace chorus
