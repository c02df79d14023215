// The robust aggregation rules and pre-aggregations (engines/aggregators.hpp
// says what they are for and what they cost). Each rule below opens with the
// rule it implements and where it comes from.
#include "engines/aggregators.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <map>
#include <numeric>
#include <stdexcept>

#include <Eigen/Dense>

namespace chorus {

namespace {

// Coordinates handled per block: n x block values stay in cache.
constexpr size_t block = 2048;

using matrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using fvec_map = Eigen::Map<const Eigen::VectorXf>;

[[noreturn]] void refuse(const std::string& what) {
  throw std::invalid_argument(what);
}

// -- spec parsing -------------------------------------------------------------------

struct spec_parts {
  std::string name;
  std::vector<std::string> args;  // split at ','
};

spec_parts split_spec(const std::string& spec) {
  spec_parts out;
  auto colon = spec.find(':');
  out.name = spec.substr(0, colon);
  if (colon == std::string::npos)
    return out;
  std::string rest = spec.substr(colon + 1);
  size_t start = 0;
  while (true) {
    auto comma = rest.find(',', start);
    out.args.push_back(rest.substr(start, comma - start));
    if (comma == std::string::npos)
      break;
    start = comma + 1;
  }
  return out;
}

double parse_number(const std::string& spec, const std::string& what, const std::string& arg) {
  const char* begin = arg.c_str();
  char* end = nullptr;
  double x = arg.empty() ? 0.0 : std::strtod(begin, &end);
  if (arg.empty() || end != begin + arg.size() || !std::isfinite(x))
    refuse("aggregator '" + spec + "': " + what + " '" + arg + "' is not a number");
  return x;
}

long parse_count(const std::string& spec, const std::string& what, const std::string& arg,
                 long least) {
  double x = parse_number(spec, what, arg);
  if (x != std::floor(x) || x < static_cast<double>(least) || x > 1e9)
    refuse("aggregator '" + spec + "': " + what + " must be an integer >= " + std::to_string(least)
           + ", not '" + arg + "'");
  return static_cast<long>(x);
}

void expect_args(const spec_parts& p, const std::string& spec, size_t least, size_t most,
                 const std::string& usage) {
  if (p.args.size() < least || p.args.size() > most)
    refuse("aggregator '" + spec + "': expected " + usage);
}

// -- small helpers --------------------------------------------------------------------

std::string nf(size_t n, int f) {
  return "n=" + std::to_string(n) + ", f=" + std::to_string(f);
}

// Needs 2f < n: no rule tolerates a Byzantine majority (breakdown point 1/2).
void need_majority(const std::string& name, size_t n, int f) {
  if (!(2 * static_cast<size_t>(f) < n))
    refuse(name + " cannot tolerate f=" + std::to_string(f) + " of n=" + std::to_string(n)
           + " inputs: it needs n > 2f (" + nf(n, f) + ")");
}

// Sum_i c_i x_i, blocked, accumulated in double; zero coefficients skipped.
buffer combine(const std::vector<buffer>& xs, const std::vector<double>& c, size_t d,
               const float* base = nullptr, double base_c = 0.0) {
  mutable_buffer out(d);
  Eigen::VectorXd acc(static_cast<Eigen::Index>(std::min(block, d)));
  for (size_t b = 0; b < d; b += block) {
    auto len = static_cast<Eigen::Index>(std::min(block, d - b));
    auto a = acc.head(len);
    if (base)
      a = base_c * fvec_map(base + b, len).cast<double>();
    else
      a.setZero();
    for (size_t i = 0; i < xs.size(); ++i)
      if (c[i] != 0.0)
        a += c[i] * fvec_map(xs[i].data() + b, len).cast<double>();
    Eigen::Map<Eigen::VectorXf>(out.data() + b, len) = a.cast<float>();
  }
  return std::move(out).freeze();
}

// Squared distances from the Gram matrix, clamped at 0 (rounding).
matrix squared_distances(const std::vector<double>& g, size_t n) {
  matrix d2(n, n);
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < n; ++j)
      d2(i, j) = i == j ? 0.0 : std::max(0.0, g[i * n + i] + g[j * n + j] - 2.0 * g[i * n + j]);
  return d2;
}

// Fates from weights, for rules whose weights are shares: 0 -> rejected,
// below half the uniform share 1/n -> down_weighted, else kept.
std::vector<input_fate> fates_from_shares(const std::vector<double>& w) {
  std::vector<input_fate> out(w.size(), input_fate::kept);
  double half = 0.5 / static_cast<double>(std::max<size_t>(1, w.size()));
  for (size_t i = 0; i < w.size(); ++i)
    out[i] = w[i] <= 0.0 ? input_fate::rejected
                         : (w[i] < half ? input_fate::down_weighted : input_fate::kept);
  return out;
}

// Calls fn(k, vals) for every coordinate k, vals holding the n inputs'
// values at k (contiguous). Gathers a block of coordinates at a time.
template <class Fn>
void for_each_coordinate(const std::vector<buffer>& xs, size_t d, Fn&& fn) {
  size_t n = xs.size();
  std::vector<float> vals(block * n);
  for (size_t b = 0; b < d; b += block) {
    size_t len = std::min(block, d - b);
    for (size_t i = 0; i < n; ++i) {
      const float* x = xs[i].data() + b;
      for (size_t k = 0; k < len; ++k)
        vals[k * n + i] = x[k];
    }
    for (size_t k = 0; k < len; ++k)
      fn(b + k, vals.data() + k * n);
  }
}

// -- the rules ------------------------------------------------------------------------

// mean: (1/n) sum_i x_i. Tolerates no Byzantine input; it ignores f, so a run
// can show what an attack does to an undefended server.
aggregation rule_mean(const std::vector<buffer>& xs, int, const aggregate_context&) {
  size_t n = xs.size();
  aggregation r;
  r.weights.assign(n, 1.0 / static_cast<double>(n));
  r.fates.assign(n, input_fate::kept);
  r.value = combine(xs, r.weights, xs[0].size());
  return r;
}

// median: per coordinate k, the middle value of x_1[k]..x_n[k] (odd n), or
// the mean of the two middle values (even n). Found by selection
// (std::nth_element), O(n) per coordinate. An input's weight is the share of
// coordinates it supplied (1 for the middle value, 1/2 for each of the two).
aggregation rule_median(const std::vector<buffer>& xs, int, const aggregate_context&) {
  size_t n = xs.size(), d = xs[0].size();
  mutable_buffer out(d);
  std::vector<double> share(n, 0.0);
  std::vector<uint32_t> idx(n);
  for_each_coordinate(xs, d, [&](size_t k, const float* v) {
    std::iota(idx.begin(), idx.end(), 0u);
    auto less = [v](uint32_t a, uint32_t b) { return v[a] < v[b] || (v[a] == v[b] && a < b); };
    auto mid = idx.begin() + static_cast<long>(n / 2);
    std::nth_element(idx.begin(), mid, idx.end(), less);
    if (n % 2 == 1) {
      out[k] = v[*mid];
      share[*mid] += 1.0;
    } else {
      auto lower = *std::max_element(idx.begin(), mid, less);
      out[k] = static_cast<float>(0.5 * (static_cast<double>(v[lower]) + v[*mid]));
      share[lower] += 0.5;
      share[*mid] += 0.5;
    }
  });
  aggregation r;
  r.value = std::move(out).freeze();
  for (auto& s : share)
    s = d ? s / static_cast<double>(d) : 1.0 / static_cast<double>(n);
  r.fates = fates_from_shares(share);
  r.weights = std::move(share);
  return r;
}

// trimmed:B (Yin et al. 2018, "Byzantine-robust distributed learning:
// towards optimal statistical rates"): per coordinate, drop the B smallest
// and the B largest values and average the n - 2B others. Two selections
// per coordinate. Weight: the share of kept (coordinate, input) pairs.
aggregation trimmed_mean(const std::vector<buffer>& xs, size_t trim) {
  size_t n = xs.size(), d = xs[0].size(), keep = n - 2 * trim;
  mutable_buffer out(d);
  std::vector<double> share(n, 0.0);
  std::vector<uint32_t> idx(n);
  for_each_coordinate(xs, d, [&](size_t k, const float* v) {
    std::iota(idx.begin(), idx.end(), 0u);
    auto less = [v](uint32_t a, uint32_t b) { return v[a] < v[b] || (v[a] == v[b] && a < b); };
    if (trim > 0) {
      std::nth_element(idx.begin(), idx.begin() + static_cast<long>(trim), idx.end(), less);
      std::nth_element(idx.begin() + static_cast<long>(trim),
                       idx.begin() + static_cast<long>(n - trim), idx.end(), less);
    }
    double s = 0.0;
    for (size_t j = trim; j < n - trim; ++j) {
      s += v[idx[j]];
      share[idx[j]] += 1.0;
    }
    out[k] = static_cast<float>(s / static_cast<double>(keep));
  });
  aggregation r;
  r.value = std::move(out).freeze();
  for (auto& s : share)
    s = d ? s / (static_cast<double>(d) * static_cast<double>(keep)) : 1.0 / static_cast<double>(n);
  r.fates = fates_from_shares(share);
  r.weights = std::move(share);
  return r;
}

// The number trimmed per side: B given, less one per input already set aside
// (each was one of the Byzantine ones), never below the f' still possible;
// B not given (-1): f'.
size_t trim_count(long B, int f, size_t invalid) {
  if (B < 0)
    return static_cast<size_t>(f);
  long b = B - static_cast<long>(invalid);
  return static_cast<size_t>(std::max<long>(b, f));
}

// Krum (Blanchard et al. 2017, "Machine learning with adversaries: Byzantine
// tolerant gradient descent"): score(i) = sum of the squared distances from
// x_i to its n - f - 2 nearest other inputs; Krum returns the input with the
// lowest score (ties: the lowest index). Multi-Krum:M averages the M inputs
// with the lowest scores (scores computed once, as in Blanchard et al. and
// El Mhamdi et al. 2018). Needs n > 2f + 2.
} // namespace

