// Memory checks of a run (tools/memory.hpp): what the weights of a model
// take per copy, how many copies a run holds at least, and how much memory
// this process may use.
#include "tools/memory.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <exception>
#include <stdexcept>

#include "models/model.hpp"

namespace chorus {

namespace {

// What one copy of the model's weights takes, and how many a run holds at
// least: the initial weights, plus one gradient or local model per worker
// (CPU workers; a CUDA worker's copies live on its device).
struct memory_need {
  double per_copy = 0;
  int64_t copies = 0;
  std::string describe(const experiment_config& cfg, int64_t params) const {
    return "--model " + cfg.model + ": " + std::to_string(params) + " parameters take " +
           byte_size(per_copy) + " per copy of the weights, and a run of " +
           std::to_string(cfg.workers) + " workers on --backend " + cfg.backend +
           " holds at least " + std::to_string(copies) + " (" + byte_size(per_copy * copies) + ")";
  }
};

memory_need memory_need_of(const experiment_config& cfg, int64_t params) {
  memory_need m;
  m.per_copy = static_cast<double>(params) * sizeof(float);
  m.copies = cfg.backend == "cuda" ? 1 : int64_t{cfg.workers} + 1;
  return m;
}

} // namespace

std::string byte_size(double bytes) {
  const char* units[] = {"bytes", "KB", "MB", "GB", "TB", "PB", "EB"};
  int u = 0;
  while (bytes >= 1000 && u < 6) {
    bytes /= 1000;
    ++u;
  }
  char text[32];
  std::snprintf(text, sizeof(text), u == 0 ? "%.0f %s" : "%.1f %s", bytes, units[u]);
  return text;
}

// Under RLIMIT_AS what counts is the limit less what is already mapped.
double memory_available() {
  double bytes = static_cast<double>(sysconf(_SC_PHYS_PAGES)) *
                 static_cast<double>(sysconf(_SC_PAGE_SIZE));
  rlimit lim{};
  if (getrlimit(RLIMIT_AS, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY) {
    double used = 0;
    if (std::FILE* statm = std::fopen("/proc/self/statm", "r")) {
      unsigned long pages = 0;
      if (std::fscanf(statm, "%lu", &pages) == 1)
        used = static_cast<double>(pages) * static_cast<double>(sysconf(_SC_PAGE_SIZE));
      std::fclose(statm);
    }
    bytes = std::min(bytes, std::max(0.0, static_cast<double>(lim.rlim_cur) - used));
  }
  return bytes;
}

// Only the weights are counted (scratch space and data depend on the model
// and the batch): a run refused here could never have run.
void check_model_memory(const experiment_config& cfg, int64_t params) {
  auto need = memory_need_of(cfg, params);
  const double available = memory_available();
  if (need.per_copy * static_cast<double>(need.copies) > available)
    throw std::runtime_error(need.describe(cfg, params) + ", more than the " +
                             byte_size(available) + " of memory this process may use");
}

// The model is built again only for its size: building allocates no weights.
std::string out_of_memory_message(const experiment_config& cfg, const train_test& data) {
  std::string what = "out of memory running " + cfg.model + " on " + cfg.dataset;
  try {
    if (data.train) {
      auto net = make_model(cfg.model, data.train->num_features, data.train->num_classes);
      what += " (" + memory_need_of(cfg, net->num_params()).describe(cfg, net->num_params()) + ")";
    }
  } catch (const std::exception&) {
  }
  return what + "; try a smaller model, fewer workers or a smaller --batch";
}

} // namespace chorus
