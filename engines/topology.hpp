// Mixing matrices for gossip (decentralized SGD: x_i <- sum_j w_ij x_j): the
// graphs a run can name (ring, torus, complete, star, hypercube, exponential,
// one-peer exponential, Erdos-Renyi, a file), the weight rules that make them
// doubly stochastic, the checks every matrix must pass, and spectral gaps.
// It is not the gossip protocol: it sends nothing and holds no weights; a
// protocol asks `topology::at(round)` whom each node receives from, and how much.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace chorus {

/// One mixing matrix W (n x n): row i holds the weights node i gives its
/// in-neighbours, w_ii is its self weight. Entries are >= 0 and rows and
/// columns sum to 1 once `validate` has passed.
struct mixing_matrix {
  int n = 0;
  std::vector<double> w;  ///< dense row-major n*n

  /// w_ij: how much node i takes from node j.
  double at(int i, int j) const { return w[static_cast<size_t>(i) * n + j]; }
  /// Nodes j != i with w_ij > 0 (whom i receives from), sorted.
  std::vector<int> in_neighbours(int i) const;
  /// Nodes j != i with w_ji > 0 (who receives from i), sorted.
  std::vector<int> out_neighbours(int i) const;
  /// Max over i of the in-neighbour count (0 for n = 1).
  int max_degree() const;
};

/// A topology: one matrix (static) or a periodic sequence of them
/// (time-varying, e.g. the one-peer exponential graph).
struct topology {
  std::string name;                   ///< the spec that built it
  std::vector<mixing_matrix> phases;  ///< size 1 for static graphs
  bool symmetric = true;              ///< claimed symmetric (checked by validate)

  /// The matrix used in round `round` (>= 0): phase round mod period.
  const mixing_matrix& at(int64_t round) const {
    return phases[static_cast<size_t>(round % static_cast<int64_t>(phases.size()))];
  }
  /// True when the matrix changes from round to round.
  bool time_varying() const { return phases.size() > 1; }
};

/// How an undirected graph becomes weights. Both give symmetric, doubly
/// stochastic matrices for every undirected graph:
/// - uniform: w_ij = 1/(d_max + 1) on every edge, w_ii = the rest, with d_max
///   the graph's largest degree ("max-degree weights"). On a regular graph
///   this is 1/(deg + 1) for self and each neighbour. On an irregular graph
///   (star, erdos, file) plain 1/(deg_i + 1) would not be doubly stochastic,
///   so low-degree nodes keep more for themselves instead.
/// - metropolis: w_ij = 1/(1 + max(d_i, d_j)) on edges, w_ii = 1 - sum_j w_ij.
/// The directed graphs (exp, onepeer-exp) ignore the rule: their equal
/// weights are already doubly stochastic.
enum class weight_rule { uniform, metropolis };

/// "uniform" | "metropolis"; std::invalid_argument listing both otherwise.
weight_rule parse_weight_rule(const std::string& name);

/// The rule's name, as parse_weight_rule reads it.
const char* to_string(weight_rule rule);

/// Builds the topology `spec` on n >= 1 nodes and validates it before
/// returning. Specs (n = 1 gives the 1x1 matrix [1] for all of them):
///   ring        i <-> i+-1 mod n (n = 2: one edge).
///   torus       r x c grid with wrap-around, r the largest divisor of n
///               <= sqrt(n) (n prime: 1 x n, the ring); node (a, b) = a*c + b.
///   complete    all pairs; weights 1/n.
///   star        node 0 <-> every other node.
///   hypercube   i <-> i xor 2^k; n must be a power of two.
///   exp         directed: i sends to i + 2^k mod n for 2^k < n, all weights
///               1/(peers + 1); doubly stochastic, not symmetric.
///   onepeer-exp time-varying: phase t = 0..ceil(log2 n)-1 is (I + P_t)/2,
///               P_t sending i -> i + 2^t mod n; not symmetric.
///   erdos:P     G(n, P), 0 < P <= 1, drawn from `seed` (the same graph on
///               every platform) and redrawn until connected; after 1000
///               disconnected draws the ring is added to the last one.
///   file:PATH   '#' starts a comment. Lines "i j" (0-based ids) are the edges
///               of an undirected graph weighed by `rule`. Lines "i j w", on
///               every line, set w_ij = w_ji = w as given ("i i w" a self
///               weight; a node without one keeps what its edges leave). n
///               lines of n numbers are a dense matrix, used as is (symmetric
///               if it is). The node count must equal n.
/// Throws std::invalid_argument on an unknown spec (listing the valid ones),
/// a bad parameter, an unreadable or malformed file (naming file and line),
/// or a matrix that fails validate.
topology make_topology(const std::string& spec, int n, weight_rule rule, uint64_t seed = 0);

/// (spec, one-line description) for every spec, in the order `chorus list`
/// prints them; parameterised specs are shown as "erdos:P" and "file:PATH".
std::vector<std::pair<std::string, std::string>> topology_names();

/// Checks every phase: every entry >= 0; rows and columns sum to 1 (within
/// 1e-9); symmetric if claimed; and the union of all phases' graphs is
/// strongly connected. Throws std::invalid_argument naming the topology and
/// what failed, e.g. "topology star (n=5): column 0 sums to 2.6, not 1".
void validate(const topology& t);

/// Second-largest eigenvalue modulus of W when W is symmetric; otherwise the
/// second-largest singular value (for a doubly stochastic W, ||W - 11^T/n||_2,
/// the factor by which one round shrinks the distance to the average).
/// 0 for n = 1. Values below 1e-12 are rounding noise and are returned as 0.
double second_largest_eigenvalue_modulus(const mixing_matrix& m);

/// Per-round spectral gap: 1 - slem(W_{P-1} ... W_0)^(1/P) over one period of
/// P phases (phase 0 applied first); 1 - slem(W) for a static graph. In
/// [0, 1]: 1 means exact averaging, 0 means no mixing.
double spectral_gap(const topology& t);

} // namespace chorus
