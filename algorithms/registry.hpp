// The one explicit table of protocols: name -> what it does, the options it
// reads (with their defaults and help), whether it runs on GPUs, and its
// entry point. `chorus train --help`, `chorus list`, config validation and
// every spawn by name read this table, so none of them can drift from it.
// No static-init registration: adding a protocol means adding an entry to
// registry.cpp.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include <caf/actor_system.hpp>

#include "data/dataset.hpp"
#include "engines/run_graph.hpp"

namespace chorus {

/// Optional data preparation a protocol needs before its workers exist
/// (RI-SGD's redundant copies): turns the base partition into what each
/// worker holds.
using reshard_hook = std::function<partition(const partition& base, const run_plan& plan)>;

/// Spawns, here, the actor the protocol keeps beside worker `rank` (a gossip
/// peer), reporting to `coordinator`, the run's protocol actor in another
/// process; ctx describes the same run (run_context::beside).
using peer_hook = std::function<caf::actor(caf::actor_system&, run_context ctx, int32_t rank,
                                           const caf::actor& coordinator)>;

/// One option a protocol reads from run_plan::options.
struct protocol_option {
  std::string key;       ///< the options key; its flag is --key with '_' written '-'
  std::string arg;       ///< metavariable for --help; empty: a switch (value "1" when given)
  std::string fallback;  ///< the value a run uses when the option is not given
  std::string help;      ///< one line, for this protocol
};

/// One registry entry.
struct algorithm_info {
  std::string name;
  std::string summary;       ///< one line: the update rule
  std::string step_meaning;  ///< what one step of --steps is
  protocol_factory spawn;    ///< the entry point; takes a plan whose options are complete
  std::vector<protocol_option> options;  ///< every option it reads, besides the run's seed
  bool runs_on_cuda = false;  ///< its protocol actor works with --backend cuda
  reshard_hook reshard{};    ///< empty for most protocols
  /// Decentralized protocols: their peer alone, for runs whose workers live
  /// in other processes; empty for protocols without peers.
  peer_hook spawn_peer{};
  /// Optional: checks a completed plan for `workers` workers before anything
  /// is loaded or spawned (a robust aggregator's f against the inputs it
  /// will get); throws std::invalid_argument.
  std::function<void(const run_plan& plan, size_t workers)> check{};
  /// Every step waits for every live worker (a barrier per round), unless
  /// its option "async" is 1 (runs_in_lockstep). `--spin-polls auto` lets
  /// idle threads poll instead of nap for these (actors/system.hpp).
  bool lockstep = false;
  /// Centralized protocols whose per-worker state can live beside the
  /// worker (the replica engine's agents, engines/replicas.hpp): spawned
  /// beside each worker when the workers live in other processes; the
  /// protocol actor still gets its workers as any centralized one. Empty
  /// for the others.
  peer_hook spawn_agent{};
};

/// Whether a run of `algo` with these options waits for every worker at
/// each step: algo.lockstep, and its "async" option (if any) not set.
bool runs_in_lockstep(const algorithm_info& algo, const std::map<std::string, std::string>& options);

/// Runs algo.check (if any) on `options` completed with their defaults.
void check_plan(const algorithm_info& algo, const std::map<std::string, std::string>& options,
                size_t workers);

/// Every registered protocol, in the order `chorus list` prints them.
const std::vector<algorithm_info>& algorithm_registry();

/// The entry called `name`; throws std::invalid_argument listing the valid
/// names when there is none.
const algorithm_info& find_algorithm(const std::string& name);

/// Throws std::invalid_argument for an option `algo` does not read, naming
/// the ones it does. "seed" (the run's seed) is always allowed.
void check_options(const algorithm_info& algo, const std::map<std::string, std::string>& options);

/// Throws std::invalid_argument, naming the protocols that do run there,
/// when `algo` does not run on `backend` ("eigen" always works).
void check_backend(const algorithm_info& algo, const std::string& backend);

/// Gives every option of `algo` that `plan` does not set its default (and
/// "seed" the value 1). Protocol code reads options from a completed plan,
/// so the defaults live in this table only.
void complete_options(const algorithm_info& algo, run_plan& plan);

/// The protocols that run on --backend cuda (their protocol actor keeps its
/// weights and combines replies on the GPU), in registry order.
std::vector<std::string> cuda_algorithms();

/// Spawns the protocol `name` on `ctx`: checks its options, completes them
/// with their defaults, refuses --backend cuda for a protocol that does not
/// run there, and calls the entry point. Throws std::invalid_argument.
protocol_actor spawn_algorithm(caf::actor_system& sys, const std::string& name, run_context ctx);

/// Spawns, here, peer `rank` of protocol `name` (its spawn_peer hook, or its
/// spawn_agent hook) on a
/// copy of the run's context, completed as spawn_algorithm does. Throws
/// std::invalid_argument when the protocol keeps no actor beside its workers.
caf::actor spawn_algorithm_peer(caf::actor_system& sys, const std::string& name, run_context ctx,
                                int32_t rank, const caf::actor& coordinator);

} // namespace chorus
