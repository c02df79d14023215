// Builds, checks and measures mixing matrices (see topology.hpp). Undirected
// graphs are built as adjacency sets and then weighed by one weight rule; the
// two directed exponential graphs write their circulant weights directly.
// Nothing here knows about actors or messages.
#include "engines/topology.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>

#include <Eigen/Dense>
#include <Eigen/Eigenvalues>

namespace chorus {

namespace {

// Rows and columns must sum to 1 within this; also the symmetry tolerance.
constexpr double stochastic_tol = 1e-9;
// Below this a singular value or eigenvalue modulus is rounding noise; without
// the floor an exact averaging product (~1e-17) raised to 1/P would report a
// gap of 0.9999 instead of 1.
constexpr double spectral_floor = 1e-12;
// Erdos-Renyi redraws before falling back to adding a ring.
constexpr int erdos_max_draws = 1000;

const char* const valid_specs =
  "ring, torus, complete, star, hypercube, exp, onepeer-exp, erdos:P, file:PATH";

std::string fmt(double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.12g", x);
  return buf;
}

// An undirected simple graph: adjacency sets, no self-loops.
struct graph {
  explicit graph(int n) : adj(static_cast<size_t>(n)) {}
  void add_edge(int i, int j) {
    if (i == j)
      return;
    adj[i].insert(j);
    adj[j].insert(i);
  }
  int size() const { return static_cast<int>(adj.size()); }
  bool connected() const {
    if (adj.empty())
      return true;
    std::vector<char> seen(adj.size(), 0);
    std::vector<int> stack{0};
    seen[0] = 1;
    size_t reached = 1;
    while (!stack.empty()) {
      int i = stack.back();
      stack.pop_back();
      for (int j : adj[i])
        if (!seen[j]) {
          seen[j] = 1;
          ++reached;
          stack.push_back(j);
        }
    }
    return reached == adj.size();
  }
  std::vector<std::set<int>> adj;
};

mixing_matrix zeros(int n) {
  mixing_matrix m;
  m.n = n;
  m.w.assign(static_cast<size_t>(n) * n, 0.0);
  return m;
}

double& entry(mixing_matrix& m, int i, int j) {
  return m.w[static_cast<size_t>(i) * m.n + j];
}

// Turns an undirected graph into a symmetric doubly stochastic matrix.
mixing_matrix weigh(const graph& g, weight_rule rule) {
  int n = g.size();
  mixing_matrix m = zeros(n);
  size_t d_max = 0;
  for (const auto& nb : g.adj)
    d_max = std::max(d_max, nb.size());
  for (int i = 0; i < n; ++i) {
    size_t d_i = g.adj[i].size();
    if (rule == weight_rule::uniform) {
      for (int j : g.adj[i])
        entry(m, i, j) = 1.0 / static_cast<double>(d_max + 1);
      // One division, no subtraction, so regular graphs get exactly 1/(d+1).
      entry(m, i, i) = static_cast<double>(d_max + 1 - d_i) / static_cast<double>(d_max + 1);
    } else {
      double rest = 1.0;
      for (int j : g.adj[i]) {
        double w = 1.0 / static_cast<double>(1 + std::max(d_i, g.adj[j].size()));
        entry(m, i, j) = w;
        rest -= w;
      }
      entry(m, i, i) = rest;
    }
  }
  return m;
}

bool is_power_of_two(int n) { return n > 0 && (n & (n - 1)) == 0; }

// 1, 2, 4, ... up to n - 1: the exponential graphs' hop lengths.
std::vector<int> hops(int n) {
  std::vector<int> out;
  for (int64_t s = 1; s < n; s *= 2)
    out.push_back(static_cast<int>(s));
  return out;
}

graph ring_graph(int n) {
  graph g(n);
  for (int i = 0; i < n; ++i)
    g.add_edge(i, (i + 1) % n);
  return g;
}

graph torus_graph(int n) {
  int r = 1;
  for (int d = 1; static_cast<int64_t>(d) * d <= n; ++d)
    if (n % d == 0)
      r = d;
  int c = n / r;
  graph g(n);
  // add_edge drops self-loops and the sets drop duplicates, which is all the
  // wrap-around on a side of length 1 or 2 produces.
  for (int a = 0; a < r; ++a)
    for (int b = 0; b < c; ++b) {
      int i = a * c + b;
      g.add_edge(i, ((a + 1) % r) * c + b);
      g.add_edge(i, a * c + (b + 1) % c);
    }
  return g;
}

graph complete_graph(int n) {
  graph g(n);
  for (int i = 0; i < n; ++i)
    for (int j = i + 1; j < n; ++j)
      g.add_edge(i, j);
  return g;
}

graph star_graph(int n) {
  graph g(n);
  for (int j = 1; j < n; ++j)
    g.add_edge(0, j);
  return g;
}

graph hypercube_graph(int n) {
  graph g(n);
  for (int i = 0; i < n; ++i)
    for (int bit = 1; bit < n; bit *= 2)
      g.add_edge(i, i ^ bit);
  return g;
}

// i sends to i + 2^k (mod n) for every hop, so i receives from i - 2^k; every
// row and every column holds hops + 1 equal weights (a circulant matrix).
mixing_matrix exp_matrix(int n) {
  mixing_matrix m = zeros(n);
  auto h = hops(n);
  double w = 1.0 / static_cast<double>(h.size() + 1);
  for (int i = 0; i < n; ++i) {
    entry(m, i, i) = w;
    for (int s : h)
      entry(m, i, ((i - s) % n + n) % n) = w;
  }
  return m;
}

// Phase t: W_t = (I + P_t)/2 with P_t sending i -> i + 2^t (mod n).
std::vector<mixing_matrix> onepeer_exp_phases(int n) {
  std::vector<mixing_matrix> out;
  for (int s : hops(n)) {
    mixing_matrix m = zeros(n);
    for (int i = 0; i < n; ++i) {
      entry(m, i, i) = 0.5;
      entry(m, i, ((i - s) % n + n) % n) = 0.5;
    }
    out.push_back(std::move(m));
  }
  if (out.empty()) {
    mixing_matrix one = zeros(1);
    one.w[0] = 1.0;
    out.push_back(std::move(one));
  }
  return out;
}

double parse_probability(const std::string& spec, const std::string& arg) {
  const char* begin = arg.c_str();
  char* end = nullptr;
  double p = arg.empty() ? 0.0 : std::strtod(begin, &end);
  if (arg.empty() || end != begin + arg.size() || !std::isfinite(p))
    throw std::invalid_argument("topology '" + spec + "': '" + arg +
                                "' is not a number; use erdos:P with P in (0, 1], e.g. erdos:0.3");
  if (!(p > 0.0 && p <= 1.0))
    throw std::invalid_argument("topology '" + spec + "': edge probability " + arg +
                                " is outside (0, 1]");
  return p;
}

// G(n, p), redrawn until connected. After erdos_max_draws disconnected draws
// (only for p far below the ln(n)/n threshold) the last draw gets the ring
// i <-> i+1 added, so the result is always connected and still seeded.
graph erdos_graph(int n, double p, uint64_t seed) {
  std::mt19937_64 rng(seed);
  // 53 random bits to [0, 1) by hand: std::uniform_real_distribution is not
  // specified bit-for-bit, and a seed must give the same graph everywhere.
  auto uniform01 = [&rng] { return static_cast<double>(rng() >> 11) * 0x1.0p-53; };
  graph g(n);
  for (int draw = 0; draw < erdos_max_draws; ++draw) {
    g = graph(n);
    for (int i = 0; i < n; ++i)
      for (int j = i + 1; j < n; ++j)
        if (uniform01() < p)
          g.add_edge(i, j);
    if (g.connected())
      return g;
  }
  for (int i = 0; i < n; ++i)
    g.add_edge(i, (i + 1) % n);
  return g;
}

// --- files --------------------------------------------------------------------

struct file_line {
  int number;  // 1-based, for messages
  std::vector<double> values;
};

std::vector<file_line> read_number_lines(const std::string& path) {
  std::ifstream in(path);
  if (!in)
    throw std::invalid_argument("topology file '" + path + "': cannot open it");
  std::vector<file_line> lines;
  std::string text;
  for (int number = 1; std::getline(in, text); ++number) {
    text = text.substr(0, text.find('#'));
    std::istringstream tokens(text);
    file_line line{number, {}};
    for (std::string tok; tokens >> tok;) {
      char* end = nullptr;
      double v = std::strtod(tok.c_str(), &end);
      if (end != tok.c_str() + tok.size() || !std::isfinite(v))
        throw std::invalid_argument("topology file '" + path + "' line " + std::to_string(number) +
                                    ": '" + tok + "' is not a number");
      line.values.push_back(v);
    }
    if (!line.values.empty())
      lines.push_back(std::move(line));
  }
  if (lines.empty())
    throw std::invalid_argument("topology file '" + path + "': no edges or matrix rows in it");
  return lines;
}

bool is_node_id(double v, int n) {
  return v >= 0 && v < n && v == std::floor(v);
}

// An n x n matrix file and an edge list of n lines with n numbers each look
// alike for n = 2 or 3. Read it as an edge list when every line starts with
// two distinct node ids: as a matrix such rows could only form a 0/1
// permutation matrix, which never mixes.
bool looks_like_matrix(const std::vector<file_line>& lines, int n) {
  size_t k = lines.size();
  for (const auto& l : lines)
    if (l.values.size() != k)
      return false;
  if (k != 2 && k != 3)
    return true;
  for (const auto& l : lines)
    if (!is_node_id(l.values[0], n) || !is_node_id(l.values[1], n) || l.values[0] == l.values[1])
      return true;
  return false;
}

topology matrix_from_file(const std::string& path, const std::vector<file_line>& lines, int n) {
  int k = static_cast<int>(lines.size());
  if (k != n)
    throw std::invalid_argument("topology file '" + path + "' holds a " + std::to_string(k) + " x " +
                                std::to_string(k) + " matrix, but n = " + std::to_string(n));
  mixing_matrix m = zeros(n);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j)
      entry(m, i, j) = lines[i].values[j];
  topology t;
  t.phases.push_back(std::move(m));
  t.symmetric = true;
  for (int i = 0; i < n && t.symmetric; ++i)
    for (int j = 0; j < i; ++j)
      if (std::abs(t.phases[0].at(i, j) - t.phases[0].at(j, i)) > stochastic_tol) {
        t.symmetric = false;
        break;
      }
  return t;
}

topology edges_from_file(const std::string& path, const std::vector<file_line>& lines, int n,
                         weight_rule rule) {
  auto where = [&](const file_line& l) {
    return "topology file '" + path + "' line " + std::to_string(l.number) + ": ";
  };
  const file_line* weighted = nullptr;
  const file_line* unweighted = nullptr;
  int max_id = -1;
  for (const auto& l : lines) {
    if (l.values.size() != 2 && l.values.size() != 3)
      throw std::invalid_argument(where(l) + "expected 'i j' or 'i j w' (or a matrix: n lines of n numbers), got " +
                                  std::to_string(l.values.size()) + " numbers");
    for (int c = 0; c < 2; ++c)
      if (!is_node_id(l.values[c], std::numeric_limits<int>::max()))
        throw std::invalid_argument(where(l) + "node id " + fmt(l.values[c]) +
                                    " is not a non-negative integer");
    max_id = std::max({max_id, static_cast<int>(l.values[0]), static_cast<int>(l.values[1])});
    (l.values.size() == 3 ? weighted : unweighted) = &l;
  }
  if (weighted && unweighted)
    throw std::invalid_argument(where(*unweighted) + "has no weight, but line " +
                                std::to_string(weighted->number) +
                                " has one; give a weight on every line or on none");
  if (max_id + 1 != n)
    throw std::invalid_argument("topology file '" + path + "' has " + std::to_string(max_id + 1) +
                                " nodes (ids 0.." + std::to_string(max_id) + "), but n = " +
                                std::to_string(n));
  topology t;
  t.symmetric = true;
  if (unweighted) {
    graph g(n);
    for (const auto& l : lines) {
      int i = static_cast<int>(l.values[0]), j = static_cast<int>(l.values[1]);
      if (i == j)
        throw std::invalid_argument(where(l) + "self-loop " + std::to_string(i) +
                                    "; self weights come from the weight rule (give weights on "
                                    "every line to set them)");
      g.add_edge(i, j);
    }
    t.phases.push_back(weigh(g, rule));
    return t;
  }
  // Weights as given: "i j w" sets w_ij = w_ji = w, "i i w" a self weight; a
  // node without one keeps what its edges leave. validate then checks the rest.
  mixing_matrix m = zeros(n);
  std::vector<char> has(static_cast<size_t>(n) * n, 0);
  for (const auto& l : lines) {
    int i = static_cast<int>(l.values[0]), j = static_cast<int>(l.values[1]);
    double w = l.values[2];
    size_t ij = static_cast<size_t>(i) * n + j;
    if (has[ij] && m.w[ij] != w)
      throw std::invalid_argument(where(l) + "weight " + fmt(w) + " for " + std::to_string(i) + "-" +
                                  std::to_string(j) + " contradicts an earlier " + fmt(m.w[ij]));
    has[ij] = has[static_cast<size_t>(j) * n + i] = 1;
    entry(m, i, j) = entry(m, j, i) = w;
  }
  for (int i = 0; i < n; ++i) {
    size_t ii = static_cast<size_t>(i) * n + i;
    if (has[ii])
      continue;
    double rest = 1.0;
    for (int j = 0; j < n; ++j)
      if (j != i)
        rest -= m.at(i, j);
    // Decimal weights such as 0.1 leave a rest of -1e-17 instead of 0.
    entry(m, i, i) = std::abs(rest) < stochastic_tol ? std::max(rest, 0.0) : rest;
  }
  t.phases.push_back(std::move(m));
  return t;
}

topology from_file(const std::string& path, int n, weight_rule rule) {
  auto lines = read_number_lines(path);
  return looks_like_matrix(lines, n) ? matrix_from_file(path, lines, n)
                                     : edges_from_file(path, lines, n, rule);
}

// Reach from `start` following i -> j whenever j receives from i
// (forward = true) or the reverse.
std::vector<char> reach(const std::vector<std::vector<char>>& receives, int start, bool forward) {
  size_t n = receives.size();
  std::vector<char> seen(n, 0);
  std::vector<size_t> stack{static_cast<size_t>(start)};
  seen[start] = 1;
  while (!stack.empty()) {
    size_t a = stack.back();
    stack.pop_back();
    for (size_t b = 0; b < n; ++b) {
      bool edge = forward ? receives[b][a] : receives[a][b];
      if (edge && !seen[b]) {
        seen[b] = 1;
        stack.push_back(b);
      }
    }
  }
  return seen;
}

using row_major = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

row_major to_eigen(const mixing_matrix& m) {
  return Eigen::Map<const row_major>(m.w.data(), m.n, m.n);
}

} // namespace

