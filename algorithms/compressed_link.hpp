// Compression on the uplink: the link stages a protocol installs for
// --compress SPEC --error-feedback ef|ef21|none [--allow-biased].
//
//   worker i  --g-->  ENCODING UPLINK (worker's side; keeps the sender's
//                     error memory) --C(.) payload, gradient::encoded-->
//   round server: counts the payload's bytes, decodes it with the link's
//                 receiver end (round_rule::decode; ef21 keeps its own h_i)
//                 --> the rule combines d floats as always.
//
// The worker is unchanged and knows no compressor; the rule asks for
// gradients as before and never sees a payload (the lazy uplink in
// lazy_sgd.cpp is the same pattern). What it is not: a link model (a byte
// costs no time), or compression of the broadcast (downlink).
#pragma once

#include <caf/actor_system.hpp>

#include "actors/interfaces.hpp"
#include "engines/compressors.hpp"
#include "engines/round_server.hpp"

namespace chorus {

/// The uplink options of a completed plan (compress, error_feedback,
/// allow_biased), checked.
struct uplink_compression {
  compressor codec;
  feedback_kind feedback = feedback_kind::none;
  bool active = false;  ///< false for --compress none: nothing is installed
  /// Set when a biased compressor runs without feedback (--allow-biased).
  std::string warning;
};

/// Reads and checks the options. Throws std::invalid_argument for an
/// unknown compressor or feedback, and for a biased compressor (topk, sign)
/// without error feedback unless allow_biased is set.
uplink_compression read_uplink_compression(const run_plan& plan);

/// A decorator with the worker interface: forwards every request to
/// `worker` and answers compute requests with the gradient encoded by
/// `codec` under `feedback` (the sender's memory lives here), marked
/// gradient::encoded. Encode seeds derive from (seed, the worker's rank,
/// the step). It lives and dies with its worker.
worker_actor spawn_encoding_uplink(caf::actor_system& sys, worker_actor worker, compressor codec,
                                   feedback_kind feedback, uint64_t seed);

/// Installs `c` on a gradient protocol: wraps every ctx.workers[i] in an
/// encoding uplink (unless ctx.uplinks_at_workers: then the encoders are
/// already beside the workers, on their nodes) and sets rule.decode to the
/// receiver ends (one per worker). Logs c.warning to the run's monitor.
/// Nothing when !c.active.
void install_uplink_compression(caf::actor_system& sys, run_context& ctx, round_rule& rule,
                                const uplink_compression& c);

} // namespace chorus