std::vector<double> krum_scores(const std::vector<buffer>& xs, int f) {
  size_t n = xs.size();
  if (n < static_cast<size_t>(f) + 3)
    refuse("krum_scores: n=" + std::to_string(n) + " inputs leave no neighbours for f=" + std::to_string(f));
  auto d2 = squared_distances(gram_matrix(xs), n);
  size_t m = n - static_cast<size_t>(f) - 2;
  std::vector<double> scores(n, 0.0), row;
  for (size_t i = 0; i < n; ++i) {
    row.clear();
    for (size_t j = 0; j < n; ++j)
      if (j != i)
        row.push_back(d2(i, j));
    std::partial_sort(row.begin(), row.begin() + static_cast<long>(m), row.end());
    scores[i] = std::accumulate(row.begin(), row.begin() + static_cast<long>(m), 0.0);
  }
  return scores;
}

namespace {

aggregation multi_krum(const std::vector<buffer>& xs, int f, size_t M) {
  size_t n = xs.size();
  auto scores = krum_scores(xs, f);
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return scores[a] < scores[b]; });
  aggregation r;
  r.weights.assign(n, 0.0);
  r.fates.assign(n, input_fate::rejected);
  for (size_t k = 0; k < M; ++k) {
    r.weights[order[k]] = 1.0 / static_cast<double>(M);
    r.fates[order[k]] = input_fate::kept;
  }
  if (M == 1)
    r.value = xs[order[0]];  // Krum returns the input itself: no copy
  else
    r.value = combine(xs, r.weights, xs[0].size());
  return r;
}

