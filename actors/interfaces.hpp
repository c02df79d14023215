// Every typed actor handle in Chorus, each with one line on its role.
// Protocols are written against these; nothing here names an algorithm.
#pragma once

#include <caf/typed_actor.hpp>
#include <caf/replies_to.hpp>

#include "messages/messages.hpp"

namespace chorus {

/// A WORKER computes on its own data shard; it knows no algorithm.
using worker_actor = caf::typed_actor<
  // Gradient at `w` on the next mini-batch.
  caf::replies_to<compute_atom, weights>::with<gradient>,
  // `plan.steps` local proximal SGD steps from `w`; replies with the new weights.
  caf::replies_to<local_atom, weights, local_plan>::with<local_result>,
  // Loss and accuracy of `w` on the whole shard.
  caf::replies_to<evaluate_atom, weights>::with<evaluation>,
  // Keep `w` as the replica's current weights.
  caf::replies_to<apply_atom, weights>::with<ok_atom>,
  // The replica's current weights.
  caf::replies_to<fetch_atom>::with<weights>>;

/// A PROTOCOL actor drives one training run to its end.
using protocol_actor = caf::typed_actor<
  // Run the whole plan; reply with what happened.
  caf::replies_to<run_atom>::with<run_summary>,
  // Stop after the current step (the pending run_atom then replies).
  caf::reacts_to<stop_atom>>;

/// A MONITOR is the metrics sink: it writes rows and log lines, in order.
using monitor_actor = caf::typed_actor<
  // Append one row to metrics.jsonl and print a progress line.
  caf::reacts_to<metrics_atom, metrics_row>,
  // Print a line to the log (stderr) and keep it in log.txt.
  caf::reacts_to<log_atom, std::string>,
  // Flush everything; replies when it is on disk.
  caf::replies_to<flush_atom>::with<ok_atom>>;

} // namespace chorus
