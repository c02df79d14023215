// The one explicit table of protocols: name -> factory. No static-init
// registration: adding a protocol means adding a line to registry.cpp.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <caf/actor_system.hpp>

#include "engines/round_server.hpp"
#include "data/dataset.hpp"

namespace chorus {

/// Builds a protocol actor wired to the given workers, evaluator and monitor.
using algorithm_factory = std::function<protocol_actor(caf::actor_system&, run_context)>;

/// Optional data preparation a protocol needs before its workers exist
/// (RI-SGD's redundant copies): turns the base partition into what each
/// worker holds, and may fill run_context fields that describe it.
using reshard_hook =
  std::function<partition(const partition& base, const run_plan& plan, run_context& ctx)>;

/// One registry entry.
struct algorithm_info {
  std::string name;
  std::string summary;       ///< one line: the update rule
  std::string step_meaning;  ///< what one step of --steps is
  algorithm_factory spawn;
  reshard_hook reshard;      ///< empty for most protocols
  std::vector<std::string> options;  ///< the protocol options it reads (run_plan::options)
};

/// Every registered protocol, in the order `chorus list` prints them.
const std::vector<algorithm_info>& algorithm_registry();

/// The entry called `name`; throws std::invalid_argument listing the valid
/// names when there is none.
const algorithm_info& find_algorithm(const std::string& name);

} // namespace chorus