void check_krum(const std::string& name, size_t n, int f) {
  if (!(n > 2 * static_cast<size_t>(f) + 2))
    refuse(name + " cannot tolerate f=" + std::to_string(f) + " of n=" + std::to_string(n)
           + " inputs: it needs n > 2f + 2 (" + nf(n, f) + ")");
}

// geomed[:TOL[,ITERS]]: the geometric median argmin_z sum_i ||x_i - z|| by
// Weiszfeld's iteration (Weiszfeld 1937; as the robust aggregate of
// Pillutla et al. 2022, "Robust aggregation for federated learning"):
//   z <- sum_i w_i x_i / sum_i w_i,  w_i = 1 / max(||x_i - z||, nu).
// Start: the mean of the ceil(n/2) inputs nearest to the medoid (the input
// with the least sum of distances to the others), so a few huge Byzantine
// vectors do not have to be walked away from (starting at the plain mean,
// 1e9-sized vectors take dozens of iterations). nu = 1e-10 times the median
// distance to the start (smoothing, so z landing on an input does not
// divide by 0). z stays a convex combination z = sum_i a_i x_i, so every
// iteration runs on the Gram matrix G:
//   ||x_i - z||^2 = G_ii - 2 (G a)_i + a^T G a,
// O(n^2) per iteration after one O(n^2 d) pass. Stops when the step
// ||z_new - z|| <= TOL times the median distance ||x_i - z|| (a scale the
// Byzantine minority cannot inflate), or after ITERS iterations.
// Weights: the final a_i. Breakdown point 1/2: needs n > 2f.
aggregation geomed(const std::vector<buffer>& xs, double tol, int max_iters) {
  size_t n = xs.size();
  auto gv = gram_matrix(xs);
  Eigen::Map<const matrix> G(gv.data(), static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(n));
  auto d2 = squared_distances(gv, n);
  size_t medoid = 0;
  double best = std::numeric_limits<double>::infinity();
  for (size_t i = 0; i < n; ++i) {
    double s = 0.0;
    for (size_t j = 0; j < n; ++j)
      s += std::sqrt(d2(i, j));
    if (s < best) {
      best = s;
      medoid = i;
    }
  }
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return d2(medoid, a) < d2(medoid, b); });
  size_t half = (n + 1) / 2;
  Eigen::VectorXd a = Eigen::VectorXd::Zero(static_cast<Eigen::Index>(n));
  for (size_t k = 0; k < half; ++k)
    a(static_cast<Eigen::Index>(order[k])) = 1.0 / static_cast<double>(half);
  auto distances = [&](const Eigen::VectorXd& coef) {
    Eigen::VectorXd Ga = G * coef;
    double aGa = coef.dot(Ga);
    Eigen::VectorXd dist(static_cast<Eigen::Index>(n));
    for (Eigen::Index i = 0; i < dist.size(); ++i)
      dist(i) = std::sqrt(std::max(0.0, G(i, i) - 2.0 * Ga(i) + aGa));
    return dist;
  };
  auto median_of = [](Eigen::VectorXd v) {
    auto mid = v.data() + (v.size() - 1) / 2;
    std::nth_element(v.data(), mid, v.data() + v.size());
    return *mid;
  };
  auto dist = distances(a);
  double scale = median_of(dist);
  if (scale == 0.0)
    scale = dist.maxCoeff();
  aggregation r;
  if (scale > 0.0) {
    double nu = 1e-10 * scale;
    for (int it = 0; it < max_iters; ++it) {
      Eigen::VectorXd w = dist.cwiseMax(nu).cwiseInverse();
      Eigen::VectorXd next = w / w.sum();
      Eigen::VectorXd step = next - a;
      double moved = std::sqrt(std::max(0.0, step.dot(G * step)));
      a = next;
      dist = distances(a);
      r.iterations = it + 1;
      if (moved <= tol * median_of(dist))
        break;
    }
  }
  r.weights.assign(a.data(), a.data() + n);
  r.fates = fates_from_shares(r.weights);
  r.value = combine(xs, r.weights, xs[0].size());
  return r;
}

