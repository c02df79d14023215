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

/// A REDUCER averages buffers where they live, asynchronously (the round
/// server's all-reduce step; the NCCL group is one, see nccl_group.hpp).
using reducer_actor = caf::typed_actor<
  // Replies once it can serve, or with why it cannot (in bounded time).
  caf::replies_to<ready_atom>::with<ok_atom>,
  // The element-wise mean of the buffers (all of one length).
  caf::replies_to<reduce_atom, std::vector<buffer>>::with<buffer>>;

/// An NCCL RANK owns one rank of a communicator on one GPU; detached, since
/// it blocks in NCCL and in stream waits. Every rank of a group must get the
/// same sequence of all-reduce requests (the group's front sends them).
using nccl_rank_actor = caf::typed_actor<
  // The mean over ranks of one buffer per rank, as a new buffer on this
  // rank's device; the input is not modified.
  caf::replies_to<all_reduce_atom, buffer>::with<buffer>,
  // The mean over ranks of each rank's weight * mean(parts) (reduce_share).
  caf::replies_to<all_reduce_atom, reduce_share>::with<buffer>,
  // Replies once this rank has joined the communicator, or with why not.
  caf::replies_to<ready_atom>::with<ok_atom>,
  // Rank 0, once, at start: make the unique id, send it to the others, join.
  caf::reacts_to<join_atom>,
  // Join the communicator with this id (sent by rank 0).
  caf::reacts_to<join_atom, nccl_unique_id>>;

/// An NCCL GROUP's front: a reducer over one rank per GPU, which also runs
/// plain per-rank all-reduces (see actors/nccl_group.hpp).
using nccl_group_actor = reducer_actor::extend<
  // One buffer per rank in, the N per-rank results (each on its rank's
  // device) out.
  caf::replies_to<all_reduce_atom, std::vector<buffer>>::with<std::vector<buffer>>>;

/// A NODE is one Chorus process that hosts workers for coordinators in
/// other processes or on other hosts (tools/node.hpp). Its messages use only
/// types every version has (hello), so a mismatch is refused, not misread.
using node_actor = caf::typed_actor<
  // The caller's Chorus version and type_table_hash(); replies with the
  // node's name ("host:pid") or refuses a mismatch, saying both versions.
  caf::replies_to<hello_atom, std::string, uint64_t>::with<std::string>,
  // The GPUs it gives its workers (asked after the hello; placement by
  // device counts reads them).
  caf::replies_to<devices_atom>::with<node_devices>,
  // Spawn the job's workers (the node loads the data itself); it keeps
  // them until the caller releases them or goes down.
  caf::replies_to<host_atom, node_job>::with<hosted_workers>,
  // Spawn the run's peer beside worker `rank` of the job whose owner is the
  // last actor, reporting to the coordinator (the protocol actor, which
  // asks) and logging to the monitor; replies with the peer's handle.
  caf::replies_to<peer_atom, int32_t, caf::actor, caf::actor, caf::actor>::with<caf::strong_actor_ptr>,
  // Connect directly to the nodes at these "host:port,..." endpoints, so
  // peers on different nodes talk without a detour through the coordinator.
  caf::replies_to<mesh_atom, std::string>::with<ok_atom>,
  // The caller's run is over: end its workers.
  caf::reacts_to<release_atom>,
  // The floats' bytes this node's process sent to and received from any
  // other process so far (buffer_stats), node to node included.
  caf::replies_to<traffic_atom>::with<uint64_t, uint64_t>>;

} // namespace chorus
