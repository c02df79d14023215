// NCCL across processes: `chorus train --processes P --backend cuda
// --allreduce nccl` (or --nodes). One NCCL rank per worker, each in its
// worker's node process on its worker's GPU; the all-reduce runs among the
// nodes, never through the coordinator.
//
//   node, per hosted worker r:   worker r  <-  all-reduce stage r  ->  NCCL rank r
//   coordinator:                 round server -> reducer (nodes_reducer) -> ranks (ready only)
//
// Forming. The node that hosts worker 0 makes the unique id (make_nccl_id)
// and returns it in its hosted_workers reply with the handles of its ranks;
// every other node returns its ranks' handles. The coordinator then sends
// (join_atom, id) to every rank on every node (distribute_nccl_id): the id
// travels as a CAF message, as in the in-process group (nccl_group.hpp),
// and each rank calls ncclCommInitRank in its own process. The reducer
// answers ready once every rank has joined, or with the first refusal.
//
// A round. The server asks every worker, through its stage, for a gradient
// (sync_sgd) or a one-step model (sync_sgd_avg). Each stage takes its
// worker's reply and hands the vector to its rank; the ranks all-reduce it
// among themselves (NCCL moves the floats GPU to GPU). Stage 0 replies with
// the mean, every other stage with an empty vector and its loss and sample
// count, so one vector per round reaches the coordinator instead of N. The
// server gives the replies to its reducer, which returns the one mean, and
// applies its update to it exactly as with the in-process group.
//
// NCCL cannot lose a rank: a worker or node that dies breaks the
// communicator (the other ranks give up after their timeout) and the run
// fails with that error; it does not go on with the survivors.
#pragma once

#include <chrono>
#include <vector>

#include <caf/actor_system.hpp>

#include "actors/interfaces.hpp"

namespace chorus {

/// Spawns the stage in front of `worker` (on the worker's node): compute
/// and local requests go to the worker, the reply's vector through `rank`'s
/// all-reduce; `reply_mean` (rank 0) replies with the mean, the others with
/// an empty vector and the worker's loss and samples. evaluate, apply and
/// fetch go to the worker untouched. `timeout` bounds the all-reduce
/// request (the rank's own NCCL wait gives up before it). The stage is
/// linked to the worker: either ending ends the other.
worker_actor spawn_all_reduce_stage(caf::actor_system& sys, worker_actor worker,
                                    nccl_rank_actor rank, bool reply_mean,
                                    std::chrono::milliseconds timeout);

/// Sends (join_atom, id) to every rank: the id made by rank 0's node.
void distribute_nccl_id(const std::vector<nccl_rank_actor>& ranks, const nccl_unique_id& id);

/// The coordinator's reducer over ranks that all-reduce on the nodes
/// (workers behind all-reduce stages): ready once every rank has joined
/// (each asked within `timeout`; the first refusal or timeout is the answer,
/// naming the rank); reduce returns the one non-empty buffer of the replies,
/// rank 0's mean, and refuses any other count.
reducer_actor spawn_nodes_reducer(caf::actor_system& sys, std::vector<nccl_rank_actor> ranks,
                                  std::chrono::milliseconds timeout);

} // namespace chorus