// cc:TAU[,ITERS] (centered clipping, Karimireddy, He and Jaggi 2021,
// "Learning from history for Byzantine robust optimization"): from a centre
// v_0 (the previous aggregate when the caller gives one, else the
// coordinate-wise median), ITERS times (default 1, as in the paper)
//   v <- v + (1/n) sum_i (x_i - v) min(1, TAU / ||x_i - v||).
// A fixed point v* satisfies sum_i (x_i - v*) min(1, TAU/||x_i - v*||) = 0;
// with TAU at least every distance one step gives the mean. O(n d) per
// iteration. Weights: min(1, TAU/||x_i - v||)/n of the last iteration (the
// rest of the unit mass stays on the centre); an input clipped in the last
// iteration is down_weighted. Needs n > 2f.
aggregation centered_clip(const std::vector<buffer>& xs, double tau, int iters,
                          const aggregate_context& ctx) {
  size_t n = xs.size(), d = xs[0].size();
  buffer v;
  const buffer& c = ctx.centre;
  if (c.size() == d && c.kind() == memory_kind::host
      && fvec_map(c.data(), static_cast<Eigen::Index>(d)).allFinite())
    v = c;
  else
    v = coordinate_median(xs);
  aggregation r;
  std::vector<double> clip(n, 1.0);
  for (int it = 0; it < iters; ++it) {
    double kept = 0.0;
    for (size_t i = 0; i < n; ++i) {
      double s = 0.0;
      for (size_t b = 0; b < d; b += block) {
        auto len = static_cast<Eigen::Index>(std::min(block, d - b));
        s += (fvec_map(xs[i].data() + b, len) - fvec_map(v.data() + b, len))
               .cast<double>()
               .squaredNorm();
      }
      double dist = std::sqrt(s);
      clip[i] = dist > tau ? tau / dist : 1.0;
      kept += clip[i];
    }
    std::vector<double> coef(n);
    for (size_t i = 0; i < n; ++i)
      coef[i] = clip[i] / static_cast<double>(n);
    v = combine(xs, coef, d, v.data(), 1.0 - kept / static_cast<double>(n));
    r.iterations = it + 1;
  }
  r.weights.resize(n);
  r.fates.resize(n);
  for (size_t i = 0; i < n; ++i) {
    r.weights[i] = clip[i] / static_cast<double>(n);
    r.fates[i] = clip[i] < 1.0 ? input_fate::down_weighted : input_fate::kept;
  }
  r.value = std::move(v);
  return r;
}

// filter[:K[,SIGMA2]]: the spectral outlier filter of robust mean estimation
// (Diakonikolas et al. 2017, "Being robust (in high dimensions) can be
// practical"; Steinhardt, Charikar and Valiant 2018, "Resilience: a criterion
// for learning in the presence of arbitrary outliers"), as Data and Diggavi
// 2021 ("Byzantine-resilient high-dimensional SGD with local iterations on
// heterogeneous data") use it on gradients. The rule implemented here, with
// hard removal and the removal budget f:
//   S = the valid inputs; T = (1/2) lower-median_i lower-median_{j != i}
//   ||x_i - x_j||^2, a robust estimate of tr(Sigma) of the honest inputs
//   (E ||x_i - x_j||^2 = 2 tr Sigma), computed once.
//   repeat while fewer than f inputs have been removed:
//     mu = mean_{i in S} x_i, C = (1/|S|) sum_{i in S} (x_i - mu)(x_i - mu)^T
//     (lambda, v) = top eigenpair of C by power iteration
//     threshold = K (sqrt(s2) + sqrt(T / |S|))^2, s2 = SIGMA2 when given,
//       else T / d (the smallest ||Sigma|| with that trace: isotropic)
//     if lambda <= threshold: stop
//     remove from S the i with the largest <x_i - mu, v>^2
//   return mean_{i in S} x_i.
// The threshold is the top eigenvalue a sample of |S| honest Gaussian inputs
// reaches, (sqrt(||Sigma||) + sqrt(tr Sigma / |S|))^2 (the Marchenko-Pastur
// edge in the isotropic case), times the slack K (default 2): with n << d
// even honest inputs have a sample covariance with eigenvalues near
// tr Sigma / n, so a threshold of c ||Sigma|| alone would remove honest
// inputs; planted outliers at distance delta along one direction add about
// eps (1 - eps) delta^2. C is never formed: its nonzero eigenvalues are those
// of the centred Gram matrix K_S = H G_S H over |S|, so the power iteration
// runs on |S| x |S| matrices (u <- K_S u), and <x_i - mu, v> =
// (K_S u)_i / sqrt(u^T K_S u). One O(n^2 d) Gram pass, then O(n^2) per power
// step. Weights: 1/|S| in S, 0 (rejected) for removed inputs; iterations =
// removals. Needs n > 2f.
aggregation spectral_filter(const std::vector<buffer>& xs, int f, double K, double sigma2) {
  size_t n = xs.size(), d = xs[0].size();
  auto gv = gram_matrix(xs);
  Eigen::Map<const matrix> G(gv.data(), static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(n));
  auto d2 = squared_distances(gv, n);
  // Robust trace estimate.
  double trace = 0.0;
  if (n >= 2) {
    std::vector<double> per(n), row;
    for (size_t i = 0; i < n; ++i) {
      row.clear();
      for (size_t j = 0; j < n; ++j)
        if (j != i)
          row.push_back(d2(i, j));
      auto mid = row.begin() + static_cast<long>((row.size() - 1) / 2);
      std::nth_element(row.begin(), mid, row.end());
      per[i] = *mid;
    }
    auto mid = per.begin() + static_cast<long>((n - 1) / 2);
    std::nth_element(per.begin(), mid, per.end());
    trace = 0.5 * *mid;
  }
  double s2 = sigma2 >= 0.0 ? sigma2 : (d ? trace / static_cast<double>(d) : 0.0);
  std::vector<size_t> S(n);
  std::iota(S.begin(), S.end(), size_t{0});
  aggregation r;
  r.fates.assign(n, input_fate::kept);
  int removed = 0;
  while (removed < f && S.size() >= 2) {
    auto m = static_cast<Eigen::Index>(S.size());
    Eigen::MatrixXd Ks(m, m);
    for (Eigen::Index a = 0; a < m; ++a)
      for (Eigen::Index b = 0; b < m; ++b)
        Ks(a, b) = G(static_cast<Eigen::Index>(S[a]), static_cast<Eigen::Index>(S[b]));
    Eigen::VectorXd rowmean = Ks.rowwise().mean();
    double total = rowmean.mean();
    Ks = (Ks.colwise() - rowmean).rowwise() - rowmean.transpose();
    Ks.array() += total;
    // Power iteration, from the squared distances to the mean (the
    // diagonal): it leans towards whatever sticks out.
    Eigen::VectorXd u = Ks.diagonal().cwiseMax(0.0);
    if (u.norm() == 0.0)
      break;  // all of S is one point
    u.normalize();
    double lambda = 0.0;
    for (int it = 0; it < 1000; ++it) {
      Eigen::VectorXd next = Ks * u;
      double rq = u.dot(next);
      double norm = next.norm();
      if (norm == 0.0)
        break;
      u = next / norm;
      bool done = std::abs(rq - lambda) <= 1e-10 * std::abs(rq);
      lambda = rq;
      if (done)
        break;
    }
    Eigen::VectorXd Ku = Ks * u;
    double uKu = u.dot(Ku);
    lambda = uKu / static_cast<double>(m);
    double root = std::sqrt(s2) + std::sqrt(trace / static_cast<double>(m));
    if (!(lambda > K * root * root) || uKu <= 0.0)
      break;
    Eigen::Index worst = 0;
    Ku.cwiseAbs().maxCoeff(&worst);
    r.fates[S[static_cast<size_t>(worst)]] = input_fate::rejected;
    S.erase(S.begin() + worst);
    ++removed;
  }
  r.iterations = removed;
  r.weights.assign(n, 0.0);
  for (size_t i : S)
    r.weights[i] = 1.0 / static_cast<double>(S.size());
  r.value = combine(xs, r.weights, d);
  return r;
}

