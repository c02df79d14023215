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

namespace chorus {

void add_grad_diversity(round_rule& rule, bool model_changes) {
  auto last = std::make_shared<double>(-1);  // < 0: none yet
  auto combine = rule.combine;
  rule.combine = [combine, last, model_changes](backend& be, const buffer& w,
                                                const std::vector<round_reply>& replies,
                                                int64_t round) {
    std::vector<cview> us;
    for (auto& r : replies)
      if (r.sender >= 0 && !r.values.empty() && r.values.size() == w.size())
        us.push_back(r.values);
    if (!us.empty()) {
      double sum_sq = 0;
      auto total = be.allocate(w.size());
      if (model_changes) {
        // sum_i (x_i - w) = sum_i x_i - m w, one weighted sum.
        for (auto& x : us)
          sum_sq += be.squared_distance(x, w);
        std::vector<float> coeffs(us.size(), 1.0f);
        us.push_back(w);
        coeffs.push_back(-static_cast<float>(coeffs.size()));
        be.weighted_sum(us, coeffs, total.span());
      } else {
        for (auto& g : us)
          sum_sq += be.squared_norm(g);
        be.weighted_sum(us, std::vector<float>(us.size(), 1.0f), total.span());
      }
      const double denominator = be.squared_norm(total.span());
      if (denominator > 0 && std::isfinite(sum_sq / denominator))
        *last = sum_sq / denominator;
    }
    return combine(be, w, replies, round);
  };
  auto metrics = rule.metrics;
  rule.metrics = [metrics, last] {
    auto m = metrics ? metrics() : std::map<std::string, double>{};
    if (*last >= 0)
      m["grad_diversity"] = *last;
    return m;
  };
}

} // namespace chorus
