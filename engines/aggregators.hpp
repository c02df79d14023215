// Robust aggregation rules as values: mean, coordinate-wise median, trimmed
// mean, Krum, Multi-Krum, geometric median, centered clipping and the
// spectral filter, plus the pre-aggregations nearest-neighbour mixing,
// bucketing and clipping that map n vectors to n (or ceil(n/S)) vectors
// before a rule runs. One explicit table (aggregator_registry) names them
// all; make_aggregator builds one from a spec such as "trimmed:2" or, with a
// pre-aggregation, "krum" after "nnm".
//
// Why engines/ and not algorithms/: the engines are the ones that call a
// rule on the vectors they gather (the round server's replies, the async
// server's buffer of the last k arrivals, a gossip peer combining its
// neighbours), and the engine layer cannot see algorithms/. Topologies
// (engines/topology.hpp) sit here for the same reason. algorithms/ and
// tools/ see this header too, so a protocol rule can still build and call one.
//
// What it is not: an actor, an attack, or a protocol. It sends nothing and
// keeps no state between calls; what varies per call (the round, for
// bucketing's shuffle; the previous aggregate, for centered clipping) comes in
// an aggregate_context.
//
// Inputs are buffers of equal length d (device buffers are brought to the
// host). Every call first sets aside the invalid inputs -- a NaN or Inf
// anywhere, or a length other than the expected one -- flags them `invalid`
// and aggregates the rest, instead of throwing: one bad worker must not stop
// a run. Each invalid input is counted as one of the f Byzantine ones (an
// honest worker never sends one), so the rule runs on n' valid inputs with
// f' = max(0, f - invalid).
//
// Cost for n inputs of d floats (n ~ 64, d ~ 1M is the target):
//   mean, clip                        O(n d)
//   median, trimmed                   O(n d) (selection per coordinate, no sort)
//   krum, multikrum, nnm, geomed,     O(n^2 d) for the Gram matrix X^T X, a
//   filter                            blocked double-precision rank update (a
//                                     GEMM) that reads each input once; then
//                                     O(n^2)..O(n^3) per iteration on n x n
//                                     matrices, never on d-vectors; nnm adds
//                                     an O(n^2 d) blocked GEMM for its outputs
//   cc:TAU,L                          O(L n d) (+ a median when no centre)
//   bucket                            O(n d)
// Memory: the aggregate (d floats) plus, for coordinate-wise rules, a block
// of n x 2048 values; pre-aggregations allocate their n' outputs. No rule
// copies the n inputs. Distances from the Gram matrix are exact up to
// 1e-16 (||x_i||^2 + ||x_j||^2) per pair, so a huge Byzantine vector does not
// blur the distances between honest ones.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "messages/buffer.hpp"

namespace chorus {

/// What an aggregation did with one input.
enum class input_fate : uint8_t {
  kept = 0,           ///< took part with its full share
  down_weighted = 1,  ///< took part with less than its share (clipped, or far off)
  rejected = 2,       ///< valid, but its weight in the aggregate is 0
  invalid = 3,        ///< NaN/Inf or the wrong length: set aside before the rule ran
};

/// "kept", "down_weighted", "rejected", "invalid".
const char* to_string(input_fate x);

/// What varies from call to call.
struct aggregate_context {
  int64_t round = 0;   ///< bucketing draws its shuffle from (seed, round)
  uint64_t seed = 1;
  buffer centre;       ///< centered clipping starts here (the previous aggregate); empty: the median
  size_t dim = 0;      ///< the expected length; 0: the most common length among the inputs
  /// Filled by the call for the rule: how many inputs were set aside as invalid.
  size_t invalid = 0;
};

/// An aggregate and what each input contributed to it.
struct aggregation {
  /// The aggregate (length d); empty when no input was valid (`used` = 0).
  buffer value;
  /// Per input: its share of the aggregate. For rules that output a convex
  /// combination sum_i w_i x_i (mean, krum, multikrum, geomed, filter, and
  /// through nnm/bucket) exactly those w_i, summing to 1; for coordinate-wise
  /// rules, the fraction of coordinates (weighted as in the rule) where it
  /// was used, also summing to 1; for clipping rules the clip factor over n.
  /// 0 for invalid inputs.
  std::vector<double> weights;
  /// Per input: what happened to it (see each rule in aggregator_registry).
  std::vector<input_fate> fates;
  /// Number of valid inputs the rule ran on.
  size_t used = 0;
  /// Iterations an iterative rule ran (geomed, cc, filter: removals); else 0.
  int iterations = 0;

