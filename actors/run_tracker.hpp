// The bookkeeping every protocol actor shares: the clock, samples and bytes,
// the evaluation schedule, metrics rows, the target-accuracy stop and the
// final summary. A protocol owns one tracker in its state and calls it at
// the points where its own message flow produces those facts; the tracker
// never sends a message itself, so it works in any actor and in tests.
#pragma once

#include <chrono>
#include <cstdint>
#include <limits>
#include <map>
#include <string>

#include "actors/interfaces.hpp"
#include "messages/lr_schedule.hpp"
#include "messages/regularizer.hpp"

namespace chorus {

/// What a run is asked to do; protocol-independent.
struct run_plan {
  std::string algorithm;
  int64_t steps = 0;          ///< stop after this many protocol steps; <= 0: no limit
  int64_t max_samples = 0;    ///< stop once this many samples were processed; <= 0: no limit
  int64_t eval_every = 0;     ///< evaluate every this many steps (0: use eval_every_samples)
  int64_t eval_every_samples = 0;  ///< evaluate every this many samples (0: only at the end)
  double target_acc = -1;     ///< stop at the first evaluation reaching it; < 0: none
  float lr = 0.1f;            ///< step size eta (at t = 0; lr_at for step t)
  lr_schedule schedule;       ///< eta_t = lr * schedule.scale(t, T) (messages/lr_schedule.hpp)
  /// How the protocol's schedule step t relates to its protocol steps (what
  /// `steps` counts): t after S steps is t_after(S). Identity (t = the
  /// server's step) unless the protocol sets it in its spawn function:
  /// local SGD counts local steps (tau per round after post_local
  /// synchronous rounds), asynchronous gossip a peer's own local steps
  /// (each of the N peers takes about steps / N).
  struct lr_clock {
    int64_t sync_steps = 0;  ///< the first protocol steps count one t each
    int64_t per_step = 1;    ///< then each protocol step is this many t
    int64_t peers = 1;       ///< t is shared out over this many peers
    int64_t t_after(int64_t protocol_steps) const;
  } clock;
  regularizer reg;            ///< r(w), applied by a proximal step
  int64_t train_size = 1;     ///< training samples in total (for epochs)
  std::chrono::milliseconds timeout{60000};  ///< longest wait for one reply
  std::map<std::string, std::string> options;  ///< protocol-specific (tau, ...)

  /// options[key]; throws std::invalid_argument naming the key when it is
  /// not set. A protocol spawned by name (spawn_algorithm, or its own spawn_*
  /// entry point) has every option it reads set, with the registry's
  /// defaults for those not given: protocols hold no defaults of their own.
  const std::string& text(const std::string& key) const;

  /// eta_t = lr * schedule.scale(t, T), T = clock.t_after(steps) (cosine's
  /// horizon: the run's length in steps of t). The one place a protocol
  /// gets its step size from.
  float lr_at(int64_t t) const;

  /// options[key] as a number; throws std::invalid_argument naming the key
  /// when it is not set or not a finite number.
  double number(const std::string& key) const;
};

class run_tracker {
public:
  using clock_type = std::chrono::steady_clock;

  explicit run_tracker(run_plan plan = {}) : plan_(std::move(plan)) {}

  const run_plan& plan() const { return plan_; }

  /// Starts the clock.
  void start() { t0_ = clock_type::now(), running_ = true; }
  bool running() const { return running_; }
  double wall() const { return std::chrono::duration<double>(clock_type::now() - t0_).count(); }

  /// Work that happened: samples with their summed mini-batch loss.
  void add_work(int64_t samples, double loss_sum, int64_t loss_count) {
    samples_ += samples, loss_sum_ += loss_sum, loss_count_ += loss_count;
  }
  void add_bytes(int64_t n) { bytes_ += n; }
  void step_done() { ++step_; }
  void worker_lost() { ++lost_; }

  int64_t step() const { return step_; }
  int64_t samples() const { return samples_; }
  int64_t bytes() const { return bytes_; }
  double epoch() const;

  /// True once the plan's step or sample budget is used up.
  bool budget_spent() const;
  /// True when an evaluation is due now (schedule crossed, or budget spent).
  bool eval_due() const;

  /// Marks the start of an evaluation (resets the train-loss window).
  /// `pauses_training`: whether training waits for it (sync protocols); only
  /// such evaluations count as eval_s, which train time excludes.
  void eval_started(bool pauses_training = true);
  /// Turns an evaluation into a metrics row (the extra map is the
  /// protocol's) and records it in the summary. Returns the row.
  metrics_row eval_finished(const evaluation& ev, std::map<std::string, double> extra = {});
  /// True if the last evaluation reached the target for the first time.
  bool target_reached() const { return target_hit_now_; }

  /// The final summary with `w` as the result.
  run_summary finish(const buffer& w, std::string reason);

  /// Extra summary fields a protocol wants in its final line (staleness, ...).
  std::map<std::string, double>& summary_extra() { return summary_extra_; }

private:
  run_plan plan_;
  clock_type::time_point t0_;
  clock_type::time_point eval_t0_;
  bool eval_pauses_ = true;
  bool running_ = false;
  int64_t step_ = 0;
  int64_t samples_ = 0;
  int64_t bytes_ = 0;
  int32_t lost_ = 0;
  double loss_sum_ = 0;
  int64_t loss_count_ = 0;
  int64_t last_eval_step_ = -1;
  int64_t last_eval_samples_ = -1;
  double eval_s_ = 0;
  bool target_hit_now_ = false;
  run_summary summary_;
  std::map<std::string, double> summary_extra_;
};

} // namespace chorus
