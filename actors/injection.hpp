// Injected heterogeneity (design rule 4: time is a parameter). A worker can
// be made slower, delayed at random, placed behind a slow link, or crashed
// at a given step, so asynchronous effects can be studied on one machine.
// A worker with any injection is spawned detached (its own thread, as on its
// own machine). Its injected waits are never sleeps: it schedules its reply
// on the actor clock and is free at once, so a huge wait still lets the run
// fail by its timeout and the process exit.
#pragma once

#include <chrono>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace chorus {

/// The longest duration an injection flag may give (1e15 ms, about 31,700
/// years); longer ones are refused, so no conversion to a time type overflows.
constexpr double max_injected_ms = 1e15;

/// The largest --slow factor.
constexpr double max_slowdown = 1e12;

/// The largest --crash step: 2^53, up to which every whole number is exact
/// in the double the flag is read as.
constexpr int64_t max_crash_step = int64_t{1} << 53;

/// The longest wait a worker schedules (100 years): a longer one (a huge
/// slowdown of a long step, an exponential sample far in the tail) is cut to
/// it, which no run can tell apart.
constexpr std::chrono::microseconds max_injected_wait{int64_t{100} * 365 * 24 * 3600 * 1000000};

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
  /// One draw, at most max_injected_wait.
  std::chrono::microseconds sample(std::mt19937_64& rng) const;
  bool active() const { return kind != none; }
};

/// What is injected into one worker.
struct injection {
  double slowdown = 1;        ///< compute takes this many times longer (>= 1)
  delay_spec step_delay;      ///< extra time per step
  double link_delay_ms = 0;   ///< one-way delay on the worker's link, each direction
  /// Die on the first compute or local request for a protocol step >= this
  /// (the request's weights::step, the `step` of metrics.jsonl and of the
  /// summary: a round for round-based protocols, a round of tau local
  /// steps for local_sgd and ri_sgd, one update for async ones, one
  /// iteration of the peer for gossip); -1: never.
  int64_t crash_at_step = -1;

  bool active() const { return delays() || crash_at_step >= 0; }
  /// Whether the worker's replies are held back (slowdown, delay or link).
  bool delays() const { return slowdown != 1 || step_delay.active() || link_delay_ms > 0; }
  /// The time a step that computed for `compute` (thread CPU time) is held
  /// back: the slowdown's share, one delay draw and both link directions,
  /// at most max_injected_wait.
  std::chrono::microseconds extra_time(std::chrono::nanoseconds compute,
                                       std::mt19937_64& rng) const;
  /// A short description for logs and configs ("slow x4, crash at protocol
  /// step 500").
  std::string describe() const;
};

/// Per-worker injections parsed from the runner's flags:
///   slow     "3:4" or "3:4,1:2"   worker 3 four times slower (and 1 twice)
///   delay    delay_spec, applied to every worker
///   link     "1ms", applied to every worker's link
///   crash    "2:500" or "2:500,3:800"   worker 2 dies at protocol step 500
/// Throws std::invalid_argument naming the bad part: worker ranks out of
/// range for `workers`, a worker named twice in `slow` or in `crash`, values
/// out of range (durations over max_injected_ms, factors over max_slowdown,
/// steps over max_crash_step).
std::vector<injection> parse_injections(int workers, const std::string& slow,
                                        const std::string& delay, const std::string& link,
                                        const std::string& crash);

/// Parses a duration "250us", "2ms", "1.5s" or a bare number of ms into ms;
/// throws std::invalid_argument when it is negative or over max_injected_ms.
double parse_millis(const std::string& text);

} // namespace chorus
