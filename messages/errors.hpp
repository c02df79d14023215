// Protocol-level failures as caf::error values (rule 6 of the design): a lost
// peer, a timeout or a rejected gradient is something a protocol handles, not
// an exception. Broken invariants use CHORUS_ASSERT instead.
#pragma once

#include <cstdint>
#include <string>

#include <caf/atom.hpp>
#include <caf/error.hpp>

namespace chorus {

/// Chorus's error codes (category atom "chorus").
enum class errc : uint8_t {
  none = 0,
  /// A worker (or peer) terminated or became unreachable.
  worker_lost,
  /// A reply did not arrive in time.
  timeout,
  /// A gradient or weight vector contained NaN or Inf.
  non_finite,
  /// Two sides disagree about a vector's length.
  dimension_mismatch,
  /// A request the receiver cannot serve (bad argument).
  bad_request,
  /// Every worker is gone: the protocol cannot go on.
  no_workers_left,
  /// An exception escaped a computation (its text is the error's context).
  compute_failed,
};

/// Human-readable name of an error code.
std::string to_string(errc x);

/// The error category atom.
constexpr caf::atom_value errc_category = caf::atom("chorus");

/// Makes a caf::error in Chorus's category, with a message as context.
caf::error make_error(errc x, std::string context = {});

/// Renders any caf::error, Chorus's with their context, for logs and users.
std::string describe(const caf::error& err);

/// The one decision every engine makes about an error from a worker or peer:
/// true if it fails the whole run (a Chorus error such as a NaN gradient, a
/// dimension mismatch or a failed computation: a bug or bad data that would
/// recur), false if it only loses that one worker (errc::worker_lost, a
/// timeout, a terminated or unreachable actor: the others go on).
bool is_run_failure(const caf::error& err);

} // namespace chorus
