// The verbs of Chorus's messages. Each is a CAF atom (at most 10 characters).
// A new protocol adds verbs here; it never adds a "kind" field to a payload.
#pragma once

#include <caf/atom.hpp>

namespace chorus {

/// Worker: gradient at the given weights on its next mini-batch.
using compute_atom = caf::atom_constant<caf::atom("compute")>;
/// Worker: k local SGD steps from the given weights.
using local_atom = caf::atom_constant<caf::atom("local")>;
/// Worker: loss and accuracy of the given weights on its whole shard.
using evaluate_atom = caf::atom_constant<caf::atom("evaluate")>;
/// Worker: keep these weights as the replica's current state.
using apply_atom = caf::atom_constant<caf::atom("apply")>;
/// Worker: send back the replica's current weights.
using fetch_atom = caf::atom_constant<caf::atom("fetch")>;
/// Protocol: run to the end of the plan, reply with the summary.
using run_atom = caf::atom_constant<caf::atom("run")>;
/// Protocol: stop at the end of the current step.
using stop_atom = caf::atom_constant<caf::atom("stop")>;
/// Monitor: a row of metrics.
using metrics_atom = caf::atom_constant<caf::atom("metrics")>;
/// Monitor: a line for the log.
using log_atom = caf::atom_constant<caf::atom("log")>;
/// Monitor: flush every file, reply when done.
using flush_atom = caf::atom_constant<caf::atom("flush")>;
/// Peer: a neighbour's model (or tracking variable) for a gossip round.
using gossip_atom = caf::atom_constant<caf::atom("gossip")>;
/// Peer/agent -> coordinator: my state at a reporting point.
using report_atom = caf::atom_constant<caf::atom("report")>;
/// Generic acknowledgement.
using ok_atom = caf::atom_constant<caf::atom("ok")>;
/// Reducer: the mean of a set of buffers, wherever they live.
using reduce_atom = caf::atom_constant<caf::atom("reduce")>;
/// NCCL group: a collective all-reduce, one input per rank.
using all_reduce_atom = caf::atom_constant<caf::atom("allreduce")>;
/// Reply once able to serve (an NCCL rank or group: every rank joined).
using ready_atom = caf::atom_constant<caf::atom("ready")>;
/// NCCL rank: join the communicator (rank 0 makes the id and sends it on).
using join_atom = caf::atom_constant<caf::atom("join")>;
/// Node: check the caller's version and message types.
using hello_atom = caf::atom_constant<caf::atom("hello")>;
/// Node: spawn workers for a run (node_job).
using host_atom = caf::atom_constant<caf::atom("host")>;
/// Node: the caller's run is over; let its workers go.
using release_atom = caf::atom_constant<caf::atom("release")>;
/// Node: spawn a protocol's peer beside one of the caller's workers.
using peer_atom = caf::atom_constant<caf::atom("peer")>;
/// Node: connect directly to these other nodes (peers talk node to node).
using mesh_atom = caf::atom_constant<caf::atom("mesh")>;
/// Node: the payload bytes its process sent and received so far.
using traffic_atom = caf::atom_constant<caf::atom("traffic")>;
/// Coordinator: a node registers itself (chorus node --coordinator).
using register_atom = caf::atom_constant<caf::atom("register")>;
/// Registrar: reply once every expected node has registered.
using await_atom = caf::atom_constant<caf::atom("await")>;
/// Adversary: a tapped honest worker's reply, seen on its way to the protocol.
using observe_atom = caf::atom_constant<caf::atom("observe")>;
/// Adversary: the honest updates of a step, for an omniscient attacker.
using honest_atom = caf::atom_constant<caf::atom("honest")>;
/// Self-message: a wait has run out.
using expire_atom = caf::atom_constant<caf::atom("expire")>;
/// A protocol's deadline clock: one tick per period (engines/deadlines.hpp).
using tick_atom = caf::atom_constant<caf::atom("tick")>;
/// A combiner shard: compute your slice of the round's combine.
using combine_atom = caf::atom_constant<caf::atom("combine")>;
/// Coordinator -> node, after the hello: which GPUs do you have?
using devices_atom = caf::atom_constant<caf::atom("devices")>;

constexpr compute_atom compute_atom_v{};
constexpr local_atom local_atom_v{};
constexpr evaluate_atom evaluate_atom_v{};
constexpr apply_atom apply_atom_v{};
constexpr fetch_atom fetch_atom_v{};
constexpr run_atom run_atom_v{};
constexpr stop_atom stop_atom_v{};
constexpr metrics_atom metrics_atom_v{};
constexpr log_atom log_atom_v{};
constexpr flush_atom flush_atom_v{};
constexpr ok_atom ok_atom_v{};
constexpr tick_atom tick_atom_v{};
constexpr combine_atom combine_atom_v{};
constexpr gossip_atom gossip_atom_v{};
constexpr report_atom report_atom_v{};
constexpr reduce_atom reduce_atom_v{};
constexpr all_reduce_atom all_reduce_atom_v{};
constexpr ready_atom ready_atom_v{};
constexpr join_atom join_atom_v{};
constexpr hello_atom hello_atom_v{};
constexpr host_atom host_atom_v{};
constexpr release_atom release_atom_v{};
constexpr peer_atom peer_atom_v{};
constexpr mesh_atom mesh_atom_v{};
constexpr traffic_atom traffic_atom_v{};
constexpr register_atom register_atom_v{};
constexpr await_atom await_atom_v{};
constexpr observe_atom observe_atom_v{};
constexpr honest_atom honest_atom_v{};
constexpr expire_atom expire_atom_v{};
constexpr devices_atom devices_atom_v{};

} // namespace chorus
