// Robust mixing for gossip_sgd (see robust_gossip.hpp for the rules).
#include "algorithms/robust_gossip.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>

namespace chorus {

namespace {

bool valid_input(const buffer& x, size_t d) {
  if (x.size() != d)
    return false;
  for (size_t k = 0; k < d; ++k)
    if (!std::isfinite(x[k]))
      return false;
  return true;
}

std::string whole(double f) {
  return std::to_string(static_cast<long long>(f));
}

} // namespace

clipped_gossip_step clipped_gossip(const std::vector<buffer>& in, const std::vector<float>& w,
                                   double tau, int f) {
  if (in.empty() || w.size() != in.size())
    throw std::invalid_argument("clipped_gossip: one weight per input, and at least the own one");
  std::vector<buffer> xs;
  for (auto& x : in)
    xs.push_back(x.to_host());
  const size_t d = xs[0].size();
  clipped_gossip_step out;
  out.clipped.assign(xs.size(), false);
  out.invalid.assign(xs.size(), false);
  // d_j = ||x_j - x_i|| for the valid neighbours.
  std::vector<double> dist(xs.size(), 0.0);
  std::vector<size_t> valid;
  for (size_t j = 1; j < xs.size(); ++j) {
    if (!valid_input(xs[j], d)) {
      out.invalid[j] = true;
      continue;
    }
    double s = 0;
    for (size_t k = 0; k < d; ++k) {
      double e = static_cast<double>(xs[j][k]) - xs[0][k];
      s += e * e;
    }
    dist[j] = std::sqrt(s);
    valid.push_back(j);
  }
  if (tau > 0) {
    out.tau = tau;
  } else {
    // The adaptive radius: clip the delta_i of weight that lies farthest out.
    size_t invalid = xs.size() - 1 - valid.size();
    int f_left = std::max(0, f - static_cast<int>(invalid));
    std::vector<size_t> by_dist = valid;
    std::stable_sort(by_dist.begin(), by_dist.end(),
                     [&](size_t a, size_t b) { return dist[a] > dist[b]; });
    std::vector<double> ws;
    for (size_t j : valid)
      ws.push_back(w[j]);
    std::sort(ws.begin(), ws.end(), std::greater<double>());
    double delta = 0;
    for (size_t k = 0; k < ws.size() && k < static_cast<size_t>(f_left); ++k)
      delta += ws[k];
    double got = 0;
    size_t k = 0;
    // Relative slack: weights are floats, sums of them double.
    while (k < by_dist.size() && got < delta * (1 - 1e-6)) {
      got += w[by_dist[k]];
      ++k;
    }
    out.tau = k < by_dist.size() ? dist[by_dist[k]] : 0.0;
  }
  std::vector<double> acc(xs[0].begin(), xs[0].end());
  for (size_t j : valid) {
    if (dist[j] == 0)
      continue;
    double scale = std::min(1.0, out.tau / dist[j]);
    if (scale < 1)
      out.clipped[j] = true;
    const double c = w[j] * scale;
    for (size_t k = 0; k < d; ++k)
      acc[k] += c * (static_cast<double>(xs[j][k]) - xs[0][k]);
  }
  mutable_buffer x(d);
  for (size_t k = 0; k < d; ++k)
    x[k] = static_cast<float>(acc[k]);
  out.x = std::move(x).freeze();
  return out;
}

std::shared_ptr<const robust_mix> robust_mix::make(const run_plan& plan, size_t fewest) {
  const std::string& spec = plan.text("aggregator");
  const std::string pre = plan.text("pre") == "none" ? "" : plan.text("pre");
  const double f = plan.number("f");
  if (spec.empty() || spec == "none") {
    if (!pre.empty() || f != 0)
      throw std::invalid_argument("--pre and --f need --aggregator (e.g. --aggregator cc:auto)");
    return nullptr;
  }
  if (!(f >= 0) || f != std::floor(f) || f > 1e6)
    throw std::invalid_argument("--f must be a whole number >= 0");
  auto mix = std::make_shared<robust_mix>();
  mix->name_ = spec;
  mix->f_ = static_cast<int>(f);
  mix->seed_ = static_cast<uint64_t>(plan.number("seed"));
  const size_t in_degree = fewest - 1;
  if (spec.compare(0, 3, "cc:") == 0 || spec == "cc") {
    const std::string usage = " (on gossip_sgd: cc:TAU with a fixed radius TAU > 0, or cc:auto "
                              "with --f, ClippedGossip)";
    std::string arg = spec.size() > 3 ? spec.substr(3) : "";
    auto comma = arg.find(',');
    if (comma != std::string::npos) {
      auto iters = arg.substr(comma + 1);
      if (iters != "1")
        throw std::invalid_argument("--aggregator " + spec + ": ClippedGossip clips once per round; "
                                    "ITERS must be 1 on gossip_sgd" + usage);
      arg = arg.substr(0, comma);
    }
    if (!pre.empty())
      throw std::invalid_argument("--pre " + pre + " with --aggregator " + spec
                                  + ": ClippedGossip clips each neighbour's difference itself; "
                                    "a pre-aggregation would mix the neighbours before it");
    mix->clipped_ = true;
    if (arg == "auto") {
      if (mix->f_ < 1)
        throw std::invalid_argument("--aggregator cc:auto needs --f >= 1: the number of Byzantine "
                                    "in-neighbours a peer expects (their weight is clipped)");
      if (static_cast<size_t>(mix->f_) >= std::max<size_t>(1, in_degree))
        throw std::invalid_argument(
          "--aggregator cc:auto with --f " + whole(f) + ": some peer has only "
          + std::to_string(in_degree) + " in-neighbour(s); f must be smaller, or every neighbour "
          "is clipped to radius 0 and nothing is mixed");
      mix->tau_ = 0;
    } else {
      char* end = nullptr;
      double tau = arg.empty() ? 0.0 : std::strtod(arg.c_str(), &end);
      if (arg.empty() || end == nullptr || *end != '\0' || !(tau > 0) || !std::isfinite(tau))
        throw std::invalid_argument("--aggregator " + spec + ": TAU must be a number > 0 or auto"
                                    + usage);
      if (mix->f_ != 0)
        throw std::invalid_argument("--aggregator " + spec + " with --f " + whole(f)
                                    + ": a fixed radius bounds every neighbour alike and takes no "
                                      "f; use cc:auto to clip the f farthest neighbours");
      mix->tau_ = tau;
    }
    return mix;
  }
  mix->rule_ = make_aggregator(spec, pre, mix->f_);
  try {
    mix->rule_.check(fewest);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument("--aggregator " + mix->rule_.name() + " with --f " + whole(f)
                                + " on gossip_sgd: some peer mixes only " + std::to_string(fewest)
                                + " models (its own and " + std::to_string(in_degree)
                                + " in-neighbours'): " + e.what());
  }
  return mix;
}

buffer robust_mix::operator()(gossip_vars& v, const std::vector<buffer>& xs,
                              const std::vector<int32_t>& senders, const std::vector<float>& w,
                              int64_t round) const {
  auto note_invalid = [&](size_t k) {
    if (v.rejected++ == 0)
      v.log.push_back("rejects neighbour " + std::to_string(senders[k]) + "'s model of round "
                      + std::to_string(round) + " (non-finite or malformed) in " + name_
                      + "; further ones are counted in rejected_p" + std::to_string(senders[0]));
  };
  if (clipped_) {
    auto step = clipped_gossip(xs, w, tau_, f_);
    for (size_t k = 1; k < xs.size(); ++k) {
      if (step.invalid[k])
        note_invalid(k);
      if (step.clipped[k])
        ++v.clipped;
    }
    return step.x;
  }
  aggregate_context ctx;
  ctx.round = round;
  ctx.seed = seed_ + 7919 * static_cast<uint64_t>(senders.empty() ? 0 : senders[0]);
  ctx.dim = xs[0].size();
  aggregation a;
  try {
    a = rule_(xs, ctx);
  } catch (const std::invalid_argument& e) {
    // Too few valid messages for f (neighbours lost or sending garbage):
    // the peer keeps its own message this round.
    v.log.push_back("keeps its own model in round " + std::to_string(round) + ": " + e.what());
    a.value = xs[0];
    a.fates.assign(xs.size(), input_fate::kept);
    for (size_t k = 1; k < xs.size(); ++k)
      a.fates[k] = valid_input(xs[k].to_host(), xs[0].size()) ? input_fate::rejected
                                                               : input_fate::invalid;
  }
  for (size_t k = 1; k < xs.size(); ++k) {
    if (a.fates[k] == input_fate::invalid)
      note_invalid(k);
    else if (a.fates[k] != input_fate::kept)
      ++v.clipped;
  }
  return a.value.empty() ? xs[0] : a.value;
}

} // namespace chorus
