// One run's actor graph: the monitor, the workers, the evaluator, the
// protocol actors run on them, and the teardown of all of them. The runner
// (tools/experiment.cpp), the examples, the benchmarks and the tests build
// their graphs with it, so the sequence spawn -> wire -> run -> flush ->
// exit is written once.
//
// A graph may run several protocols one after the other on the same workers
// (benchmarks repeat runs): each protocol actor ends with its run and joins
// the teardown. Destroying the graph sends an exit to every member, on the
// error path as much as on the normal one, so the actor system's destructor
// (which waits for every actor) never hangs.
#pragma once

#include <functional>
#include <mutex>
#include <memory>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_cast.hpp>
#include <caf/actor_system.hpp>
#include <caf/duration.hpp>
#include <caf/expected.hpp>
#include <caf/scoped_actor.hpp>

#include "actors/monitor.hpp"
#include "actors/worker.hpp"
#include "engines/protocol.hpp"

namespace chorus {

/// Builds a protocol actor wired to a run_context (a registry entry's spawn,
/// or spawn_sync_sgd and friends).
using protocol_factory = std::function<protocol_actor(caf::actor_system&, run_context)>;

/// The actors of a run and their lifetime (see above).
class run_graph {
public:
  /// Spawns the run's monitor. Throws std::runtime_error when its output
  /// folder cannot be written.
  explicit run_graph(caf::actor_system& sys, monitor_config mc = {});
  run_graph(const run_graph&) = delete;
  run_graph& operator=(const run_graph&) = delete;
  /// Sends an exit to every member.
  ~run_graph();

  caf::actor_system& system() { return sys_; }

  /// Spawns a worker and appends it to context().workers (and its GPU, or
  /// -1 for the host, to context().worker_devices). Throws like spawn_worker.
  worker_actor add_worker(const worker_config& wc);

  /// Spawns the evaluator: a worker holding the test set.
  worker_actor set_evaluator(const worker_config& wc);

  /// Adds an actor of the caller's making with the worker's interface (a
  /// decorator, a scripted fake) as the next worker, on the host.
  worker_actor add_worker(worker_actor w);

  /// Makes such an actor the evaluator.
  worker_actor set_evaluator(worker_actor w);

  /// Adds any other actor to the teardown; returns it.
  template <class Handle>
  Handle keep(Handle h) {
    members_.push_back(caf::actor_cast<caf::actor>(h));
    return h;
  }

  /// What a protocol is wired to: workers, evaluator and monitor are set
  /// by this graph; the plan, w_0 and the shard sizes are the caller's.
  run_context& context() { return ctx_; }
  const run_context& context() const { return ctx_; }

  /// A line to the run's log.
  void log(std::string line);

  /// Runs `protocol` (spawned on this graph's context) to its end: asks it
  /// for run_atom, waits up to `timeout` for the summary or the error, then
  /// waits until the monitor has every row on disk. The protocol joins the
  /// teardown. A worker added with an injected crash that did not fire
  /// during the run (the run ended, or lost it otherwise, before asking it
  /// for its crash step) is a warning in the log, and the summary counts
  /// such workers in extra["injections_not_fired"] (absent when none).
  caf::expected<run_summary> run(protocol_actor protocol, caf::duration timeout = caf::infinite);

  /// Spawns a protocol on a copy of context() with `spawn` and runs it.
  caf::expected<run_summary> run(const protocol_factory& spawn,
                                 caf::duration timeout = caf::infinite);

  /// Asks the protocol now in run() to stop after its current step (its
  /// summary then says "stopped"); before run(), the next run stops right
  /// after it starts. Callable from any thread (a signal watcher's).
  void stop();

private:
  // Workers with an injected crash that has not fired, by their index in
  // ctx_.workers; watch_ monitors them (made for the first one).
  struct pending_crash {
    size_t index;
    caf::actor_addr addr;
    int64_t step;
  };
  std::vector<pending_crash> check_crashes();

  caf::actor_system& sys_;
  run_context ctx_;
  std::vector<caf::actor> members_;
  std::mutex stop_mutex_;  // guards the two below
  protocol_actor running_;
  bool stop_pending_ = false;
  std::unique_ptr<caf::scoped_actor> watch_;
  std::vector<pending_crash> crashes_;
};

} // namespace chorus