// --- mixing_matrix ----------------------------------------------------------------

std::vector<int> mixing_matrix::in_neighbours(int i) const {
  std::vector<int> out;
  for (int j = 0; j < n; ++j)
    if (j != i && at(i, j) > 0)
      out.push_back(j);
  return out;
}

std::vector<int> mixing_matrix::out_neighbours(int i) const {
  std::vector<int> out;
  for (int j = 0; j < n; ++j)
    if (j != i && at(j, i) > 0)
      out.push_back(j);
  return out;
}

int mixing_matrix::max_degree() const {
  int d = 0;
  for (int i = 0; i < n; ++i)
    d = std::max(d, static_cast<int>(in_neighbours(i).size()));
  return d;
}

// --- names and rules ---------------------------------------------------------------

weight_rule parse_weight_rule(const std::string& name) {
  if (name == "uniform")
    return weight_rule::uniform;
  if (name == "metropolis")
    return weight_rule::metropolis;
  throw std::invalid_argument("unknown weight rule '" + name + "'; valid: uniform, metropolis");
}

const char* to_string(weight_rule rule) {
  return rule == weight_rule::uniform ? "uniform" : "metropolis";
}

std::vector<std::pair<std::string, std::string>> topology_names() {
  return {
    {"ring", "i <-> i+-1 mod n; degree 2"},
    {"torus", "2-D torus on r x c = n (r the largest divisor <= sqrt n); degree <= 4"},
    {"complete", "all pairs, weights 1/n: exact averaging every round"},
    {"star", "node 0 <-> everyone; irregular, so uniform means max-degree weights"},
    {"hypercube", "i <-> i xor 2^k; n a power of two; degree log2 n"},
    {"exp", "directed static exponential graph: i -> i + 2^k mod n; not symmetric"},
    {"onepeer-exp", "one-peer exponential graph: round t, i -> i + 2^(t mod ceil(log2 n)); time-varying"},
    {"erdos:P", "Erdos-Renyi G(n, P), seeded, redrawn until connected"},
    {"file:PATH", "edge list ('i j' or 'i j w' lines) or dense n x n matrix from PATH"},
  };
}

