// Compression on the links between the workers and a server: the stages a
// protocol installs for --compress SPEC [--compress-down SPEC]
// --error-feedback ef|ef21|none [--allow-biased].
//
//   worker i <--> WORKER-SIDE STAGE (beside the worker: the sender's error
//                 memory for the uplink, and the replica of the broadcast
//                 model for the downlink)
//            <--> server: counts the payloads' bytes; decodes uplink
//                 payloads with the receiver end (ef21 keeps its own h_i);
//                 encodes its broadcast with its own error memory.
//
// Uplink (--compress). A gradient reply (compute) is sent as C(g) marked
// gradient::encoded; a local-steps reply (local) is sent as the compressed
// model CHANGE C(x_i - w) marked local_result::encoded, and the server
// rebuilds w + D(C(x_i - w)). Error feedback acts on what is sent:
//   ef    p_i = v_i + e_i,  send C(p_i),  e_i <- p_i - D(C(p_i))
//   ef21  send C(v_i - h_i), both ends h_i <- h_i + D(C(v_i - h_i)), use h_i
// (v_i: the gradient, or the model change over the local steps).
//
// Downlink (--compress-down). The server keeps w_hat, the model every worker
// holds, and sends the compressed change instead of the model: from the
// rule's new weights w+ (computed from w_hat as always)
//   D_t = w+ - w_hat,  p = D_t + e,  send C(p),  e <- p - D(C(p)),
//   w_hat <- w_hat + D(C(p))
// (--error-feedback none: send C(D_t), no e; ef21: send C(D_t - h), both
// ends h <- h + D(.), w_hat <- w_hat + h). The first round sends w_hat in
// full; each worker-side stage rebuilds w_hat exactly (same payloads, same
// float operations), so the workers compute at the server's own w_hat and
// the model the run evaluates and outputs is w_hat. A worker must see every
// broadcast: --compress-down refuses client sampling (fraction < 1).
//
// With both directions and ef this is error-compensated double compression
// (local_sgd.cpp writes out the update). The worker and the rule know no
// compressor; the rule never sees a payload (the lazy uplink in lazy_sgd.cpp
// is the same pattern). What it is not: a link model (a byte costs no time).
#pragma once

#include <caf/actor_system.hpp>

#include "actors/interfaces.hpp"
#include "engines/async_server.hpp"
#include "engines/compressors.hpp"
#include "engines/round_server.hpp"

namespace chorus {

/// The compression options of a completed plan (compress, compress_down,
/// error_feedback, allow_biased), checked.
struct uplink_compression {
  compressor codec;  ///< the uplink's
  feedback_kind feedback = feedback_kind::none;  ///< both directions
  bool active = false;  ///< false for --compress none: no uplink encoder
  compressor down_codec;     ///< the broadcast's (--compress-down)
  bool down_active = false;  ///< false for --compress-down none (or absent)
  /// Set when a biased compressor runs without feedback (--allow-biased).
  std::string warning;
  /// Whether anything sits beside the workers.
  bool any() const { return active || down_active; }
};

/// Reads and checks the options. Throws std::invalid_argument for an
/// unknown compressor or feedback, for feedback without any compressor, and
/// for a biased compressor (topk, sign) in either direction without error
/// feedback unless allow_biased is set.
uplink_compression read_uplink_compression(const run_plan& plan);

/// The worker-side stage, a decorator with the worker interface. Compute
/// and local requests: a broadcast marked weights::encoded is first added
/// to the replica (when c.down_active; one not encoded replaces it), and the
/// worker gets full weights; when c.active the reply is encoded as above,
/// with the sender's memory kept here. Evaluate, apply and fetch are
/// forwarded. Encode seeds derive from (seed, the worker's rank, the step).
/// It lives and dies with its worker.
worker_actor spawn_encoding_uplink(caf::actor_system& sys, worker_actor worker,
                                   const uplink_compression& c, uint64_t seed);

/// Installs `c` on a round protocol (sync_sgd, local_sgd, ri_sgd): wraps
/// every ctx.workers[i] in the worker-side stage (unless
/// ctx.uplinks_at_workers: then the nodes put them beside the workers),
/// sets rule.decode to the receiver ends (one per worker) and, for the
/// downlink, wraps rule.combine and sets rule.broadcast. Call it after
/// rule.combine is final. Logs c.warning to the run's monitor. Nothing when
/// !c.any(). Throws std::invalid_argument for c.down_active with client
/// sampling (option fraction < 1) or a reducer (allreduce=nccl).
void install_uplink_compression(caf::actor_system& sys, run_context& ctx, round_rule& rule,
                                const uplink_compression& c);

/// The same for the asynchronous server (async_sgd): the uplink only
/// (each pushed gradient); throws std::invalid_argument if c.down_active.
void install_uplink_compression(caf::actor_system& sys, run_context& ctx, async_rule& rule,
                                const uplink_compression& c);

} // namespace chorus