  /// Number of inputs with fate `x`.
  size_t count(input_fate x) const;
};

/// A robust aggregation rule as a value. Copy it freely; it holds no state
/// between calls.
class aggregator {
public:
  /// Runs on valid, equal-length host inputs (n >= 1) with f' Byzantine.
  using rule_fn =
    std::function<aggregation(const std::vector<buffer>& xs, int f, const aggregate_context& ctx)>;
  /// Throws std::invalid_argument when n valid inputs cannot tolerate f
  /// Byzantine ones, `invalid` more having been set aside already.
  using check_fn = std::function<void(size_t n, int f, size_t invalid)>;

  aggregator() = default;
  aggregator(std::string name, int f, check_fn check, rule_fn rule);

  /// The spec it was built from ("nnm>krum" for a composition).
  const std::string& name() const { return name_; }
  /// The number of Byzantine inputs it is built to tolerate.
  int f() const { return f_; }
  /// Throws std::invalid_argument, naming the rule, n, f and the condition,
  /// when n inputs cannot tolerate f (krum: n > 2f + 2, ...). Call it when a
  /// run starts; every call checks again with the valid inputs it got.
  void check(size_t n) const;
  /// Aggregates `xs`: sets aside invalid inputs, checks n' against f',
  /// runs the rule. Throws std::invalid_argument only when the valid inputs
  /// are too few for f' (see check).
  aggregation operator()(const std::vector<buffer>& xs, const aggregate_context& ctx = {}) const;

  /// The rule itself, without the validity screen and the check (compose uses it).
  const rule_fn& rule() const { return rule_; }
  /// The check itself (compose uses it).
  const check_fn& checker() const { return check_; }

private:
  std::string name_;
  int f_ = 0;
  check_fn check_;
  rule_fn rule_;
};

/// What a pre-aggregation hands to the rule after it: m vectors, each a
/// combination of the n inputs.
struct pre_output {
  std::vector<buffer> xs;     ///< m vectors
  std::vector<double> mix;    ///< m x n row-major: xs[r] = sum_i mix[r*n+i] * input_i
  std::vector<bool> clipped;  ///< per input: scaled down (clip); else all false
};

/// A map from n vectors to m vectors that runs before a rule.
struct pre_aggregation {
  std::string name;
  /// m for n inputs.
  std::function<size_t(size_t n)> outputs;
  /// Throws std::invalid_argument when n inputs cannot tolerate f.
  aggregator::check_fn check;
  /// Runs on valid equal-length inputs.
  std::function<pre_output(const std::vector<buffer>& xs, int f, const aggregate_context& ctx)> run;
};

/// `inner` applied to the output of `pre`; its weights are mapped back to
/// the n inputs (w = mix^T w'), and an input `pre` clipped is down_weighted.
/// Its check applies inner's check to (pre.outputs(n), f): f Byzantine
/// inputs spoil at most f of nnm's or bucketing's outputs.
aggregator compose(const pre_aggregation& pre, const aggregator& inner);

/// One registry entry.
struct aggregator_info {
  std::string name;    ///< what a spec starts with
  std::string usage;   ///< the spec with its parameters, e.g. "cc:TAU[,ITERS]"
  std::string help;    ///< one line: the rule
  std::string needs;   ///< the condition on n and f, e.g. "n > 2f + 2"
  bool pre = false;    ///< a pre-aggregation (--pre), not a rule (--aggregator)
};

/// Every rule and pre-aggregation, in the order `chorus list` prints them.
const std::vector<aggregator_info>& aggregator_registry();

/// The rule `spec` tolerating f Byzantine inputs. Throws std::invalid_argument
/// on an unknown name (listing the valid ones), a bad parameter, f < 0, or a
/// pre-aggregation given as a rule.
aggregator make_aggregator(const std::string& spec, int f);

/// The pre-aggregation `spec`; throws std::invalid_argument as make_aggregator.
pre_aggregation make_pre_aggregation(const std::string& spec);

/// make_aggregator(rule, f), preceded by the pre-aggregations in `pre` (a
/// '+'-separated chain such as "clip:10+nnm", applied left to right; empty:
/// none).
aggregator make_aggregator(const std::string& rule, const std::string& pre, int f);

// -- building blocks (exposed for benchmarks and tests) ----------------------------

/// The Gram matrix G_ij = <x_i, x_j> (n x n, row-major), in double, blocked.
std::vector<double> gram_matrix(const std::vector<buffer>& xs);

/// Krum's score of each input: the sum of its squared distances to its
/// n - f - 2 nearest other inputs (needs n > f + 2).
std::vector<double> krum_scores(const std::vector<buffer>& xs, int f);

/// Coordinate-wise median of equal-length host vectors (mean of the two
/// middle values for an even count).
buffer coordinate_median(const std::vector<buffer>& xs);

} // namespace chorus
