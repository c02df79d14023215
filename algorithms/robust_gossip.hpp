// Robust mixing for gossip_sgd (--aggregator on a decentralized run): each
// peer combines its own message of the round and its in-neighbours' with a
// robust rule instead of the weighted sum sum_j w_ij x_j. Two forms:
//
//   cc:TAU | cc:auto   ClippedGossip (He, Karimireddy and Jaggi 2022,
//                      "Byzantine-robust decentralized learning via
//                      ClippedGossip"), with x_i the peer's own message:
//                        x_i <- x_i + sum_{j != i} w_ij clip_tau_i(x_j - x_i),
//                        clip_tau(z) = z min(1, tau / ||z||).
//                      A Byzantine neighbour j moves x_i by at most w_ij tau_i,
//                      whatever it sends; honest neighbours within tau_i of
//                      x_i are mixed exactly as plain gossip mixes them.
//                      The radius tau_i:
//                        cc:TAU   fixed, the same for every peer and round;
//                        cc:auto  per peer and round, from --f (the number of
//                                 Byzantine in-neighbours a peer expects):
//                                 sort the valid in-neighbours by
//                                 d_j = ||x_j - x_i||, farthest first; delta_i
//                                 = the sum of the f' largest weights w_ij
//                                 among them (f' = f minus the messages set
//                                 aside as invalid this round); the clipped
//                                 set is the shortest prefix whose weight
//                                 reaches delta_i, and tau_i is the distance
//                                 of the first neighbour after it (0 when
//                                 none is left). With equal weights: the f
//                                 farthest neighbours are clipped to the
//                                 distance of the (f+1)-th. This is our form
//                                 of the paper's adaptive radius: its theorem
//                                 takes tau_i^2 = (1/delta_i) sum_{j good}
//                                 w_ij E||x_j - x_i||^2, which needs to know
//                                 the good neighbours; clipping the delta_i
//                                 of weight that lies farthest out puts tau_i
//                                 at an honest neighbour's distance as long as
//                                 at most f in-neighbours are Byzantine.
//   any other rule     (median, trimmed:B, krum, geomed, ..., with --pre and
//                      --f; engines/aggregators.hpp) on the m = 1 + in-degree
//                      messages, unweighted (W's weights are not used), in
//                      the spirit of BRIDGE (Yang and Bajwa 2019): x_i <-
//                      RULE(x_i, x_j : j in-neighbours). --f must be
//                      tolerable with the fewest inputs any peer gets (a
//                      ring gives 3: median with f = 1 runs, krum does not).
//
// Every form first sets aside the neighbour messages that are non-finite or
// of the wrong length (the peer keeps its own weight for them), counting
// them in gossip_vars::rejected and naming the first one in the log; the
// neighbours clipped (or given less than their share by a rule) are counted
// in gossip_vars::clipped. Refused, with a message: cc:TAU,ITERS with ITERS
// other than 1 (ClippedGossip clips once per round), --pre with cc, --f
// with a fixed radius (it bounds every neighbour alike), cc:auto without an
// f or with f >= the fewest in-neighbours (nothing would be mixed).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engines/aggregators.hpp"
#include "engines/gossip.hpp"

namespace chorus {

/// The result of one ClippedGossip step.
struct clipped_gossip_step {
  buffer x;                   ///< x_i + sum_j w_j clip_tau(x_j - x_i)
  double tau = 0;             ///< the radius used
  std::vector<bool> clipped;  ///< per input (index 0 = own: never)
  std::vector<bool> invalid;  ///< per input: set aside (non-finite or wrong length)
};

/// One ClippedGossip step on host buffers: xs[0] is the peer's own message,
/// xs[k] (k >= 1) an in-neighbour's with weight w[k] (w[0] is unused: the
/// self term clip(x_i - x_i) is 0). tau > 0: fixed radius; tau <= 0: the
/// adaptive radius above with f expected Byzantine in-neighbours.
clipped_gossip_step clipped_gossip(const std::vector<buffer>& xs, const std::vector<float>& w,
                                   double tau, int f);

/// A peer's robust mix (shared by all peers of a run; it keeps no state).
class robust_mix {
public:
  /// The mix the plan's aggregator, pre and f ask for under a topology
  /// whose peers get at least `fewest` inputs (fewest_mix_inputs); null for
  /// aggregator "none". Throws std::invalid_argument as described above.
  static std::shared_ptr<const robust_mix> make(const run_plan& plan, size_t fewest);

  /// x_i's combination of xs[0] (own) and xs[1..] (senders[k]'s, weights
  /// w[k]) at `round`; adds to v.rejected and v.clipped, lines to v.log.
  buffer operator()(gossip_vars& v, const std::vector<buffer>& xs,
                    const std::vector<int32_t>& senders, const std::vector<float>& w,
                    int64_t round) const;

  const std::string& name() const { return name_; }

private:
  std::string name_;
  bool clipped_ = false;
  double tau_ = 0;  // clipped: > 0 fixed, 0 adaptive
  int f_ = 0;
  aggregator rule_;
  uint64_t seed_ = 1;
};

} // namespace chorus
