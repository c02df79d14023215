// The monitor: the one place a run's metrics and log lines go. It appends a
// JSON object per metrics row to OUT/metrics.jsonl, prints a progress line
// per row, and keeps log lines in OUT/log.txt. Protocols only send to it, so
// file I/O never sits on a protocol's critical path.
#pragma once

#include <string>

#include <caf/actor_system.hpp>

#include "actors/interfaces.hpp"

namespace chorus {

/// Where the monitor writes and how loud it is.
struct monitor_config {
  std::string out_dir;   ///< empty: write no files
  bool progress = true;  ///< print one line per metrics row to stdout
  bool quiet_log = false;  ///< do not echo log lines to stderr
};

/// One metrics row as a JSON object (the line format of metrics.jsonl).
std::string to_json(const metrics_row& row);

/// Spawns a monitor. Throws std::runtime_error if out_dir cannot be created
/// or written.
monitor_actor spawn_monitor(caf::actor_system& sys, monitor_config cfg);

} // namespace chorus
