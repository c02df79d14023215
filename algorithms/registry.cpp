#include "algorithms/registry.hpp"

#include <stdexcept>

#include "algorithms/protocols.hpp"

namespace chorus {

const std::vector<algorithm_info>& algorithm_registry() {
  static const std::vector<algorithm_info> table = {
    {"sync_sgd", "synchronous parallel SGD, server-side prox: w+ = Prox(w - eta mean_i g_i)",
     "one round: every worker computes one mini-batch gradient", spawn_sync_sgd},
    {"sync_sgd_avg", "synchronous parallel SGD, averaged prox: w+ = mean_i Prox(w - eta g_i)",
     "one round: every worker takes one proximal step", spawn_sync_sgd_avg},
  };
  return table;
}

const algorithm_info& find_algorithm(const std::string& name) {
  for (auto& entry : algorithm_registry())
    if (entry.name == name)
      return entry;
  std::string valid;
  for (auto& entry : algorithm_registry())
    valid += (valid.empty() ? "" : ", ") + entry.name;
  throw std::invalid_argument("unknown algorithm '" + name + "'; valid algorithms: " + valid);
}

} // namespace chorus