topology make_topology(const std::string& spec, int n, weight_rule rule, uint64_t seed) {
  auto colon = spec.find(':');
  std::string kind = spec.substr(0, colon);
  std::string arg = colon == std::string::npos ? "" : spec.substr(colon + 1);
  bool takes_arg = kind == "erdos" || kind == "file";
  auto bad = [&](const std::string& what) {
    return std::invalid_argument("topology '" + spec + "' (n=" + std::to_string(n) + "): " + what);
  };

  bool known = false;
  for (const auto& [name, summary] : topology_names())
    known = known || name.substr(0, name.find(':')) == kind;
  if (!known)
    throw std::invalid_argument("unknown topology '" + spec + "'; valid: " + valid_specs);
  if (!takes_arg && colon != std::string::npos)
    throw bad("'" + kind + "' takes no parameter (got '" + arg + "'); valid: " + valid_specs);
  if (takes_arg && colon == std::string::npos)
    throw bad("needs a parameter: " + kind + (kind == "erdos" ? ":P" : ":PATH"));
  if (n < 1)
    throw bad("n must be >= 1");

  topology t;
  if (kind == "ring") {
    t.phases.push_back(weigh(ring_graph(n), rule));
  } else if (kind == "torus") {
    t.phases.push_back(weigh(torus_graph(n), rule));
  } else if (kind == "complete") {
    t.phases.push_back(weigh(complete_graph(n), rule));
  } else if (kind == "star") {
    t.phases.push_back(weigh(star_graph(n), rule));
  } else if (kind == "hypercube") {
    if (!is_power_of_two(n))
      throw bad("hypercube needs n to be a power of two");
    t.phases.push_back(weigh(hypercube_graph(n), rule));
  } else if (kind == "exp") {
    t.phases.push_back(exp_matrix(n));
    t.symmetric = false;
  } else if (kind == "onepeer-exp") {
    t.phases = onepeer_exp_phases(n);
    t.symmetric = false;
  } else if (kind == "erdos") {
    double p = parse_probability(spec, arg);
    t.phases.push_back(weigh(erdos_graph(n, p, seed), rule));
  } else {  // file
    if (arg.empty())
      throw bad("file: needs a path");
    t = from_file(arg, n, rule);
  }
  t.name = spec;
  validate(t);
  return t;
}

