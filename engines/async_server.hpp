// The asynchronous parameter server: the actor behind protocols that apply
// each worker's gradient the moment it arrives, with no barrier (async_sgd).
//
// It holds one model w. Every worker loops: the server hands it the current
// w, the worker computes a gradient there, and by the time it comes back
// tau other updates may have been applied (tau, the staleness, is the number
// of updates since the worker's copy was taken). An `async_rule` says what
// that gradient does: whether it is applied at all, and the new w. Around
// it the server does what every run needs (see protocol.hpp): the request
// loop, budget, evaluations that score a snapshot while the workers go on,
// byte accounting (w out, g back), staleness statistics, fairness counters
// and survival when a worker dies.
//
// A step is one applied update (one worker's mini-batch); a dropped gradient
// counts its samples but is no step.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <vector>
#include <string>

#include <caf/actor_system.hpp>

#include "engines/protocol.hpp"

namespace chorus {

/// An asynchronous protocol's update, as a value: what happens to a gradient
/// that arrives `tau` updates after the weights it was computed at.
struct async_rule {
  /// Optional: whether such a gradient is applied; false drops it (counted
  /// as dropped_stale) and the worker is handed fresh weights at once.
  /// Unset: every gradient is applied.
  std::function<bool(int64_t tau)> accept;
  /// out <- the new weights from the current w and the gradient g (taken at
  /// w_{t - tau}), including any proximal step; t = `step`, the updates
  /// applied before this one (the step-size schedule's t). `out` does not
  /// overlap w or g.
  std::function<void(backend& be, cview w, cview g, int64_t tau, int64_t step, view out)> apply;
  /// Optional: turns a gradient marked encoded (gradient::encoded) from
  /// worker i into its d = `dim` floats (the receiver ends of --compress,
  /// algorithms/compressed_link.hpp); throws std::invalid_argument for a
  /// corrupt payload (the gradient is then set aside, logged, and the
  /// worker handed fresh weights). Unset: the stateless decode of
  /// engines/compressors.hpp. bytes_sent counts the encoded payload.
  std::function<buffer(size_t i, const buffer& payload, size_t dim)> decode;
  /// Optional: a line for the run's log when the run starts.
  std::string note;
  /// Optional, for a robust rule over a window of arrivals: takes worker
  /// `sender`'s gradient (empty: it sent a non-finite one) and returns the
  /// vector to apply when this arrival closes a window, or an empty buffer
  /// to hold it: no update, and the worker waits (is not handed new
  /// weights) until a window closes, so every window gets distinct workers
  /// and fast workers cannot starve slow ones. `dim` is the model's size.
  std::function<buffer(int32_t sender, const buffer& g, size_t dim)> gather;
  /// With gather: closes the window with what it holds (called when every
  /// live worker waits on it, e.g. after workers died); empty: nothing held.
  std::function<buffer(size_t dim)> flush;
  /// With gather: a worker's non_finite error does not fail the run; it is
  /// logged, naming the worker, and handed to gather as an empty gradient.
  bool reject_non_finite = false;
  /// Optional: the rule's metrics, added to every row and the summary.
  std::function<std::map<std::string, double>()> metrics;
  /// Optional: log lines the rule has, taken after each arrival.
  std::function<std::vector<std::string>()> take_log;
};

/// Spawns the asynchronous server for `rule`. Every metrics row and the
/// summary get staleness_mean, staleness_max, staleness_hist_<tau>,
/// dropped_stale, workers_alive, and updates_min / updates_max (gradients
/// applied per worker: a straggler or a starved worker shows in the min).
protocol_actor spawn_async_server(caf::actor_system& sys, run_context ctx, async_rule rule);

} // namespace chorus