// -- pre-aggregations ---------------------------------------------------------------

// nnm (nearest-neighbour mixing, Allouah et al. 2023, "Fixing by mixing: a
// recipe for optimal Byzantine ML under heterogeneity"): each x_i is replaced
// by the mean of its n - f nearest inputs (itself included; ties: lower
// index). Distances from the Gram matrix; the outputs Y = X M^T as a blocked
// GEMM, O(n^2 d). Needs f < n (the rule after it needs more).
pre_output nnm(const std::vector<buffer>& xs, int f) {
  size_t n = xs.size(), d = xs[0].size(), k = n - static_cast<size_t>(f);
  auto d2 = squared_distances(gram_matrix(xs), n);
  pre_output out;
  out.mix.assign(n * n, 0.0);
  out.clipped.assign(n, false);
  std::vector<size_t> order(n);
  for (size_t i = 0; i < n; ++i) {
    std::iota(order.begin(), order.end(), size_t{0});
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      // itself first (distance 0, even if another input equals it)
      if (a == i || b == i)
        return a == i && b != i;
      return d2(i, a) < d2(i, b);
    });
    for (size_t j = 0; j < k; ++j)
      out.mix[i * n + order[j]] = 1.0 / static_cast<double>(k);
  }
  Eigen::Map<const matrix> M(out.mix.data(), static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(n));
  std::vector<mutable_buffer> ys;
  for (size_t i = 0; i < n; ++i)
    ys.emplace_back(d);
  Eigen::MatrixXd X(static_cast<Eigen::Index>(std::min(block, d)), static_cast<Eigen::Index>(n));
  Eigen::MatrixXd Y;
  for (size_t b = 0; b < d; b += block) {
    auto len = static_cast<Eigen::Index>(std::min(block, d - b));
    for (size_t i = 0; i < n; ++i)
      X.col(static_cast<Eigen::Index>(i)).head(len) = fvec_map(xs[i].data() + b, len).cast<double>();
    Y.noalias() = X.topRows(len) * M.transpose();
    for (size_t i = 0; i < n; ++i)
      Eigen::Map<Eigen::VectorXf>(ys[i].data() + b, len) = Y.col(static_cast<Eigen::Index>(i)).cast<float>();
  }
  for (auto& y : ys)
    out.xs.push_back(std::move(y).freeze());
  return out;
}

uint64_t splitmix64(uint64_t& s) {
  uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// bucket:S (Karimireddy, He and Jaggi 2022, "Byzantine-robust learning on
// heterogeneous datasets via bucketing"): a random permutation of the n
// inputs, cut into ceil(n/S) buckets of S (the last one may be smaller);
// each output is its bucket's mean. The permutation comes from (seed, round)
// through splitmix64 and a Fisher-Yates shuffle written here, so a seed
// gives the same buckets on every platform. f Byzantine inputs spoil at most
// f buckets. O(n d).
pre_output bucketing(const std::vector<buffer>& xs, size_t S, const aggregate_context& ctx) {
  size_t n = xs.size(), m = (n + S - 1) / S;
  std::vector<size_t> perm(n);
  std::iota(perm.begin(), perm.end(), size_t{0});
  uint64_t state = ctx.seed * 0x2545f4914f6cdd1dULL ^ static_cast<uint64_t>(ctx.round);
  for (size_t i = n; i > 1; --i) {
    // bounded draw by rejection, unbiased
    uint64_t bound = i, limit = UINT64_MAX - UINT64_MAX % bound, x;
    do
      x = splitmix64(state);
    while (x >= limit);
    std::swap(perm[i - 1], perm[x % bound]);
  }
  pre_output out;
  out.mix.assign(m * n, 0.0);
  out.clipped.assign(n, false);
  for (size_t r = 0; r < m; ++r) {
    size_t lo = r * S, hi = std::min(n, lo + S);
    std::vector<double> c(n, 0.0);
    for (size_t k = lo; k < hi; ++k) {
      c[perm[k]] = 1.0 / static_cast<double>(hi - lo);
      out.mix[r * n + perm[k]] = c[perm[k]];
    }
    out.xs.push_back(combine(xs, c, xs[0].size()));
  }
  return out;
}

// clip:C: x_i <- x_i min(1, C / ||x_i||) (static norm clipping). O(n d).
// Inputs already within C pass through as the same buffer.
pre_output norm_clip(const std::vector<buffer>& xs, double C) {
  size_t n = xs.size(), d = xs[0].size();
  pre_output out;
  out.mix.assign(n * n, 0.0);
  out.clipped.assign(n, false);
  for (size_t i = 0; i < n; ++i) {
    double norm = fvec_map(xs[i].data(), static_cast<Eigen::Index>(d)).cast<double>().norm();
    double c = norm > C ? C / norm : 1.0;
    out.mix[i * n + i] = c;
    if (c < 1.0) {
      out.clipped[i] = true;
      std::vector<double> coef(n, 0.0);
      coef[i] = c;
      out.xs.push_back(combine(xs, coef, d));
    } else {
      out.xs.push_back(xs[i]);
    }
  }
  return out;
}

// -- the table -------------------------------------------------------------------------

std::string valid_names(bool pre) {
  std::string s;
  for (auto& e : aggregator_registry())
    if (e.pre == pre)
      s += (s.empty() ? "" : ", ") + e.usage;
  return s;
}

const aggregator_info* find_entry(const std::string& name) {
  for (auto& e : aggregator_registry())
    if (e.name == name)
      return &e;
  return nullptr;
}

} // namespace

