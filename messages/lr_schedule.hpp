// Step-size schedules: eta_t = eta * s(t) (--lr-schedule). One function of
// the step t for every protocol; what t counts is the protocol's (the run
// plan's lr_clock says: the server's step for sync and async protocols, the
// local step for local SGD, RI-SGD and gossip peers), and t starts at 0.
//   const           s(t) = 1
//   inv:T0          s(t) = 1 / (1 + t / T0)           (T0 > 0; O(1/t) decay)
//   invsqrt[:T0]    s(t) = 1 / sqrt(1 + t / T0)       (T0 > 0, default 1)
//   cosine          s(t) = (1 + cos(pi min(t, T) / T)) / 2,  T: the run's
//                   length in steps of t (from --steps; Loshchilov & Hutter
//                   2017, SGDR, without restarts and with eta_min = 0)
//   step:EVERY,F    s(t) = F^floor(t / EVERY)         (EVERY >= 1, 0 < F <= 1)
// The decaying ones are the schedules under which proximal SGD's iterates
// converge to the optimum (sum eta_t = inf, sum eta_t^2 < inf for inv).
// A plain value that sits in messages/ because run plans carry it.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace chorus {

struct lr_schedule {
  enum kind_t : int32_t { kind_const = 0, kind_inv, kind_invsqrt, kind_cosine, kind_step };
  int32_t kind = kind_const;
  double t0 = 1;        ///< inv, invsqrt: the step scale T0
  int64_t every = 1;    ///< step: decay every EVERY steps
  double factor = 1;    ///< step: by this factor

  /// Parses "const", "inv:T0", "invsqrt", "invsqrt:T0", "cosine",
  /// "step:EVERY,FACTOR"; throws std::invalid_argument naming the spec and
  /// the valid forms on anything else.
  static lr_schedule parse(const std::string& spec);
  /// The spec parse() accepts back.
  std::string to_string() const;
  /// s(t) for t >= 0 (t < 0 counts as 0); `horizon` is cosine's T (> 0;
  /// the others ignore it).
  double scale(int64_t t, int64_t horizon) const;
  /// Whether s needs the run's length (cosine).
  bool needs_horizon() const { return kind == kind_cosine; }
  bool constant() const { return kind == kind_const; }
};

/// The valid forms, for help texts and errors.
extern const char* const lr_schedule_forms;

/// Each form with its s(t), for `chorus list`.
std::vector<std::pair<std::string, std::string>> lr_schedule_names();

} // namespace chorus
