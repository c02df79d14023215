// Robust aggregation inside a protocol: the options every protocol that can
// take an aggregator reads (aggregator, pre, f), the aggregator they build
// (engines/aggregators.hpp), and what it did, round after round.
//
// A protocol with an aggregator set calls it where it would take the mean:
// sync_sgd on the gradients, local_sgd and sync_sgd_avg on the model changes
// x_i - w, async_sgd on a window of arrivals (async_sgd.cpp says which).
// Without one (the default) nothing here runs and the protocols keep their
// plain (weighted) mean and their fail-fast on non-finite vectors.
//
// What is recorded, per aggregation, from the fates the aggregator reports:
//   agg_kept, agg_down_weighted, agg_rejected, agg_invalid   the last round's counts
//   agg_*_total                                              summed over the run
//   pass_rate_w<i>   share of the rounds worker i took part in where its
//                    weight in the aggregate was > 0 (the runner copies the
//                    Byzantine workers' to byz_pass_rate_w<i>)
//   share_w<i>       worker i's mean weight in the aggregates it took part
//                    in, over its fair share 1/m (m inputs): 1 = counted
//                    like everyone under the mean, 0 = never used. For
//                    coordinate-wise rules a pass rate of 1 only says it was
//                    used at some coordinate; the share says how much.
//   invalid_w<i>     non-finite or wrong-length vectors from worker i (when > 0)
// The first invalid vector of each worker is named in the log.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engines/aggregators.hpp"
#include "engines/round_server.hpp"

namespace chorus {

/// A protocol's robust aggregator and its record.
class robust_aggregation {
public:
  robust_aggregation(aggregator agg, uint64_t seed);

  const aggregator& rule() const { return agg_; }

  /// The aggregate of xs (sent by `senders`, one each) at `round`; dim is
  /// the expected length. Throws std::invalid_argument when the valid
  /// inputs are too few for f.
  buffer operator()(const std::vector<buffer>& xs, const std::vector<int32_t>& senders,
                    int64_t round, size_t dim);

  /// The metrics above.
  std::map<std::string, double> metrics() const;

  /// Log lines since the last call.
  std::vector<std::string> take_log();

private:
  void note_invalid(int32_t sender, int64_t round);
  struct worker_record {
    int64_t rounds = 0;
    int64_t passed = 0;
    int64_t invalid = 0;
    double share = 0;  // sum over rounds of weight * m
  };
  aggregator agg_;
  uint64_t seed_;
  buffer previous_;  // the last aggregate: centered clipping's centre
  std::map<int32_t, worker_record> workers_;
  std::map<std::string, int64_t> last_, total_;
  std::vector<std::string> log_;
};

/// The aggregator the plan's options ask for (null when `aggregator` is
/// "none" or empty), checked against n inputs per aggregation. Throws
/// std::invalid_argument for a bad spec, --pre or --f without --aggregator,
/// or an f that n inputs cannot tolerate.
std::shared_ptr<robust_aggregation> make_robust(const run_plan& plan, size_t n);

/// Wires `robust` into a round rule: non-finite replies are rejected per
/// worker, its metrics join the rule's, its log lines go to the run's log.
void attach_robust(round_rule& rule, std::shared_ptr<robust_aggregation> robust);

/// A round rule's combine for model-returning rounds (local steps): the
/// aggregate u of the changes x_i - w, then w + u.
buffer robust_model_step(robust_aggregation& robust, backend& be, const buffer& w,
                         const std::vector<round_reply>& replies, int64_t round);

} // namespace chorus
