// Injected heterogeneity (design rule 4: time is a parameter). A worker can
// be made slower, delayed at random, placed behind a slow link, or crashed
// at a given step, so asynchronous effects can be studied on one machine.
// A worker with any injection is spawned detached and sleeps on its own
// thread, so it never holds a scheduler thread the others need.
#pragma once

#include <chrono>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace chorus {

/// A random (or fixed) extra time per step.
struct delay_spec {
  enum kind_t { none, fixed, uniform, exponential };
  kind_t kind = none;
  double a_ms = 0;  ///< fixed: the delay; uniform: low; exponential: the mean
  double b_ms = 0;  ///< uniform: high

  /// Parses "fixed:2ms", "uniform:1ms,5ms", "exp:2ms" (units ms, s, us; a
  /// bare number is ms). Throws std::invalid_argument listing the forms.
  static delay_spec parse(const std::string& spec);
  std::string to_string() const;
  std::chrono::microseconds sample(std::mt19937_64& rng) const;
  bool active() const { return kind != none; }
};

/// What is injected into one worker.
struct injection {
  double slowdown = 1;        ///< compute takes this many times longer (>= 1)
  delay_spec step_delay;      ///< extra time per step
  double link_delay_ms = 0;   ///< one-way delay on the worker's link, each direction
  int64_t crash_at_step = -1; ///< die on the first request for a step >= this; -1: never

  bool active() const {
    return slowdown != 1 || step_delay.active() || link_delay_ms > 0 || crash_at_step >= 0;
  }
  /// A short description for logs and configs ("slow x4, crash at 500").
  std::string describe() const;
};

/// Per-worker injections parsed from the runner's flags:
///   slow     "3:4" or "3:4,1:2"   worker 3 four times slower (and 1 twice)
///   delay    delay_spec, applied to every worker
///   link     "1ms", applied to every worker's link
///   crash    "2:500" or "2:500,3:800"   worker 2 dies at step 500
/// Throws std::invalid_argument naming the bad part (and worker ranks out
/// of range for `workers`).
std::vector<injection> parse_injections(int workers, const std::string& slow,
                                        const std::string& delay, const std::string& link,
                                        const std::string& crash);

/// Parses a duration "250us", "2ms", "1.5s" or a bare number of ms into ms.
double parse_millis(const std::string& text);

} // namespace chorus
