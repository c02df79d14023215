// leader_vs_easgd: pulling replicas toward a leader, toward a centre, or
// averaging them.
//
// Eight workers train the MLP on Fashion-MNIST with
//   leader_sgd    every worker is pulled toward the best-loss worker (LSGD)
//   multi-leader  two groups of four: pulled toward the group's leader and the
//                 global leader
//   easgd         elastic averaging toward a centre variable (the baseline)
//   sync_sgd      exact gradient averaging every step (the reference)
// and reports accuracy against wall time and against bytes sent. LSGD and
// EASGD communicate at the same period (tau 8) for the same budget, so the
// comparison is at equal rounds; EASGD's exchange moves two models per worker
// where LSGD broadcasts one leader, so their bytes differ
// (experiments/seed003_leader_easgd.sh: the same over 3 seeds and two taus).
//
// Run:    build/examples/leader_vs_easgd [--epochs=E] [--out=runs]
// Prints: per protocol: wall time, MB sent, test accuracy, leader changes;
//         curves in OUT/leader/<protocol>/metrics.jsonl.
#include <caf/all.hpp>

#include "examples/example_util.hpp"

using namespace chorus;
using namespace chorus::examples;

void caf_main(caf::actor_system&, const experiment_knobs& knobs) {
  struct variant {
    std::string name, algorithm;
    std::map<std::string, std::string> options;
  };
  std::vector<variant> variants = {
    {"leader_sgd", "leader_sgd", {{"lambda", "0.1"}, {"tau", "8"}}},
    {"multi_leader", "leader_sgd", {{"lambda", "0.1"}, {"tau", "8"}, {"groups", "2"}, {"lambda_global", "0.05"}}},
    {"easgd", "easgd", {{"alpha", "0.1"}, {"tau", "8"}}},
    {"sync_sgd", "sync_sgd", {}},
  };
  print_row({"protocol", "wall_s", "MB_sent", "test_loss", "test_acc", "leader_changes"});
  for (auto& v : variants) {
    auto cfg = knobs.base(3, 8);
    cfg.algorithm = v.algorithm;
    cfg.options = v.options;
    cfg.lr = 0.05;
    cfg.out_dir = knobs.out + "/leader/" + v.name;
    auto r = run_experiment(cfg).summary;
    print_row({v.name, fmt(r.wall_s), fmt(r.bytes_sent / 1e6, "%.1f"), fmt(r.test_loss),
               fmt(r.test_acc),
               r.extra.count("leader_changes") ? fmt(r.extra.at("leader_changes")) : "-"});
  }
}

CAF_MAIN()
