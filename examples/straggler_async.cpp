// straggler_async: what asynchrony buys when one worker is slow.
//
// Four workers train the MLP on Fashion-MNIST; worker 3 computes 4x slower
// (injected, --slow 3:4). Synchronous SGD waits for it every round; async
// SGD applies each gradient as it arrives, so the fast workers never wait;
// with a staleness bound the slow worker's old gradients are dropped. The
// program runs each protocol to test accuracy 0.80 and prints the wall time
// it took, with the staleness the async server recorded.
//
// Run:    build/examples/straggler_async [--epochs=E] [--out=runs]
// Prints: one row per protocol: time to 0.80, accuracy, staleness mean/max,
//         dropped gradients; metrics files under OUT/straggler/<protocol>/.
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
    {"sync_sgd", "sync_sgd", {}},
    {"async_sgd", "async_sgd", {}},
    {"async_bounded4", "async_sgd", {{"staleness_bound", "4"}}},
    {"async_stale_lr", "async_sgd", {{"staleness_lr", "1"}}},
  };
  print_row({"protocol", "time_to_0.80_s", "test_acc", "samples/s", "stale_mean", "stale_max",
             "dropped"});
  for (auto& v : variants) {
    auto cfg = knobs.base(3, 4);
    cfg.algorithm = v.algorithm;
    cfg.options = v.options;
    cfg.lr = 0.1;
    cfg.slow = "3:4";
    cfg.target_acc = 0.80;
    cfg.eval_every = cfg.algorithm == "sync_sgd" ? 25 : 100;  // both: every 6400 samples
    cfg.out_dir = knobs.out + "/straggler/" + v.name;
    auto r = run_experiment(cfg).summary;
    auto get = [&](const char* k) { return r.extra.count(k) ? fmt(r.extra.at(k)) : "-"; };
    print_row({v.name, r.reached_target ? fmt(r.time_to_target_s) : "never", fmt(r.test_acc),
               fmt(r.samples / (r.wall_s - r.eval_s), "%.0f"), get("staleness_mean"),
               get("staleness_max"), get("dropped_stale")});
  }
}

CAF_MAIN()
