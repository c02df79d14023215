// ri_sgd_crash: redundancy against local SGD, and what a crash costs.
//
// Four workers, tau = 8, on a Dirichlet(0.1) label-skewed split (where each
// worker's own shard is least representative). local_sgd trains on the
// disjoint shards; ri_sgd with redundancy mu = 1/3 gives every worker one
// other worker's shard as well (data/redundant.cpp). Then both run again
// with worker 1 crashing halfway: local_sgd loses that worker's data for the
// rest of the run, ri_sgd's survivors still hold all of it (coverage 1).
//
// Run:    build/examples/ri_sgd_crash [--epochs=E] [--out=runs]
// Prints: per run: rounds, final accuracy, workers lost, data coverage;
//         accuracy against rounds in OUT/ri_sgd/<run>/metrics.jsonl.
#include <caf/all.hpp>

#include "examples/example_util.hpp"

using namespace chorus;
using namespace chorus::examples;

void caf_main(caf::actor_system&, const experiment_knobs& knobs) {
  print_row({"run", "rounds", "test_acc", "test_loss", "lost", "coverage"}, 22);
  for (bool crash : {false, true}) {
    for (std::string algo : {"local_sgd", "ri_sgd"}) {
      auto cfg = knobs.base(4, 4);
      cfg.algorithm = algo;
      cfg.partition = "dirichlet:0.1";
      cfg.lr = 0.05;
      cfg.options["tau"] = "8";
      if (algo == "ri_sgd")
        cfg.options["redundancy"] = "0.3334";
      if (crash) {
        // Halfway through the rounds: samples / (workers * tau * batch) / 2.
        auto train = load_dataset(cfg.dataset, {}).train->size();
        auto rounds = static_cast<int64_t>(cfg.epochs * train / (cfg.workers * 8.0 * cfg.batch));
        cfg.crash = "1:" + std::to_string(rounds / 2);
      }
      std::string name = algo + (crash ? "_crash" : "");
      cfg.out_dir = knobs.out + "/ri_sgd/" + name;
      auto r = run_experiment(cfg).summary;
      print_row({name, std::to_string(r.steps), fmt(r.test_acc), fmt(r.test_loss),
                 std::to_string(r.workers_lost),
                 r.extra.count("coverage") ? fmt(r.extra.at("coverage")) : "-"},
                22);
    }
  }
}

CAF_MAIN()