// -- public ------------------------------------------------------------------------------

const char* to_string(input_fate x) {
  switch (x) {
    case input_fate::kept:
      return "kept";
    case input_fate::down_weighted:
      return "down_weighted";
    case input_fate::rejected:
      return "rejected";
    case input_fate::invalid:
      return "invalid";
  }
  return "?";
}

size_t aggregation::count(input_fate x) const {
  return static_cast<size_t>(std::count(fates.begin(), fates.end(), x));
}

aggregator::aggregator(std::string name, int f, check_fn check, rule_fn rule)
  : name_(std::move(name)), f_(f), check_(std::move(check)), rule_(std::move(rule)) {
  if (f_ < 0)
    refuse("aggregator '" + name_ + "': f must be >= 0, not " + std::to_string(f_));
}

void aggregator::check(size_t n) const {
  if (n == 0)
    refuse("aggregator '" + name_ + "': no inputs");
  if (check_)
    check_(n, f_, 0);
}

aggregation aggregator::operator()(const std::vector<buffer>& xs_in,
                                   const aggregate_context& ctx_in) const {
  size_t n = xs_in.size();
  // The expected length: given, or the most common one.
  size_t dim = ctx_in.dim;
  if (dim == 0 && n > 0) {
    std::map<size_t, size_t> counts;
    for (auto& x : xs_in)
      ++counts[x.size()];
    size_t best = 0;
    for (auto& [len, c] : counts)
      if (c > best) {
        best = c;
        dim = len;
      }
  }
  std::vector<buffer> valid;
  std::vector<size_t> where;
  for (size_t i = 0; i < n; ++i) {
    if (xs_in[i].size() != dim)
      continue;
    buffer x = xs_in[i].kind() == memory_kind::host ? xs_in[i] : xs_in[i].to_host();
    if (!fvec_map(x.data(), static_cast<Eigen::Index>(dim)).allFinite())
      continue;
    valid.push_back(std::move(x));
    where.push_back(i);
  }
  aggregation out;
  out.weights.assign(n, 0.0);
  out.fates.assign(n, input_fate::invalid);
  out.used = valid.size();
  if (valid.empty())
    return out;
  aggregate_context ctx = ctx_in;
  ctx.invalid = n - valid.size();
  int f = std::max(0, f_ - static_cast<int>(ctx.invalid));
  if (check_) {
    try {
      check_(valid.size(), f, ctx.invalid);
    } catch (const std::invalid_argument& e) {
      refuse(std::string(e.what()) + (ctx.invalid ? " (after setting aside "
                                                      + std::to_string(ctx.invalid)
                                                      + " invalid inputs of "
                                                      + std::to_string(n) + ")"
                                                  : ""));
    }
  }
  auto r = rule_(valid, f, ctx);
  for (size_t k = 0; k < valid.size(); ++k) {
    out.weights[where[k]] = r.weights[k];
    out.fates[where[k]] = r.fates[k];
  }
  out.value = std::move(r.value);
  out.iterations = r.iterations;
  return out;
}

aggregator compose(const pre_aggregation& pre, const aggregator& inner) {
  auto check = [pre, inner](size_t n, int f, size_t invalid) {
    if (pre.check)
      pre.check(n, f, invalid);
    if (inner.checker())
      inner.checker()(pre.outputs(n), f, invalid);
  };
  auto rule = [pre, inner](const std::vector<buffer>& xs, int f, const aggregate_context& ctx) {
    size_t n = xs.size();
    auto p = pre.run(xs, f, ctx);
    size_t m = p.xs.size();
    auto r = inner.rule()(p.xs, f, ctx);
    aggregation out;
    out.weights.assign(n, 0.0);
    for (size_t o = 0; o < m; ++o)
      for (size_t i = 0; i < n; ++i)
        out.weights[i] += p.mix[o * n + i] * r.weights[o];
    out.fates = fates_from_shares(out.weights);
    // A clipped input, or one whose own output the rule down-weighted
    // (a 1:1 pre-aggregation), is down_weighted unless it was rejected.
    for (size_t i = 0; i < n; ++i) {
      if (out.fates[i] == input_fate::rejected)
        continue;
      if (p.clipped[i] || (m == n && r.fates[i] == input_fate::down_weighted
                           && p.mix[i * n + i] > 0.0
                           && std::count_if(p.mix.begin() + static_cast<long>(i * n),
                                            p.mix.begin() + static_cast<long>((i + 1) * n),
                                            [](double c) { return c != 0.0; })
                                == 1))
        out.fates[i] = input_fate::down_weighted;
    }
    out.value = std::move(r.value);
    out.iterations = r.iterations;
    return out;
  };
  return aggregator(pre.name + ">" + inner.name(), inner.f(), check, rule);
}

