// chorus: the command-line runner.
//   chorus train [--config FILE] [options]   run one experiment
//   chorus sweep NAME --grid K=V1,V2 [...]   a grid of runs over seeds, summarized
//   chorus plot DIR... --x X --y Y           curves of runs and sweeps (matplotlib)
//   chorus rerun DIR [--out NEWDIR]          a run again from its config.json
//   chorus list                              what can be named in options
//   chorus --help
// Exit status: 0 on success, 2 for bad usage or config, 1 when data or the
// run itself fails. Every path out of main has torn the actor system down.
#include <algorithm>
#include <iostream>
#include <string>
#include <vector>

#include "tools/commands.hpp"
#include "tools/experiment.hpp"
#include "algorithms/registry.hpp"
#include "engines/aggregators.hpp"
#include "engines/compressors.hpp"
#include "engines/byzantine.hpp"
#include "engines/topology.hpp"
#include "data/dataset.hpp"
#include "messages/lr_schedule.hpp"
#include "messages/regularizer.hpp"
#include "models/model.hpp"
#include "tools/node.hpp"
#include "tools/options.hpp"

namespace {

const char* top_help =
  "chorus: distributed and asynchronous training as CAF actor protocols\n\n"
  "usage:\n"
  "  chorus train [--config FILE] [options]   train a model (chorus train --help)\n"
  "  chorus node [--listen HOST:PORT]         host workers for runs elsewhere (chorus node --help)\n"
  "  chorus sweep NAME --grid KEY=V1,V2 ...    runs over a grid and seeds, with a summary\n"
  "                                           table (chorus sweep --help)\n"
  "  chorus plot DIR... --x steps --y test_acc  plot runs or sweeps (chorus plot --help)\n"
  "  chorus rerun DIR [--out NEWDIR]          rerun a run from its DIR/config.json\n"
  "  chorus list                              algorithms, models, datasets, partitioners\n"
  "  chorus --help                            this text\n\n"
  "Default experiment: chorus train  (sync_sgd, 4 workers, mlp:256 on Fashion-MNIST)\n";

void print_table(const char* title, const std::vector<std::pair<std::string, std::string>>& rows) {
  std::cout << title << ":\n";
  for (auto& [name, text] : rows) {
    std::string head = "  " + name;
    if (head.size() < 26)
      head.append(26 - head.size(), ' ');
    else
      head += "  ";
    std::cout << head << text << "\n";
  }
  std::cout << "\n";
}

int list() {
  // Each protocol with its options and defaults, from the registry's table.
  std::vector<std::pair<std::string, std::string>> algos;
  for (auto& a : chorus::algorithm_registry()) {
    std::string options;
    for (auto& o : a.options) {
      std::string flag = o.key;
      std::replace(flag.begin(), flag.end(), '_', '-');
      options += (options.empty() ? "" : ", ") + ("--" + flag)
                 + (o.arg.empty() ? "" : " " + o.arg + " [" + o.fallback + "]");
    }
    algos.emplace_back(a.name, a.summary + "\n" + std::string(26, ' ') + "one step: "
                                 + a.step_meaning + "\n" + std::string(26, ' ') + "options: "
                                 + (options.empty() ? "none" : options)
                                 + (a.runs_on_cuda ? "; runs on --backend cuda" : ""));
  }
  print_table("algorithms", algos);
  print_table("models", chorus::model_names());
  print_table("datasets", chorus::dataset_names());
  print_table("partitioners", chorus::partition_names());
  // Topologies with their degree and spectral gap at a sample size.
  std::vector<std::pair<std::string, std::string>> topos;
  for (auto& [name, text] : chorus::topology_names()) {
    std::string facts;
    if (name.find(':') == std::string::npos) {
      try {
        auto t = chorus::make_topology(name, 16, chorus::weight_rule::uniform, 1);
        char line[96];
        std::snprintf(line, sizeof(line), " [n=16: degree %d, spectral gap %.3f]",
                      t.phases[0].max_degree(), chorus::spectral_gap(t));
        facts = line;
      } catch (const std::exception&) {
      }
    }
    topos.emplace_back(name, text + facts);
  }
  print_table("topologies (--topology, with --weights uniform|metropolis)", topos);
  // Robust aggregators and pre-aggregations, from their table.
  std::vector<std::pair<std::string, std::string>> rules, pres;
  for (auto& a : chorus::aggregator_registry())
    (a.pre ? pres : rules).emplace_back(a.usage, a.help + " [needs " + a.needs + "]");
  print_table("aggregators (robust rules; f = Byzantine inputs tolerated)", rules);
  print_table("pre-aggregations (run before an aggregator; chain with '+')", pres);
  std::vector<std::pair<std::string, std::string>> codecs, feedbacks;
  for (auto& c : chorus::compressor_registry())
    codecs.emplace_back(c.usage, c.help);
  for (auto& f : chorus::feedback_registry())
    feedbacks.emplace_back(f.name, f.help);
  // Which protocols take which flag, from the registry: every other protocol
  // refuses the flag as an unknown option (non-zero exit).
  auto taking = [](const std::string& key) {
    std::string names;
    for (auto& a : chorus::algorithm_registry())
      if (std::any_of(a.options.begin(), a.options.end(),
                      [&](const chorus::protocol_option& o) { return o.key == key; }))
        names += (names.empty() ? "" : ", ") + a.name;
    return names.empty() ? std::string("none") : names;
  };
  print_table(("compressors (--compress on " + taking("compress") + "; --compress-down on "
                + taking("compress_down")
                + "; other protocols refuse both; topk and sign need --error-feedback or "
                  "--allow-biased)")
                .c_str(),
              codecs);
  print_table("error feedback (--error-feedback)", feedbacks);
  std::vector<std::pair<std::string, std::string>> attacks;
  for (auto& a : chorus::attack_registry())
    attacks.emplace_back(a.usage, a.help);
  print_table("attacks (--byzantine RANKS:ATTACK)", attacks);
  print_table("step-size schedules (--lr-schedule: eta_t = --lr * s(t); t from 0 counts the "
              "server's steps, or local steps for local_sgd, ri_sgd and gossip peers)",
              chorus::lr_schedule_names());
  print_table("regularizers", {{"none", "r = 0"},
                               {"l1:LAMBDA", "LAMBDA ||w||_1 (soft-thresholding)"},
                               {"l2:LAMBDA", "LAMBDA/2 ||w||^2"},
                               {"elastic:L1,L2", "L1 ||w||_1 + L2/2 ||w||^2"}});
  return 0;
}

int train(const std::vector<std::string>& args) {
  bool help = false;
  chorus::experiment_config cfg;
  try {
    cfg = chorus::parse_train_args(args, &help);
  } catch (const std::invalid_argument& e) {
    std::cerr << "chorus train: " << e.what() << "\n";
    return 2;
  }
  if (help) {
    std::cout << chorus::train_help();
    return 0;
  }
  // SIGINT/SIGTERM end the run as a finished one, with exit 130/143
  // (tools/interrupt.hpp); made before the actor system's threads.
  chorus::stop_switch stop;
  chorus::signal_watch signals(stop);
  try {
    auto result = chorus::run_experiment(cfg, &stop);
    std::cout << chorus::summary_json(cfg, result) << std::endl;
    return signals.exit_status();
  } catch (const std::invalid_argument& e) {
    std::cerr << "chorus train: " << e.what() << "\n";
    return signals.signal() ? signals.exit_status() : 2;
  } catch (const std::exception& e) {
    std::cerr << "chorus train: " << e.what() << "\n";
    return signals.signal() ? signals.exit_status() : 1;
  }
}

} // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    std::cout << top_help;
    return args.empty() ? 2 : 0;
  }
  auto command = args[0];
  args.erase(args.begin());
  if (command == "train")
    return train(args);
  if (command == "list")
    return list();
  if (command == "sweep")
    return chorus::sweep_main(args);
  if (command == "plot")
    return chorus::plot_main(args);
  if (command == "rerun") {
    bool help = false;
    std::vector<std::string> train_args;
    try {
      train_args = chorus::rerun_args(args, &help);
    } catch (const std::invalid_argument& e) {
      std::cerr << "chorus rerun: " << e.what() << "\n";
      return 2;
    }
    if (help) {
      std::cout << chorus::rerun_help();
      return 0;
    }
    std::cout << "[chorus] rerun: chorus train";
    for (auto& a : train_args)
      std::cout << " " << a;
    std::cout << std::endl;
    return train(train_args);
  }
  if (command == "node")
    return chorus::node_main(args);
  std::cerr << "chorus: unknown command '" << command << "' (valid: train, sweep, plot, rerun, node, list; see chorus --help)\n";
  return 2;
}
