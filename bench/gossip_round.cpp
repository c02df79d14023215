// gossip_round: the cost of one gossip round as the graph grows.
//
// n = 16, 64, 256 peers in one process run gossip_sgd on a tiny model (64
// floats, a linear model on a small synthetic problem), so what is timed is
// the protocol: each peer asks its worker for a gradient, sends its model to
// its out-neighbours, waits for its in-neighbours and mixes. Reported per
// (topology, n): microseconds per round, per peer-round, and gossip messages
// per peer per round (the degree). The expectation: messages per peer grow
// with the degree (ring: 2, exp: log2 n), not with n; time per round grows
// with n * degree, since two cores serve every peer.
//
// Run: build/bench/gossip_round        (CHORUS_BENCH_QUICK=1 for a short run)
#include <algorithm>

#include "engines/topology.hpp"
#include "tools/experiment.hpp"
#include "bench/bench_util.hpp"

using namespace chorus;
using namespace chorus::bench;

int main() {
  const bool fast = quick();
  auto data = make_least_squares(8192, 256, 64, 0.1, 1);
  for (std::string topo : {"ring", "exp"}) {
    for (int n : {16, 64, 256}) {
      experiment_config cfg;
      cfg.algorithm = "gossip_sgd";
      cfg.workers = n;
      cfg.model = "linear";
      cfg.batch = 8;
      cfg.lr = 0.01;
      cfg.steps = fast ? 20 : std::max(20, 8000 / n);
      cfg.eval_every = cfg.steps;  // only at the start and the end
      cfg.progress = false;
      cfg.options["topology"] = topo;
      std::vector<double> per_round;
      run_summary last;
      for (int rep = 0; rep < (fast ? 1 : 3); ++rep) {
        auto r = run_experiment(cfg, data).summary;
        per_round.push_back((r.wall_s - r.eval_s) / static_cast<double>(r.steps));
        last = r;
      }
      auto t = make_topology(topo, n, weight_rule::uniform, 1);
      const double bytes_per =
        static_cast<double>(last.bytes_sent) / (static_cast<double>(n) * static_cast<double>(last.steps));
      const double message_bytes =
        static_cast<double>(buffer::from(std::vector<float>(64)).wire_bytes());
      double us = 1e6 * median(per_round);
      auto o = line("gossip_round");
      o.add("topology", topo)
        .add("workers", static_cast<int64_t>(n))
        .add("rounds", last.steps)
        .add("degree", static_cast<int64_t>(t.phases[0].max_degree()))
        // Measured: the bytes peers sent to neighbours, over one message's size.
        .add("messages_per_worker_per_round", bytes_per / message_bytes)
        .add("bytes_per_worker_per_round", bytes_per)
        .add("us_per_round", us)
        .add("us_per_worker_round", us / n);
      print(o);
    }
  }
  return 0;
}
