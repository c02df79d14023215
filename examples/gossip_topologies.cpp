// gossip_topologies: how the graph sets the speed of decentralized SGD.
//
// Sixteen workers run gossip SGD (DSGD) on Fashion-MNIST over four graphs:
// ring (degree 2, spectral gap 0.05), static exponential (degree 4, gap 0.4),
// one-peer exponential (degree 1, time-varying, exact average every 4 rounds)
// and complete (degree 15, gap 1). Each round a worker takes a local step and
// averages with its neighbours; the consensus distance mean_i ||x_i - x_bar||^2
// says how far the replicas are apart, the bytes what the averaging cost.
//
// Run:    build/examples/gossip_topologies [--epochs=E] [--model=SPEC] [--out=runs]
// Prints: per topology: spectral gap, rounds, MB sent, consensus distance,
//         test loss and accuracy of the averaged model; per-round curves in
//         OUT/gossip/<topology>/metrics.jsonl (consensus_distance, bytes_sent).
#include <caf/all.hpp>

#include "engines/topology.hpp"
#include "examples/example_util.hpp"

using namespace chorus;
using namespace chorus::examples;

void caf_main(caf::actor_system&, const experiment_knobs& knobs) {
  print_row({"topology", "gap", "rounds", "MB_sent", "consensus", "test_loss", "test_acc"});
  for (std::string topo : {"ring", "exp", "onepeer-exp", "complete"}) {
    auto cfg = knobs.base(2, 16);
    cfg.algorithm = "gossip_sgd";
    cfg.lr = 0.05;
    cfg.batch = 32;
    cfg.options["topology"] = topo;
    cfg.out_dir = knobs.out + "/gossip/" + topo;
    auto r = run_experiment(cfg).summary;
    double gap = spectral_gap(make_topology(topo, cfg.workers, weight_rule::uniform, cfg.seed));
    print_row({topo, fmt(gap, "%.3f"), std::to_string(r.steps), fmt(r.bytes_sent / 1e6, "%.1f"),
               r.extra.count("consensus_distance") ? fmt(r.extra.at("consensus_distance")) : "-",
               fmt(r.test_loss), fmt(r.test_acc)});
  }
}

CAF_MAIN()
