// Gradient diversity as a metrics column (Yin, Pananjady, Lam,
// Papailiopoulos, Ramchandran, Bartlett, "Gradient Diversity: a Key
// Ingredient for Scalable Distributed Learning", AISTATS 2018, Definition 1,
// taken here over the workers' updates of one round instead of single
// samples):
//   Delta = sum_i ||u_i||^2 / ||sum_i u_i||^2
// u_i = worker i's gradient (sync SGD) or its model change x_i - w over the
// round's local steps (local SGD, RI-SGD). Delta = 1/m when the m updates
// agree, 1 when they are orthogonal, large when they cancel; the paper's
// mechanism for RI-SGD and large batches is that more diverse (less
// redundant) updates make a bigger averaged step worth taking.
#include "algorithms/protocols.hpp"

#include <cmath>
#include <memory>
#include <mutex>

namespace chorus {

namespace {

// The round's numerator and denominator, summed over the slices of a split
// combine (both are sums over coordinates); the combiners of one round run
// concurrently, and the metrics are read between rounds.
struct diversity_sums {
  std::mutex lock;
  int64_t round = -1;
  double num = 0, den = 0;
  double last = -1;  // the value of the last finished round; < 0: none yet

  void add(int64_t r, double n, double d) {
    std::lock_guard<std::mutex> guard(lock);
    if (r != round) {
      round = r;
      num = den = 0;
    }
    num += n;
    den += d;
  }
  double value() {
    std::lock_guard<std::mutex> guard(lock);
    if (den > 0 && std::isfinite(num / den))
      last = num / den;
    return last;
  }
};

// Adds the round's sums over one slice (w, values: the same coordinates).
void accumulate(diversity_sums& sums, backend& be, cview w, const std::vector<cview>& values,
                const std::vector<round_reply>& replies, int64_t round, bool model_changes) {
  std::vector<cview> us;
  for (size_t k = 0; k < replies.size() && k < values.size(); ++k)
    if (replies[k].sender >= 0 && !replies[k].values.empty() && values[k].size == w.size)
      us.push_back(values[k]);
  if (us.empty())
    return;
  double sum_sq = 0;
  auto total = be.allocate(w.size);
  std::vector<float> coeffs(us.size(), 1.0f);
  if (model_changes) {
    // sum_i (x_i - w) = sum_i x_i - m w, one weighted sum.
    for (auto& x : us)
      sum_sq += be.squared_distance(x, w);
    coeffs.push_back(-static_cast<float>(us.size()));
    us.push_back(w);
  } else {
    for (auto& g : us)
      sum_sq += be.squared_norm(g);
  }
  be.weighted_sum(us, coeffs, total.span());
  sums.add(round, sum_sq, be.squared_norm(total.span()));
}

} // namespace

void add_grad_diversity(round_rule& rule, bool model_changes) {
  auto sums = std::make_shared<diversity_sums>();
  // Both paths: the whole combine, and the sliced one the server uses for a
  // large host model (round_rule::combine_slice); each round takes one.
  auto combine = rule.combine;
  rule.combine = [combine, sums, model_changes](backend& be, const buffer& w,
                                                const std::vector<round_reply>& replies,
                                                int64_t round) {
    std::vector<cview> values;
    for (auto& r : replies)
      values.push_back(r.values);
    accumulate(*sums, be, w, values, replies, round, model_changes);
    return combine(be, w, replies, round);
  };
  if (auto slice = rule.combine_slice)
    rule.combine_slice = [slice, sums, model_changes](backend& be, cview w,
                                                      const std::vector<cview>& values,
                                                      const std::vector<round_reply>& replies,
                                                      view out, int64_t round) {
      accumulate(*sums, be, w, values, replies, round, model_changes);
      slice(be, w, values, replies, out, round);
    };
  auto metrics = rule.metrics;
  rule.metrics = [metrics, sums] {
    auto m = metrics ? metrics() : std::map<std::string, double>{};
    if (const double v = sums->value(); v >= 0)
      m["grad_diversity"] = v;
    return m;
  };
}

} // namespace chorus
