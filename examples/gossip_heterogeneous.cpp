// gossip_heterogeneous: what plain gossip loses under skewed data, and what
// gradient tracking wins back.
//
// Eight workers on a ring, each with a Dirichlet(0.1) label-skewed shard of
// Fashion-MNIST (most workers see two or three classes). Plain DSGD pulls
// every replica toward its own shard's optimum between averages; gradient
// tracking (DIGing) carries an estimate of the global gradient along with the
// model and corrects that drift. Synchronous SGD, which averages every
// gradient exactly, is the reference.
//
// Run:    build/examples/gossip_heterogeneous [--epochs=E] [--out=runs]
// Prints: per protocol: rounds, MB sent, test loss/accuracy of the averaged
//         model, worst worker's accuracy, consensus distance.
#include <caf/all.hpp>

#include "examples/example_util.hpp"

using namespace chorus;
using namespace chorus::examples;

void caf_main(caf::actor_system&, const experiment_knobs& knobs) {
  print_row({"protocol", "rounds", "MB_sent", "test_loss", "test_acc", "worst_acc", "consensus"}, 20);
  for (std::string algo : {"gossip_sgd", "gradient_tracking", "sync_sgd"}) {
    auto cfg = knobs.base(3, 8);
    cfg.algorithm = algo;
    cfg.partition = "dirichlet:0.1";
    cfg.lr = 0.05;
    if (algo != "sync_sgd")
      cfg.options["topology"] = "ring";
    cfg.out_dir = knobs.out + "/heterogeneous/" + algo;
    auto r = run_experiment(cfg).summary;
    auto get = [&](const char* k) { return r.extra.count(k) ? fmt(r.extra.at(k)) : "-"; };
    print_row({algo, std::to_string(r.steps), fmt(r.bytes_sent / 1e6, "%.1f"), fmt(r.test_loss),
               fmt(r.test_acc), get("worst_worker_acc"), get("consensus_distance")},
              20);
  }
}

CAF_MAIN()
