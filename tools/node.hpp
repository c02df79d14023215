// A Chorus NODE: one process that hosts workers for coordinators elsewhere.
//
//   chorus node --listen HOST:PORT [--data-dir DIR] [--devices 0,1] [--threads T]
//
// The node publishes one actor (node_actor, actors/interfaces.hpp) at HOST:PORT
// through CAF's middleman and prints "chorus node: listening on HOST:PORT" on
// stdout. A coordinator (`chorus train --nodes ...` or `--processes N`, see
// tools/cluster.hpp) says hello (same version and message types, or it is
// refused), then sends a node_job: the run's flags and the ranks to host. The
// node parses the flags as `chorus train` would, loads the data itself (its
// own --data-dir wins), builds the same seeded partition, spawns those
// workers and replies with their handles and the data's fingerprint. The
// protocols then talk to the workers directly: a worker on a node is the same
// typed handle as one in the coordinator's process.
//
// A job ends when its coordinator releases it or goes down (its process died,
// or the heartbeats stopped): the node ends the job's workers. With --once
// the node process exits then; without, it serves the next coordinator.
#pragma once

#include <string>
#include <vector>

#include <caf/actor_system.hpp>

#include "actors/interfaces.hpp"
#include "tools/network.hpp"

namespace chorus {

/// What a node is started with.
struct node_options {
  endpoint listen{"127.0.0.1", 0};
  std::string data_dir;       ///< empty: the coordinator's
  std::vector<int> devices;   ///< empty: the coordinator's
  int32_t threads = 0;        ///< CAF scheduler threads; 0: all cores
  /// CAF scheduler policy (actors/system.hpp). Sharing, as `chorus train`'s
  /// auto gives its nodes: the coordinator and the peers are other processes,
  /// and stealing's idle threads polled ~20k times a second each, taking the
  /// cores from the workers (README, "Where a round goes").
  std::string scheduler = "sharing";
  int64_t spin_polls = 100;   ///< queue polls before an idle thread naps (actors/system.hpp)
  bool once = false;          ///< exit after the first job ends
  tls_options tls;
  bool insecure = false;      ///< allow a plain port off loopback
  /// Register at a coordinator (chorus train --await-nodes) instead of
  /// waiting to be named by one; implies `once`.
  std::string coordinator;
};

/// Spawns the node actor (not published).
node_actor spawn_node(caf::actor_system& sys, node_options opts);

/// `chorus node` with its arguments (after "node"): runs until the node
/// ends (SIGINT/SIGTERM, or --once and its job is over). Returns the exit
/// status; prints errors to stderr.
int node_main(const std::vector<std::string>& args);

/// The text of `chorus node --help`.
std::string node_help();

} // namespace chorus
