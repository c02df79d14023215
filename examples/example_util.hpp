// Small helpers shared by the experiment examples: a table printer and the
// common command-line knobs (so every example can be smoke-run tiny).
#pragma once

#include <cstdio>
#include <string>
#include <vector>

#include <caf/actor_system_config.hpp>

#include "tools/experiment.hpp"

namespace chorus::examples {

/// Knobs every experiment example takes: --epochs, --dataset, --model,
/// --workers, --out (where metrics files go), --quiet.
struct experiment_knobs : caf::actor_system_config {
  double epochs = 0;  // 0: the example's own default
  std::string dataset = "fashion-mnist";
  std::string model = "mlp:256";
  int workers = 0;    // 0: the example's own default
  std::string out = "runs";
  experiment_knobs() {
    opt_group{custom_options_, "global"}
      .add(epochs, "epochs", "training budget per run (0: the example's default)")
      .add(dataset, "dataset", "fashion-mnist | synthetic-logistic | ...")
      .add(model, "model", "model spec")
      .add(workers, "workers", "workers (0: the example's default)")
      .add(out, "out", "folder for each run's metrics.jsonl and config.json");
  }
  /// A config with the knobs applied over the example's defaults.
  experiment_config base(double default_epochs, int default_workers) const {
    experiment_config cfg;
    cfg.dataset = dataset;
    cfg.model = model;
    cfg.epochs = epochs > 0 ? epochs : default_epochs;
    cfg.workers = workers > 0 ? workers : default_workers;
    cfg.progress = false;
    return cfg;
  }
};

/// Prints a row of fixed-width cells.
inline void print_row(const std::vector<std::string>& cells, int width = 16) {
  for (auto& c : cells)
    std::printf("%-*s", width, c.c_str());
  std::printf("\n");
  std::fflush(stdout);
}

inline std::string fmt(double x, const char* f = "%.4g") {
  char text[32];
  std::snprintf(text, sizeof(text), f, x);
  return text;
}

} // namespace chorus::examples
