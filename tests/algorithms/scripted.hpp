// Test doubles for protocol tests: SCRIPTED workers whose replies the test
// chooses (so a protocol's update can be computed by hand), a monitor that
// records every metrics row and log line, an evaluator that kills a worker
// at a chosen step, and `metric()`, a lookup of a protocol metric that fails
// the test when the metric is missing (std::map::operator[] would insert 0
// and let an upper bound pass).
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <caf/all.hpp>

#include "actors/interfaces.hpp"
#include "messages/errors.hpp"
#include "messages/payloads.hpp"

namespace chorus::test {

// -- metrics that must be there ---------------------------------------------------------

/// extra[key], or a test failure naming the key and NaN (which fails every
/// comparison that follows) when the protocol did not report it.
inline double metric(const std::map<std::string, double>& extra, const std::string& key) {
  auto it = extra.find(key);
  if (it == extra.end()) {
    std::string have;
    for (auto& [k, v] : extra)
      have += (have.empty() ? "" : ", ") + k;
    ADD_FAILURE() << "metric '" << key << "' is missing (reported: " << have << ")";
    return std::nan("");
  }
  return it->second;
}

/// metric(s.extra, key).
inline double metric(const run_summary& s, const std::string& key) { return metric(s.extra, key); }

// -- a recording monitor --------------------------------------------------------------------

/// Every metrics row and log line a monitor received.
struct recording {
  std::mutex m;
  std::vector<metrics_row> rows;
  std::vector<std::string> lines;

  /// A copy of the rows so far.
  std::vector<metrics_row> rows_copy() {
    std::lock_guard<std::mutex> lock(m);
    return rows;
  }
};

/// A monitor that keeps everything in `rec`; flush answers ok at once (rows
/// sent before a protocol's reply are in `rec` once a flush sent after the
/// reply is answered).
inline monitor_actor::behavior_type recorder(std::shared_ptr<recording> rec) {
  return {
    [rec](metrics_atom, metrics_row& row) {
      std::lock_guard<std::mutex> lock(rec->m);
      rec->rows.push_back(std::move(row));
    },
    [rec](log_atom, std::string& line) {
      std::lock_guard<std::mutex> lock(rec->m);
      rec->lines.push_back(std::move(line));
    },
    [](flush_atom) { return ok_atom_v; },
  };
}

// -- scripted workers ------------------------------------------------------------------------

/// One request a scripted worker got.
struct scripted_call {
  bool local = false;       ///< local steps (local_atom) rather than a gradient
  int64_t index = 0;        ///< 0 for the worker's first compute/local request, then 1, 2, ...
  int64_t step = 0;         ///< the step the protocol stamped on the weights
  std::vector<float> w;     ///< the weights it was sent
  int32_t local_steps = 0;  ///< local: the plan's step count
};

/// What a scripted worker answers: a gradient (compute) or new weights (local).
struct scripted_reply {
  std::vector<float> values;
  float loss = 0;
  int32_t samples = 1;
};

/// The script: the reply to each call.
using script_fn = std::function<scripted_reply(const scripted_call&)>;

/// Every call a scripted worker got, and every weight vector it evaluated.
struct scripted_log {
  std::mutex m;
  std::vector<scripted_call> calls;
  std::vector<std::vector<float>> evaluated;

  /// A copy of the calls so far.
  std::vector<scripted_call> calls_copy() {
    std::lock_guard<std::mutex> lock(m);
    return calls;
  }
  /// The weights of each call, in order.
  std::vector<std::vector<float>> weights_seen() {
    std::vector<std::vector<float>> out;
    for (auto& c : calls_copy())
      out.push_back(c.w);
    return out;
  }
};

/// Scores a weight vector (a scripted evaluator's accuracy).
using accuracy_fn = std::function<double(const std::vector<float>&)>;

/// A worker that knows no model: it answers compute and local requests with
/// the script's reply, and evaluations with loss 0.5 and accuracy
/// `accuracy(w)` (0.5 when not given). Every call goes to `log` when given.
inline worker_actor::behavior_type scripted_worker(worker_actor::pointer, int32_t rank,
                                                   script_fn script,
                                                   std::shared_ptr<scripted_log> log,
                                                   accuracy_fn accuracy) {
  auto calls = std::make_shared<int64_t>(0);
  auto run = [script, log, calls](scripted_call c) {
    c.index = (*calls)++;
    auto reply = script(c);
    if (log) {
      std::lock_guard<std::mutex> lock(log->m);
      log->calls.push_back(std::move(c));
    }
    return reply;
  };
  return {
    [=](compute_atom, weights w) -> caf::result<gradient> {
      auto r = run(scripted_call{false, 0, w.step, w.values.to_vector(), 0});
      return gradient{rank, w.step, buffer::from(r.values), r.loss, r.samples};
    },
    [=](local_atom, weights w, local_plan p) -> caf::result<local_result> {
      auto r = run(scripted_call{true, 0, w.step, w.values.to_vector(), p.steps});
      return local_result{rank, w.step, buffer::from(r.values), r.loss, r.samples};
    },
    [=](evaluate_atom, weights w) {
      auto v = w.values.to_vector();
      if (log) {
        std::lock_guard<std::mutex> lock(log->m);
        log->evaluated.push_back(v);
      }
      return evaluation{rank, w.step, 0.5, accuracy ? accuracy(v) : 0.5, 1};
    },
    [](apply_atom, weights) { return ok_atom_v; },
    [](fetch_atom) { return weights{}; },
  };
}

/// Spawns a scripted worker (see scripted_worker).
inline worker_actor spawn_scripted(caf::actor_system& sys, int32_t rank, script_fn script,
                                   std::shared_ptr<scripted_log> log = nullptr,
                                   accuracy_fn accuracy = {}) {
  return sys.spawn(scripted_worker, rank, std::move(script), std::move(log), std::move(accuracy));
}

// -- an evaluator that kills a worker ------------------------------------------------------

/// An evaluator that forwards every request to `real` and, when asked to
/// score the weights of step `at_step`, first kills `victim`. Synchronous
/// protocols wait for an evaluation before their next round, so the victim
/// dies between two known rounds, on any machine.
inline worker_actor::behavior_type killing_evaluator(worker_actor::pointer self, worker_actor real,
                                                     caf::actor victim, int64_t at_step) {
  return {
    [=](compute_atom, weights w) { return self->delegate(real, compute_atom_v, std::move(w)); },
    [=](local_atom, weights w, local_plan p) {
      return self->delegate(real, local_atom_v, std::move(w), p);
    },
    [=](evaluate_atom, weights w) {
      if (w.step == at_step)
        caf::anon_send_exit(victim, caf::exit_reason::kill);
      return self->delegate(real, evaluate_atom_v, std::move(w));
    },
    [=](apply_atom, weights w) { return self->delegate(real, apply_atom_v, std::move(w)); },
    [=](fetch_atom) { return self->delegate(real, fetch_atom_v); },
  };
}

} // namespace chorus::test