// --- checks -----------------------------------------------------------------------

void validate(const topology& t) {
  int n = t.phases.empty() ? 0 : t.phases[0].n;
  std::string head = "topology " + t.name + " (n=" + std::to_string(n) + "): ";
  auto fail = [&](const std::string& what) { throw std::invalid_argument(head + what); };
  if (t.phases.empty())
    fail("no mixing matrix");
  if (n < 1)
    fail("no nodes");
  // receives[i][j]: i takes a positive weight from j != i in some phase.
  std::vector<std::vector<char>> receives(n, std::vector<char>(n, 0));
  for (size_t p = 0; p < t.phases.size(); ++p) {
    const mixing_matrix& m = t.phases[p];
    std::string where = t.phases.size() > 1 ? "phase " + std::to_string(p) + ": " : "";
    if (m.n != n || m.w.size() != static_cast<size_t>(n) * n)
      fail(where + "matrix is not " + std::to_string(n) + " x " + std::to_string(n));
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < n; ++j) {
        double w = m.at(i, j);
        // Written so that NaN fails too.
        if (!(w >= 0.0))
          fail(where + "entry w[" + std::to_string(i) + "][" + std::to_string(j) + "] = " + fmt(w) +
               " is negative");
        if (i != j && w > 0)
          receives[i][j] = 1;
      }
    for (int i = 0; i < n; ++i) {
      double row = 0, col = 0;
      for (int j = 0; j < n; ++j) {
        row += m.at(i, j);
        col += m.at(j, i);
      }
      if (std::abs(row - 1.0) > stochastic_tol)
        fail(where + "row " + std::to_string(i) + " sums to " + fmt(row) + ", not 1");
      if (std::abs(col - 1.0) > stochastic_tol)
        fail(where + "column " + std::to_string(i) + " sums to " + fmt(col) + ", not 1");
    }
    if (t.symmetric)
      for (int i = 0; i < n; ++i)
        for (int j = 0; j < i; ++j)
          if (std::abs(m.at(i, j) - m.at(j, i)) > stochastic_tol)
            fail(where + "claimed symmetric, but w[" + std::to_string(i) + "][" + std::to_string(j) +
                 "] = " + fmt(m.at(i, j)) + " and w[" + std::to_string(j) + "][" +
                 std::to_string(i) + "] = " + fmt(m.at(j, i)));
  }
  // Strongly connected: node 0 reaches everyone and everyone reaches node 0.
  for (bool forward : {true, false}) {
    auto seen = reach(receives, 0, forward);
    for (int i = 0; i < n; ++i)
      if (!seen[i])
        fail("not connected: " +
             (forward ? "node " + std::to_string(i) + " never receives from node 0"
                      : "node 0 never receives from node " + std::to_string(i)) +
             (t.phases.size() > 1 ? " (over all phases)" : ""));
  }
}

