// The one explicit table of protocols: name -> factory. No static-init
// registration: adding a protocol means adding a line to registry.cpp.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <caf/actor_system.hpp>

#include "actors/server.hpp"

namespace chorus {

/// Builds a protocol actor wired to the given workers, evaluator and monitor.
using algorithm_factory = std::function<protocol_actor(caf::actor_system&, run_context)>;

/// One registry entry.
struct algorithm_info {
  std::string name;
  std::string summary;       ///< one line: the update rule
  std::string step_meaning;  ///< what one step of --steps is
  algorithm_factory spawn;
};

/// Every registered protocol, in the order `chorus list` prints them.
const std::vector<algorithm_info>& algorithm_registry();

/// The entry called `name`; throws std::invalid_argument listing the valid
/// names when there is none.
const algorithm_info& find_algorithm(const std::string& name);

} // namespace chorus