const std::vector<aggregator_info>& aggregator_registry() {
  static const std::vector<aggregator_info> table = {
    {"mean", "mean", "(1/n) sum_i x_i; no defence (ignores f), the baseline", "any n", false},
    {"median", "median", "coordinate-wise median (mean of the two middle values for even n)",
     "n > 2f", false},
    {"trimmed", "trimmed[:B]",
     "coordinate-wise trimmed mean: drop the B smallest and B largest, average the rest (B default f)",
     "B >= f, n > 2B", false},
    {"krum", "krum", "the input with the least sum of squared distances to its n-f-2 nearest (Blanchard et al. 2017)",
     "n > 2f + 2", false},
    {"multikrum", "multikrum:M", "mean of the M inputs with the best Krum scores",
     "n > 2f + 2, 1 <= M <= n - f", false},
    {"geomed", "geomed[:TOL[,ITERS]]",
     "geometric median by Weiszfeld's iteration (TOL 1e-6 of the median distance, ITERS 100)",
     "n > 2f", false},
    {"cc", "cc:TAU[,ITERS]",
     "centered clipping from the previous aggregate (else the median), ITERS default 1 (Karimireddy et al. 2021)",
     "n > 2f", false},
    {"filter", "filter[:K[,SIGMA2]]",
     "spectral filter: remove the top-eigenvector outlier while lambda_max > K (sqrt(SIGMA2) + sqrt(tr/|S|))^2, at most f times (K 2)",
     "n > 2f", false},
    {"nnm", "nnm", "pre: each x_i becomes the mean of its n-f nearest inputs (Allouah et al. 2023)",
     "n > f", true},
    {"bucket", "bucket:S", "pre: shuffle, average buckets of S inputs, n -> ceil(n/S) (Karimireddy et al. 2022)",
     "S >= 1", true},
    {"clip", "clip:C", "pre: x_i <- x_i min(1, C / ||x_i||)", "C > 0", true},
  };
  return table;
}

aggregator make_aggregator(const std::string& spec, int f) {
  if (f < 0)
    refuse("aggregator '" + spec + "': f must be >= 0, not " + std::to_string(f));
  auto p = split_spec(spec);
  auto* entry = find_entry(p.name);
  if (!entry)
    refuse("unknown aggregator '" + spec + "' (valid: " + valid_names(false)
           + "; pre-aggregations: " + valid_names(true) + ")");
  if (entry->pre)
    refuse("'" + spec + "' is a pre-aggregation, not an aggregator: give it as --pre " + spec
           + " with an --aggregator (valid: " + valid_names(false) + ")");
  const std::string& usage = entry->usage;
  if (p.name == "mean") {
    expect_args(p, spec, 0, 0, usage);
    return aggregator(spec, f, nullptr, rule_mean);
  }
  if (p.name == "median") {
    expect_args(p, spec, 0, 0, usage);
    return aggregator(spec, f, [spec](size_t n, int ff, size_t) { need_majority(spec, n, ff); },
                      rule_median);
  }
  if (p.name == "trimmed") {
    expect_args(p, spec, 0, 1, usage);
    long B = p.args.empty() ? -1 : parse_count(spec, "B", p.args[0], 0);
    if (B >= 0 && B < f)
      refuse("aggregator '" + spec + "' cannot tolerate f=" + std::to_string(f) + ": it needs B >= f");
    auto check = [spec, B](size_t n, int ff, size_t invalid) {
      size_t b = trim_count(B, ff, invalid);
      if (!(2 * b < n))
        refuse(spec + " cannot trim " + std::to_string(b) + " of each side of n="
               + std::to_string(n) + " inputs: it needs n > 2B (" + nf(n, ff) + ")");
    };
    return aggregator(spec, f, check,
                      [B](const std::vector<buffer>& xs, int ff, const aggregate_context& ctx) {
                        return trimmed_mean(xs, trim_count(B, ff, ctx.invalid));
                      });
  }
  if (p.name == "krum") {
    expect_args(p, spec, 0, 0, usage);
    return aggregator(spec, f, [spec](size_t n, int ff, size_t) { check_krum(spec, n, ff); },
                      [](const std::vector<buffer>& xs, int ff, const aggregate_context&) {
                        return multi_krum(xs, ff, 1);
                      });
  }
  if (p.name == "multikrum") {
    expect_args(p, spec, 1, 1, usage);
    auto M = static_cast<size_t>(parse_count(spec, "M", p.args[0], 1));
    auto check = [spec, M](size_t n, int ff, size_t) {
      check_krum(spec, n, ff);
      if (M > n - static_cast<size_t>(ff))
        refuse(spec + " cannot average M=" + std::to_string(M) + " inputs when n - f = "
               + std::to_string(n - static_cast<size_t>(ff)) + ": it needs M <= n - f ("
               + nf(n, ff) + ")");
    };
    return aggregator(spec, f, check,
                      [M](const std::vector<buffer>& xs, int ff, const aggregate_context&) {
                        return multi_krum(xs, ff, M);
                      });
  }
  if (p.name == "geomed") {
    expect_args(p, spec, 0, 2, usage);
    double tol = p.args.size() > 0 ? parse_number(spec, "TOL", p.args[0]) : 1e-6;
    int iters = p.args.size() > 1 ? static_cast<int>(parse_count(spec, "ITERS", p.args[1], 1)) : 100;
    if (!(tol > 0.0))
      refuse("aggregator '" + spec + "': TOL must be > 0");
    return aggregator(spec, f, [spec](size_t n, int ff, size_t) { need_majority(spec, n, ff); },
                      [tol, iters](const std::vector<buffer>& xs, int, const aggregate_context&) {
                        return geomed(xs, tol, iters);
                      });
  }
  if (p.name == "cc") {
    expect_args(p, spec, 1, 2, usage);
    double tau = parse_number(spec, "TAU", p.args[0]);
    int iters = p.args.size() > 1 ? static_cast<int>(parse_count(spec, "ITERS", p.args[1], 1)) : 1;
    if (!(tau > 0.0))
      refuse("aggregator '" + spec + "': TAU must be > 0");
    return aggregator(spec, f, [spec](size_t n, int ff, size_t) { need_majority(spec, n, ff); },
                      [tau, iters](const std::vector<buffer>& xs, int, const aggregate_context& ctx) {
                        return centered_clip(xs, tau, iters, ctx);
                      });
  }
  if (p.name == "filter") {
    expect_args(p, spec, 0, 2, usage);
    double K = p.args.size() > 0 ? parse_number(spec, "K", p.args[0]) : 2.0;
    double s2 = p.args.size() > 1 ? parse_number(spec, "SIGMA2", p.args[1]) : -1.0;
    if (!(K > 0.0))
      refuse("aggregator '" + spec + "': K must be > 0");
    if (p.args.size() > 1 && !(s2 >= 0.0))
      refuse("aggregator '" + spec + "': SIGMA2 must be >= 0");
    return aggregator(spec, f, [spec](size_t n, int ff, size_t) { need_majority(spec, n, ff); },
                      [K, s2](const std::vector<buffer>& xs, int ff, const aggregate_context&) {
                        return spectral_filter(xs, ff, K, s2);
                      });
  }
  refuse("aggregator '" + spec + "': registered but not built (a bug)");
}