// --- spectra ----------------------------------------------------------------------

double second_largest_eigenvalue_modulus(const mixing_matrix& m) {
  if (m.n <= 1)
    return 0.0;
  Eigen::MatrixXd a = to_eigen(m);
  double slem;
  if ((a - a.transpose()).cwiseAbs().maxCoeff() <= spectral_floor) {
    Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(a, Eigen::EigenvaluesOnly);
    Eigen::VectorXd moduli = es.eigenvalues().cwiseAbs();
    std::sort(moduli.data(), moduli.data() + moduli.size(), std::greater<double>());
    slem = moduli[1];
  } else {
    // Singular values come sorted in decreasing order.
    Eigen::JacobiSVD<Eigen::MatrixXd> svd(a);
    slem = svd.singularValues()[1];
  }
  return slem < spectral_floor ? 0.0 : slem;
}

double spectral_gap(const topology& t) {
  if (t.phases.empty())
    throw std::invalid_argument("topology " + t.name + ": no mixing matrix");
  if (t.phases.size() == 1)
    return std::max(0.0, 1.0 - second_largest_eigenvalue_modulus(t.phases[0]));
  int n = t.phases[0].n;
  Eigen::MatrixXd product = Eigen::MatrixXd::Identity(n, n);
  // x_{t+1} = W_t x_t, so one period is W_{P-1} ... W_1 W_0.
  for (const auto& m : t.phases)
    product = to_eigen(m) * product;
  mixing_matrix period;
  period.n = n;
  period.w.resize(static_cast<size_t>(n) * n);
  Eigen::Map<row_major>(period.w.data(), n, n) = product;
  double slem = second_largest_eigenvalue_modulus(period);
  return std::max(0.0, 1.0 - std::pow(slem, 1.0 / static_cast<double>(t.phases.size())));
}

} // namespace chorus
