// Robust aggregation inside a protocol (see robust.hpp).
#include "algorithms/robust.hpp"

#include <stdexcept>

namespace chorus {

robust_aggregation::robust_aggregation(aggregator agg, uint64_t seed)
  : agg_(std::move(agg)), seed_(seed) {}

void robust_aggregation::note_invalid(int32_t sender, int64_t round) {
  auto& rec = workers_[sender];
  if (rec.invalid++ == 0)
    log_.push_back("worker " + std::to_string(sender) + " sent a non-finite or malformed vector "
                   "in round " + std::to_string(round) + "; rejected by " + agg_.name()
                   + " (further ones are counted in invalid_w" + std::to_string(sender) + ")");
}

buffer robust_aggregation::operator()(const std::vector<buffer>& xs,
                                      const std::vector<int32_t>& senders, int64_t round,
                                      size_t dim) {
  aggregate_context ctx;
  ctx.round = round;
  ctx.seed = seed_;
  ctx.centre = previous_;
  ctx.dim = dim;
  auto a = agg_(xs, ctx);
  for (auto key : {"kept", "down_weighted", "rejected", "invalid"})
    last_[key] = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    const int32_t sender = i < senders.size() ? senders[i] : static_cast<int32_t>(i);
    auto fate = a.fates[i];
    ++last_[to_string(fate)];
    ++total_[to_string(fate)];
    auto& rec = workers_[sender];
    ++rec.rounds;
    if (a.weights[i] > 0)
      ++rec.passed;
    rec.share += a.weights[i] * static_cast<double>(xs.size());
    if (fate == input_fate::invalid)
      note_invalid(sender, round);
  }
  if (a.value.empty())
    throw std::invalid_argument(agg_.name() + ": no valid input in round " + std::to_string(round));
  previous_ = a.value;
  return a.value;
}

std::map<std::string, double> robust_aggregation::metrics() const {
  std::map<std::string, double> m;
  for (auto key : {"kept", "down_weighted", "rejected", "invalid"}) {
    auto l = last_.find(key);
    auto t = total_.find(key);
    m[std::string("agg_") + key] = l == last_.end() ? 0.0 : static_cast<double>(l->second);
    m[std::string("agg_") + key + "_total"] = t == total_.end() ? 0.0 : static_cast<double>(t->second);
  }
  for (auto& [rank, rec] : workers_) {
    if (rec.rounds > 0) {
      m["pass_rate_w" + std::to_string(rank)] =
        static_cast<double>(rec.passed) / static_cast<double>(rec.rounds);
      m["share_w" + std::to_string(rank)] = rec.share / static_cast<double>(rec.rounds);
    }
    if (rec.invalid > 0)
      m["invalid_w" + std::to_string(rank)] = static_cast<double>(rec.invalid);
  }
  return m;
}

std::vector<std::string> robust_aggregation::take_log() {
  std::vector<std::string> out;
  out.swap(log_);
  return out;
}

std::shared_ptr<robust_aggregation> make_robust(const run_plan& plan, size_t n) {
  const std::string& rule = plan.text("aggregator");
  const std::string pre = plan.text("pre") == "none" ? "" : plan.text("pre");
  const double f = plan.number("f");
  if (rule.empty() || rule == "none") {
    if (!pre.empty() || f != 0)
      throw std::invalid_argument("--pre and --f need --aggregator (e.g. --aggregator median)");
    return nullptr;
  }
  if (!(f >= 0) || f != static_cast<double>(static_cast<int>(f)))
    throw std::invalid_argument("--f must be a whole number >= 0");
  auto agg = make_aggregator(rule, pre, static_cast<int>(f));
  try {
    agg.check(n);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument("--aggregator " + agg.name() + " with --f "
                                + std::to_string(static_cast<int>(f)) + " cannot run on "
                                + std::to_string(n) + " inputs per aggregation: " + e.what());
  }
  return std::make_shared<robust_aggregation>(std::move(agg),
                                              static_cast<uint64_t>(plan.number("seed")));
}

void attach_robust(round_rule& rule, std::shared_ptr<robust_aggregation> robust) {
  if (!robust)
    return;
  rule.reject_non_finite = true;
  auto inner = rule.metrics;
  rule.metrics = [inner, robust] {
    auto m = inner ? inner() : std::map<std::string, double>{};
    for (auto& [k, v] : robust->metrics())
      m[k] = v;
    return m;
  };
  rule.take_log = [robust] { return robust->take_log(); };
}

buffer robust_model_step(robust_aggregation& robust, backend& be, const buffer& w,
                         const std::vector<round_reply>& replies, int64_t round) {
  auto base = w.to_host();
  std::vector<buffer> deltas;
  std::vector<int32_t> senders;
  deltas.reserve(replies.size());
  for (auto& r : replies) {
    senders.push_back(r.sender);
    if (r.values.size() != base.size()) {
      deltas.push_back(r.values);  // wrong length (or empty): the aggregator sets it aside
      continue;
    }
    auto x = r.values.to_host();
    mutable_buffer d(base.size());
    for (size_t k = 0; k < d.size(); ++k)
      d[k] = x[k] - base[k];
    deltas.push_back(std::move(d).freeze());
  }
  auto u = be.adopt(robust(deltas, senders, round, base.size()));
  auto next = be.allocate(w.size());
  be.copy(w, next.span());
  be.axpy(1.0f, u, next.span());
  return std::move(next).freeze();
}

} // namespace chorus