pre_aggregation make_pre_aggregation(const std::string& spec) {
  auto p = split_spec(spec);
  auto* entry = find_entry(p.name);
  if (!entry)
    refuse("unknown pre-aggregation '" + spec + "' (valid: " + valid_names(true) + ")");
  if (!entry->pre)
    refuse("'" + spec + "' is an aggregator, not a pre-aggregation: give it as --aggregator "
           + spec + " (pre-aggregations: " + valid_names(true) + ")");
  const std::string& usage = entry->usage;
  pre_aggregation out;
  out.name = spec;
  out.outputs = [](size_t n) { return n; };
  if (p.name == "nnm") {
    expect_args(p, spec, 0, 0, usage);
    out.check = [spec](size_t n, int f, size_t) {
      if (!(static_cast<size_t>(f) < n))
        refuse(spec + " cannot mix n - f <= 0 neighbours (" + nf(n, f) + ")");
    };
    out.run = [](const std::vector<buffer>& xs, int f, const aggregate_context&) {
      return nnm(xs, f);
    };
    return out;
  }
  if (p.name == "bucket") {
    expect_args(p, spec, 1, 1, usage);
    auto S = static_cast<size_t>(parse_count(spec, "S", p.args[0], 1));
    out.outputs = [S](size_t n) { return (n + S - 1) / S; };
    out.run = [S](const std::vector<buffer>& xs, int, const aggregate_context& ctx) {
      return bucketing(xs, S, ctx);
    };
    return out;
  }
  if (p.name == "clip") {
    expect_args(p, spec, 1, 1, usage);
    double C = parse_number(spec, "C", p.args[0]);
    if (!(C > 0.0))
      refuse("pre-aggregation '" + spec + "': C must be > 0");
    out.run = [C](const std::vector<buffer>& xs, int, const aggregate_context&) {
      return norm_clip(xs, C);
    };
    return out;
  }
  refuse("pre-aggregation '" + spec + "': registered but not built (a bug)");
}

aggregator make_aggregator(const std::string& rule, const std::string& pre, int f) {
  aggregator out = make_aggregator(rule, f);
  if (pre.empty())
    return out;
  std::vector<std::string> chain;
  size_t start = 0;
  while (true) {
    auto plus = pre.find('+', start);
    chain.push_back(pre.substr(start, plus - start));
    if (plus == std::string::npos)
      break;
    start = plus + 1;
  }
  for (auto it = chain.rbegin(); it != chain.rend(); ++it)
    out = compose(make_pre_aggregation(*it), out);
  return out;
}

std::vector<double> gram_matrix(const std::vector<buffer>& xs) {
  size_t n = xs.size(), d = n ? xs[0].size() : 0;
  Eigen::MatrixXd G = Eigen::MatrixXd::Zero(static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(n));
  Eigen::MatrixXd X(static_cast<Eigen::Index>(std::min(block, d)), static_cast<Eigen::Index>(n));
  for (size_t b = 0; b < d; b += block) {
    auto len = static_cast<Eigen::Index>(std::min(block, d - b));
    for (size_t i = 0; i < n; ++i)
      X.col(static_cast<Eigen::Index>(i)).head(len) = fvec_map(xs[i].data() + b, len).cast<double>();
    G.selfadjointView<Eigen::Lower>().rankUpdate(X.topRows(len).transpose());
  }
  G.triangularView<Eigen::StrictlyUpper>() = G.transpose();
  std::vector<double> out(n * n);
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < n; ++j)
      out[i * n + j] = G(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(j));
  return out;
}

buffer coordinate_median(const std::vector<buffer>& xs) {
  if (xs.empty())
    return {};
  return rule_median(xs, 0, {}).value;
}

} // namespace chorus
