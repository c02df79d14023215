// RI-SGD: redundancy-infused local SGD (Haddadpour et al., ICML 2019).
//
// The update is local SGD's (tau local steps, then averaging); what differs
// is the data: with redundancy mu every worker also holds copies of r =
// round(mu (n - 1)) other workers' shards (data/redundant.cpp, cyclic
// replication). Two things follow. The local models drift less, because
// each one sees a larger, more representative share of the data. And when
// workers crash, the survivors still hold every sample as long as no r + 1
// cyclically consecutive workers are gone: the round server drops the dead
// and goes on, and this file reports the survivors' coverage in every row.
//
// Options: tau, fraction, post_local, compress, compress_down, error_feedback,
// allow_biased (as local_sgd: error-compensated double compression), redundancy (mu). The
// data side is ri_sgd_shards below, the registry entry's `reshard` hook: the
// runner calls it on the base partition before the workers exist.
#include <algorithm>

#include "algorithms/compressed_link.hpp"
#include "algorithms/protocols.hpp"
#include "algorithms/registry.hpp"

namespace chorus {

partition ri_sgd_shards(const partition& base, const run_plan& plan) {
  return make_redundant(base, plan.number("redundancy"),
                        static_cast<uint64_t>(plan.number("seed")))
    .held;
}

protocol_actor spawn_ri_sgd(caf::actor_system& sys, run_context ctx) {
  complete_options(find_algorithm("ri_sgd"), ctx.plan);
  use_local_step_clock(ctx.plan);  // the schedule counts local steps, as local_sgd
  auto rule = local_sgd_rule(ctx.plan, ctx.shard_sizes);
  // Coverage of the training set by the live workers, from the held shards.
  if (ctx.shards) {
    auto held = std::make_shared<redundant_partition>();
    held->held = *ctx.shards;
    held->mu = ctx.plan.number("redundancy");
    held->copies = redundant_copies(static_cast<int>(ctx.workers.size()), held->mu);
    auto live_now = std::make_shared<std::vector<size_t>>();
    auto select = rule.select;
    rule.select = [select, live_now](const std::vector<size_t>& live, int64_t round) {
      *live_now = live;
      return select ? select(live, round) : live;
    };
    auto base_metrics = rule.metrics;
    const auto n = ctx.workers.size();
    const auto train = ctx.plan.train_size;
    rule.metrics = [base_metrics, live_now, held, n, train] {
      auto m = base_metrics ? base_metrics() : std::map<std::string, double>{};
      std::vector<int> crashed;  // before the first round nobody has crashed
      if (!live_now->empty())
        for (size_t i = 0; i < n; ++i)
          if (std::find(live_now->begin(), live_now->end(), i) == live_now->end())
            crashed.push_back(static_cast<int>(i));
      m["coverage"] = coverage(*held, crashed, train);
      m["redundant_copies"] = held->copies;
      return m;
    };
  }
  // Yin et al.'s gradient diversity over the model changes x_i - w, the
  // mechanism by which the redundant shards help (grad_diversity.cpp).
  add_grad_diversity(rule, true);
  // --compress / --compress-down: double compression, as local_sgd.cpp.
  install_uplink_compression(sys, ctx, rule, read_uplink_compression(ctx.plan));
  return spawn_round_server(sys, std::move(ctx), std::move(rule));
}

} // namespace chorus
