// The synchronous round server: the actor behind every protocol that moves
// in lock-step rounds (sync SGD in both forms, local SGD / FedAvg, RI-SGD).
//
// Each round it sends the current weights to the workers the rule selects,
// waits for all replies (the barrier), and lets a `round_rule` turn them into
// new weights. Around the rounds it does what every run needs (see
// protocol.hpp): evaluations on a schedule, metrics, the target stop, byte
// accounting, and survival when a worker dies (noticed by a down message or a
// timeout, logged, and the round goes on with the survivors).
//
// The server knows the worker's interface, not the algorithm: which verb a
// round uses, who takes part and how replies combine is the rule's business.
//
// Combining is synchronous (a function over buffers) unless the rule names a
// reducer: then the barrier is followed by one request to that actor (an
// all-reduce across GPUs needs messages to actors that block on devices),
// and combine runs when its answer arrives.
#pragma once

#include <functional>
#include <vector>

#include <caf/actor_system.hpp>

#include "engines/protocol.hpp"

namespace chorus {

/// A worker's reply to one round, whatever verb the round used.
struct round_reply {
  int32_t sender = -1;
  buffer values;        ///< a gradient or new weights
  double loss = 0;      ///< the worker's mean mini-batch loss
  int32_t samples = 0;  ///< samples it processed
};

/// Lets a rule ask one worker with either worker verb; the server wires the
/// reply or the error back into the round.
class round_asker {
public:
  virtual ~round_asker() = default;
  /// Ask worker `i` for a gradient at `w`.
  virtual void gradient(size_t i, const weights& w) = 0;
  /// Ask worker `i` for `plan.steps` local steps from `w`.
  virtual void local(size_t i, const weights& w, const local_plan& plan) = 0;
};

/// A synchronous protocol's update, as a value.
struct round_rule {
  /// Which of the live workers take part in round `round` (default: all).
  std::function<std::vector<size_t>(const std::vector<size_t>& live, int64_t round)> select;
  /// Sends this round's request to worker i.
  std::function<void(round_asker&, size_t i, const weights& w, int64_t round)> ask;
  /// New weights from the current ones and the replies (in rank order).
  std::function<buffer(backend&, const buffer& w, const std::vector<round_reply>&, int64_t round)>
    combine;
  /// Optional: `combine` written for one slice of the coordinates, for
  /// rules whose update is element-wise (coordinate j of the result needs
  /// coordinate j of w and of the replies only). `w`, `values` (one per
  /// reply, in the order of `replies`) and `out` are the slice; `replies`
  /// are whole (for their sender, loss and samples). When set, the server
  /// splits the combine of a large host-memory model over several combiner
  /// actors (engines/combiners.hpp, run_context::combine_shards); `combine`
  /// is still used where it does not split (device memory, a small model).
  /// Both must compute the same thing: combine_whole() below derives
  /// `combine` from this.
  std::function<void(backend&, cview w, const std::vector<cview>& values,
                     const std::vector<round_reply>& replies, view out, int64_t round)>
    combine_slice;
  /// Optional: protocol metrics added to every metrics row.
  std::function<std::map<std::string, double>()> metrics;
  /// Optional: an actor that averages the replies' values where they live
  /// (the NCCL group: one rank per GPU, actors/nccl_group.hpp). When set,
  /// the server does not bring the replies to its own memory; it asks the
  /// reducer for their mean and calls `combine` with one reply holding it
  /// (sender -1, the mean loss, the total samples). The first round waits
  /// until the reducer is ready; a reducer error fails the run.
  reducer_actor reducer;
  /// Optional: turns a gradient marked encoded (gradient::encoded) from
  /// worker i into its d = `dim` floats, or a local result marked encoded
  /// into the model change it stands for (the server adds the round's w); throws std::invalid_argument for a
  /// corrupt payload (the reply is then set aside and logged). Unset: the
  /// stateless decode of engines/compressors.hpp. bytes_sent counts the
  /// encoded payload either way.
  std::function<buffer(size_t i, const buffer& payload, size_t dim)> decode;
  /// Optional (--compress-down, algorithms/compressed_link.hpp): the
  /// payload to broadcast this round in place of w, sent marked
  /// weights::encoded (the worker-side stage adds it to its replica of w);
  /// an empty buffer: send w itself. bytes_sent counts what is sent.
  std::function<buffer()> broadcast;
  /// Set by a rule with a robust aggregator: a worker's non_finite error
  /// (its gradient or model had a NaN or Inf) does not fail the run; the
  /// server logs it, naming the worker, and hands combine an empty reply
  /// from it (the aggregator sets it aside and counts it).
  bool reject_non_finite = false;
  /// Optional: log lines the rule has for the run's log, taken after each
  /// combine.
  std::function<std::vector<std::string>()> take_log;
};

/// A `combine` that runs `rule.combine_slice` over all of w at once.
std::function<buffer(backend&, const buffer& w, const std::vector<round_reply>&, int64_t round)>
combine_whole(const round_rule& rule);

/// Spawns the round server for `rule`.
protocol_actor spawn_round_server(caf::actor_system& sys, run_context ctx, round_rule rule);

} // namespace chorus
