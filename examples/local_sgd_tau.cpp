// local_sgd_tau: communication against accuracy for local SGD.
//
// Four workers train the MLP on Fashion-MNIST with local SGD, averaging
// every tau local steps, tau in {1, 4, 16, 64}, on an IID split and on a
// Dirichlet(0.1) label-skewed split, all with the same sample budget. Larger
// tau divides rounds and bytes by tau; under heterogeneity the local models
// drift apart between averages, and the residual error shows.
//
// Run:    build/examples/local_sgd_tau [--epochs=E] [--out=runs]
// Prints: per (partition, tau): rounds, MB sent, final test accuracy and loss;
//         accuracy against rounds and bytes is in OUT/local_sgd/<split>_tau<T>/metrics.jsonl.
#include <caf/all.hpp>

#include "examples/example_util.hpp"

using namespace chorus;
using namespace chorus::examples;

void caf_main(caf::actor_system&, const experiment_knobs& knobs) {
  print_row({"partition", "tau", "rounds", "MB_sent", "test_acc", "test_loss"});
  for (std::string split : {"iid", "dirichlet:0.1"}) {
    for (int tau : {1, 4, 16, 64}) {
      auto cfg = knobs.base(3, 4);
      cfg.algorithm = "local_sgd";
      cfg.partition = split;
      cfg.lr = 0.05;
      cfg.options["tau"] = std::to_string(tau);
      cfg.out_dir = knobs.out + "/local_sgd/" + (split == "iid" ? "iid" : "dirichlet0.1") + "_tau"
                    + std::to_string(tau);
      auto r = run_experiment(cfg).summary;
      print_row({split, std::to_string(tau), std::to_string(r.steps), fmt(r.bytes_sent / 1e6, "%.1f"),
                 fmt(r.test_acc), fmt(r.test_loss)});
    }
  }
}

CAF_MAIN()
