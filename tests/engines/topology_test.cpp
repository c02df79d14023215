// Mixing matrices: the checks from the issue.
//  - every spec at n = 1, 2, 3, 8, 16 (hypercube at powers of two), both
//    rules: nonnegative, doubly stochastic, symmetric where claimed,
//    connected, the expected degree, spectral gap in (0, 1] (1 at n = 1) --
//    all checked here by hand, not by trusting validate();
//  - closed forms: ring SLEM 1/3 + 2/3 cos(2 pi / n), complete SLEM 0,
//    hypercube SLEM |1 - 2/(log2 n + 1)|, exp SLEM from its circulant
//    spectrum, one-peer exponential period product = 11^T/n;
//  - files (edge list, weighted edge list, dense matrix) and their errors,
//    bad specs, and Erdos-Renyi determinism.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <complex>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "engines/topology.hpp"

using namespace chorus;

namespace {

constexpr double pi = 3.14159265358979323846;

// The message of the std::invalid_argument that `f` throws ("" if none).
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// Writes `text` to a file named after the running test; returns its path.
std::string write_file(const std::string& suffix, const std::string& text) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string path = ::testing::TempDir() + "chorus_topology_" + info->test_suite_name() + "_" +
                     info->name() + "_" + suffix + ".txt";
  std::ofstream(path) << text;
  return path;
}

int log2_exact(int n) {
  int k = 0;
  while ((1 << k) < n)
    ++k;
  return k;
}

// Strong connectivity of the union of all phases, by a search from every node.
bool strongly_connected(const topology& t) {
  int n = t.phases[0].n;
  for (int start = 0; start < n; ++start) {
    std::vector<char> seen(n, 0);
    std::vector<int> stack{start};
    seen[start] = 1;
    while (!stack.empty()) {
      int a = stack.back();
      stack.pop_back();
      for (const auto& m : t.phases)
        for (int b = 0; b < n; ++b)
          if (m.at(b, a) > 0 && !seen[b]) {  // b receives from a
            seen[b] = 1;
            stack.push_back(b);
          }
    }
    for (int b = 0; b < n; ++b)
      if (!seen[b])
        return false;
  }
  return true;
}

// Matrix product a * b of two n x n row-major matrices.
std::vector<double> multiply(const std::vector<double>& a, const std::vector<double>& b, int n) {
  std::vector<double> c(static_cast<size_t>(n) * n, 0.0);
  for (int i = 0; i < n; ++i)
    for (int k = 0; k < n; ++k)
      for (int j = 0; j < n; ++j)
        c[i * n + j] += a[i * n + k] * b[k * n + j];
  return c;
}

// The in-degree every node must have, or -1 where it varies (star, erdos).
int expected_degree(const std::string& spec, int n) {
  if (n == 1)
    return 0;
  if (spec == "ring")
    return n == 2 ? 1 : 2;
  if (spec == "torus") {
    switch (n) {
      case 2: return 1;   // 1 x 2
      case 3: return 2;   // 1 x 3: a ring
      case 8: return 3;   // 2 x 4: up and down are the same node
      case 16: return 4;  // 4 x 4
    }
  }
  if (spec == "complete")
    return n - 1;
  if (spec == "hypercube")
    return log2_exact(n);
  if (spec == "exp")
    return static_cast<int>(std::floor(std::log2(n - 1))) + 1;
  if (spec == "onepeer-exp")
    return 1;
  return -1;
}

struct contract_case {
  std::string spec;
  int n;
  weight_rule rule;
};

void PrintTo(const contract_case& c, std::ostream* os) {
  *os << c.spec << " n=" << c.n << " " << to_string(c.rule);
}

std::vector<contract_case> contract_cases() {
  std::vector<contract_case> out;
  for (std::string spec :
       {"ring", "torus", "complete", "star", "hypercube", "exp", "onepeer-exp", "erdos:0.5"})
    for (int n : {1, 2, 3, 8, 16})
      for (auto rule : {weight_rule::uniform, weight_rule::metropolis}) {
        if (spec == "hypercube" && (n & (n - 1)) != 0)
          continue;
        out.push_back({spec, n, rule});
      }
  return out;
}

std::string case_name(const ::testing::TestParamInfo<contract_case>& info) {
  std::string s = info.param.spec + "_n" + std::to_string(info.param.n) + "_" + to_string(info.param.rule);
  for (auto& c : s)
    if (!std::isalnum(static_cast<unsigned char>(c)))
      c = '_';
  return s;
}

} // namespace

// --- every spec, every size ---------------------------------------------------------

class topology_contract : public ::testing::TestWithParam<contract_case> {};

TEST_P(topology_contract, is_a_valid_mixing_topology) {
  const auto& c = GetParam();
  topology t = make_topology(c.spec, c.n, c.rule, 7);
  EXPECT_EQ(t.name, c.spec);
  ASSERT_FALSE(t.phases.empty());
  EXPECT_NO_THROW(validate(t));
  for (size_t p = 0; p < t.phases.size(); ++p) {
    SCOPED_TRACE("phase " + std::to_string(p));
    const mixing_matrix& m = t.phases[p];
    ASSERT_EQ(m.n, c.n);
    ASSERT_EQ(m.w.size(), static_cast<size_t>(c.n) * c.n);
    for (int i = 0; i < c.n; ++i) {
      double row = 0, col = 0;
      for (int j = 0; j < c.n; ++j) {
        EXPECT_GE(m.at(i, j), 0.0) << "w[" << i << "][" << j << "]";
        row += m.at(i, j);
        col += m.at(j, i);
        if (t.symmetric) {
          EXPECT_NEAR(m.at(i, j), m.at(j, i), 1e-12) << "w[" << i << "][" << j << "]";
        }
      }
      EXPECT_NEAR(row, 1.0, 1e-12) << "row " << i;
      EXPECT_NEAR(col, 1.0, 1e-12) << "column " << i;
    }
  }
  EXPECT_TRUE(strongly_connected(t));

  double gap = spectral_gap(t);
  if (c.n == 1) {
    ASSERT_EQ(t.phases.size(), 1u);
    EXPECT_EQ(t.phases[0].w, std::vector<double>{1.0});
    EXPECT_EQ(gap, 1.0);
  } else {
    EXPECT_GT(gap, 0.0);
    EXPECT_LE(gap, 1.0);
  }
  if (c.spec == "complete") {
    EXPECT_DOUBLE_EQ(gap, 1.0);
  }

  int d = expected_degree(c.spec, c.n);
  if (d >= 0)
    for (const auto& m : t.phases) {
      EXPECT_EQ(m.max_degree(), d);
      for (int i = 0; i < c.n; ++i) {
        EXPECT_EQ(static_cast<int>(m.in_neighbours(i).size()), d) << "node " << i;
        EXPECT_EQ(static_cast<int>(m.out_neighbours(i).size()), d) << "node " << i;
      }
    }
  if (c.spec == "star") {
    EXPECT_EQ(t.phases[0].max_degree(), c.n - 1);
    for (int i = 1; i < c.n; ++i)
      EXPECT_EQ(t.phases[0].in_neighbours(i), std::vector<int>{0});
  }
  if (c.spec == "onepeer-exp") {
    EXPECT_EQ(static_cast<int>(t.phases.size()), c.n == 1 ? 1 : log2_exact(c.n));
  } else {
    EXPECT_EQ(t.phases.size(), 1u);
  }
  EXPECT_EQ(t.symmetric, c.spec != "exp" && c.spec != "onepeer-exp");
}

INSTANTIATE_TEST_SUITE_P(all_specs, topology_contract, ::testing::ValuesIn(contract_cases()),
                         case_name);

TEST(topology, every_listed_name_builds) {
  std::string ring_file = write_file("ring", "0 1\n1 2\n2 3\n3 4\n4 5\n5 6\n6 7\n7 0\n");
  auto names = topology_names();
  ASSERT_EQ(names.size(), 9u);
  for (const auto& [name, summary] : names) {
    SCOPED_TRACE(name);
    EXPECT_FALSE(summary.empty());
    std::string spec = name == "erdos:P" ? "erdos:0.4" : name == "file:PATH" ? "file:" + ring_file : name;
    topology t = make_topology(spec, 8, weight_rule::uniform, 1);
    EXPECT_EQ(t.name, spec);
    EXPECT_GT(spectral_gap(t), 0.0);
  }
}

// --- closed forms ---------------------------------------------------------------------

TEST(topology, ring_slem_matches_circulant_spectrum) {
  for (int n : {8, 16}) {
    topology t = make_topology("ring", n, weight_rule::uniform, 0);
    EXPECT_NEAR(t.phases[0].at(0, 1), 1.0 / 3, 1e-15);
    EXPECT_NEAR(t.phases[0].at(0, n - 1), 1.0 / 3, 1e-15);
    EXPECT_NEAR(t.phases[0].at(0, 0), 1.0 / 3, 1e-15);
    double expected = 0;
    for (int k = 1; k < n; ++k)
      expected = std::max(expected, std::abs(1.0 / 3 + 2.0 / 3 * std::cos(2 * pi * k / n)));
    EXPECT_NEAR(second_largest_eigenvalue_modulus(t.phases[0]), expected, 1e-12) << "n=" << n;
    EXPECT_NEAR(spectral_gap(t), 1 - expected, 1e-12) << "n=" << n;
  }
}

TEST(topology, complete_graph_averages_exactly) {
  for (int n : {2, 3, 8, 16})
    for (auto rule : {weight_rule::uniform, weight_rule::metropolis}) {
      topology t = make_topology("complete", n, rule, 0);
      for (double w : t.phases[0].w)
        EXPECT_NEAR(w, 1.0 / n, 1e-15) << "n=" << n;
      EXPECT_EQ(second_largest_eigenvalue_modulus(t.phases[0]), 0.0) << "n=" << n;
      EXPECT_EQ(spectral_gap(t), 1.0) << "n=" << n;
    }
}

TEST(topology, hypercube_slem_closed_form) {
  for (int n : {2, 4, 8, 16}) {
    topology t = make_topology("hypercube", n, weight_rule::uniform, 0);
    double d = log2_exact(n);
    EXPECT_NEAR(t.phases[0].at(0, 0), 1 / (d + 1), 1e-15);
    EXPECT_NEAR(second_largest_eigenvalue_modulus(t.phases[0]), std::abs(1 - 2 / (d + 1)), 1e-12)
      << "n=" << n;
    EXPECT_EQ(t.phases[0].in_neighbours(5 % n), [&] {
      std::vector<int> nb;
      for (int bit = 1; bit < n; bit *= 2)
        nb.push_back((5 % n) ^ bit);
      std::sort(nb.begin(), nb.end());
      return nb;
    }());
  }
  std::string e = error_of([] { make_topology("hypercube", 6, weight_rule::uniform, 0); });
  EXPECT_TRUE(contains(e, "power of two")) << e;
  EXPECT_TRUE(contains(e, "n=6")) << e;
}

TEST(topology, exp_graph_is_directed_circulant) {
  topology t = make_topology("exp", 16, weight_rule::uniform, 0);
  const mixing_matrix& m = t.phases[0];
  EXPECT_FALSE(t.symmetric);
  EXPECT_EQ(m.out_neighbours(0), (std::vector<int>{1, 2, 4, 8}));
  EXPECT_EQ(m.in_neighbours(0), (std::vector<int>{8, 12, 14, 15}));
  EXPECT_NEAR(m.at(0, 15), 0.2, 1e-15);
  EXPECT_EQ(m.at(15, 0), 0.0);
  // A circulant matrix is normal, so its singular values are the moduli of
  // its eigenvalues (1 + sum_s e^{-2 pi i k s / n}) / 5.
  double expected = 0;
  for (int k = 1; k < 16; ++k) {
    std::complex<double> z = 1;
    for (int s : {1, 2, 4, 8})
      z += std::polar(1.0, -2 * pi * k * s / 16);
    expected = std::max(expected, std::abs(z) / 5);
  }
  EXPECT_NEAR(second_largest_eigenvalue_modulus(m), expected, 1e-12);
  EXPECT_NEAR(spectral_gap(t), 1 - expected, 1e-12);
}

TEST(topology, onepeer_exp_period_is_exact_average_for_powers_of_two) {
  for (int n : {8, 16}) {
    topology t = make_topology("onepeer-exp", n, weight_rule::uniform, 0);
    ASSERT_EQ(static_cast<int>(t.phases.size()), log2_exact(n));
    EXPECT_TRUE(t.time_varying());
    std::vector<double> product(static_cast<size_t>(n) * n, 0.0);
    for (int i = 0; i < n; ++i)
      product[i * n + i] = 1;
    for (const auto& m : t.phases) {
      EXPECT_EQ(m.in_neighbours(0).size(), 1u);
      product = multiply(m.w, product, n);
    }
    for (double x : product)
      EXPECT_NEAR(x, 1.0 / n, 1e-15) << "n=" << n;
    EXPECT_DOUBLE_EQ(spectral_gap(t), 1.0) << "n=" << n;
    // The last phase (hop n/2) pairs nodes off: alone it never mixes the pairs.
    EXPECT_NEAR(second_largest_eigenvalue_modulus(t.phases.back()), 1.0, 1e-9);
  }
  // Off powers of two one period does not average exactly.
  topology six = make_topology("onepeer-exp", 6, weight_rule::uniform, 0);
  EXPECT_EQ(six.phases.size(), 3u);
  EXPECT_LT(spectral_gap(six), 0.99);
  EXPECT_GT(spectral_gap(six), 0.0);
}

TEST(topology, time_varying_gap_multiplies_phases_in_round_order) {
  // Phases that do not commute: average nodes 1 and 2, then a directed
  // 3-cycle mix, then average nodes 0 and 1.
  topology t;
  t.name = "three-phase";
  t.symmetric = false;
  t.phases.push_back(mixing_matrix{3, {1, 0, 0, 0, 0.5, 0.5, 0, 0.5, 0.5}});
  t.phases.push_back(mixing_matrix{3, {0.5, 0.5, 0, 0, 0.5, 0.5, 0.5, 0, 0.5}});
  t.phases.push_back(mixing_matrix{3, {0.5, 0.5, 0, 0.5, 0.5, 0, 0, 0, 1}});
  ASSERT_EQ(error_of([&] { validate(t); }), "");
  // Round r applies phase r: x_3 = W_2 W_1 W_0 x_0.
  const auto& w = t.phases;
  mixing_matrix period{3, multiply(w[2].w, multiply(w[1].w, w[0].w, 3), 3)};
  mixing_matrix reversed{3, multiply(w[0].w, multiply(w[1].w, w[2].w, 3), 3)};
  double slem = second_largest_eigenvalue_modulus(period);
  EXPECT_NEAR(slem, 0.25, 1e-12);
  EXPECT_NEAR(second_largest_eigenvalue_modulus(reversed), 0.5, 1e-12);
  EXPECT_NEAR(spectral_gap(t), 1 - std::cbrt(0.25), 1e-12);
}

TEST(topology, round_picks_phase_periodically) {
  topology t = make_topology("onepeer-exp", 16, weight_rule::uniform, 0);
  EXPECT_EQ(&t.at(0), &t.phases[0]);
  EXPECT_EQ(&t.at(5), &t.phases[1]);
  EXPECT_EQ(&t.at(1000003), &t.phases[3]);
  EXPECT_EQ(t.at(2).in_neighbours(0), std::vector<int>{12});
  topology ring = make_topology("ring", 16, weight_rule::uniform, 0);
  EXPECT_FALSE(ring.time_varying());
  EXPECT_EQ(&ring.at(12345), &ring.phases[0]);
}

TEST(topology, torus_shape_follows_the_largest_divisor) {
  EXPECT_EQ(make_topology("torus", 12, weight_rule::uniform, 0).phases[0].max_degree(), 4);  // 3 x 4
  topology t16 = make_topology("torus", 16, weight_rule::uniform, 0);
  EXPECT_EQ(t16.phases[0].in_neighbours(5), (std::vector<int>{1, 4, 6, 9}));
  EXPECT_NEAR(second_largest_eigenvalue_modulus(t16.phases[0]), 0.6, 1e-12);
  // n prime: 1 x n, the ring.
  EXPECT_EQ(make_topology("torus", 7, weight_rule::uniform, 0).phases[0].w,
            make_topology("ring", 7, weight_rule::uniform, 0).phases[0].w);
}

// --- weight rules ---------------------------------------------------------------------

TEST(topology, star_weights_are_doubly_stochastic_under_both_rules) {
  for (auto rule : {weight_rule::uniform, weight_rule::metropolis}) {
    topology t = make_topology("star", 5, rule, 0);
    const mixing_matrix& m = t.phases[0];
    EXPECT_NEAR(m.at(0, 0), 0.2, 1e-15);
    EXPECT_NEAR(m.at(0, 3), 0.2, 1e-15);
    EXPECT_NEAR(m.at(3, 0), 0.2, 1e-15);
    EXPECT_NEAR(m.at(3, 3), 0.8, 1e-15);
    EXPECT_EQ(m.at(1, 2), 0.0);
  }
}

TEST(topology, naive_uniform_weights_on_a_star_are_rejected) {
  // 1/(deg_i + 1) per row: rows sum to 1, but the hub's column does not.
  topology t;
  t.name = "star";
  t.phases.resize(1);
  mixing_matrix& m = t.phases[0];
  m.n = 5;
  m.w.assign(25, 0.0);
  for (int j = 0; j < 5; ++j)
    m.w[j] = 0.2;
  for (int i = 1; i < 5; ++i)
    m.w[i * 5] = m.w[i * 5 + i] = 0.5;
  t.symmetric = false;
  EXPECT_EQ(error_of([&] { validate(t); }), "topology star (n=5): column 0 sums to 2.2, not 1");
}

TEST(topology, uniform_and_metropolis_differ_on_irregular_graphs) {
  // Degrees 3, 1, 1, 2, 1.
  std::string path = write_file("tail", "# a star with a tail\n0 1\n0 2\n0 3\n3 4  # the tail\n");
  topology u = make_topology("file:" + path, 5, weight_rule::uniform, 0);
  topology m = make_topology("file:" + path, 5, weight_rule::metropolis, 0);
  // uniform = max-degree weights: 1/(3 + 1) on every edge.
  EXPECT_NEAR(u.phases[0].at(3, 4), 0.25, 1e-15);
  EXPECT_NEAR(u.phases[0].at(3, 3), 0.5, 1e-15);
  EXPECT_NEAR(u.phases[0].at(4, 4), 0.75, 1e-15);
  // metropolis: 1/(1 + max(d_i, d_j)).
  EXPECT_NEAR(m.phases[0].at(3, 4), 1.0 / 3, 1e-15);
  EXPECT_NEAR(m.phases[0].at(0, 3), 0.25, 1e-15);
  EXPECT_NEAR(m.phases[0].at(3, 3), 5.0 / 12, 1e-15);
  EXPECT_NEAR(m.phases[0].at(4, 4), 2.0 / 3, 1e-15);
}

TEST(topology, parse_weight_rule_names_both) {
  EXPECT_EQ(parse_weight_rule("uniform"), weight_rule::uniform);
  EXPECT_EQ(parse_weight_rule("metropolis"), weight_rule::metropolis);
  EXPECT_EQ(parse_weight_rule(to_string(weight_rule::metropolis)), weight_rule::metropolis);
  std::string e = error_of([] { parse_weight_rule("max-degree"); });
  EXPECT_TRUE(contains(e, "max-degree")) << e;
  EXPECT_TRUE(contains(e, "uniform")) << e;
  EXPECT_TRUE(contains(e, "metropolis")) << e;
}

// --- validate ---------------------------------------------------------------------------

TEST(topology, validate_rejects_each_broken_property) {
  auto two = [](std::vector<double> w, bool symmetric) {
    topology t;
    t.name = "hand";
    t.phases.push_back(mixing_matrix{2, std::move(w)});
    t.symmetric = symmetric;
    return t;
  };
  EXPECT_EQ(error_of([&] { validate(two({0.5, 0.5, 0.5, 0.5}, true)); }), "");
  std::string e = error_of([&] { validate(two({1.5, -0.5, -0.5, 1.5}, true)); });
  EXPECT_TRUE(contains(e, "w[0][1] = -0.5 is negative")) << e;
  e = error_of([&] { validate(two({0.5, 0.5, 0.5, 0}, false)); });
  EXPECT_TRUE(contains(e, "row 1 sums to 0.5, not 1")) << e;
  e = error_of([&] { validate(two({0.75, 0.25, 0.75, 0.25}, false)); });
  EXPECT_TRUE(contains(e, "column 0 sums to 1.5, not 1")) << e;
  e = error_of([&] { validate(two({1, 0, 0, 1}, true)); });
  EXPECT_TRUE(contains(e, "topology hand (n=2): not connected")) << e;
  // Doubly stochastic and strongly connected, but not symmetric.
  topology t;
  t.name = "cycle";
  t.phases.push_back(mixing_matrix{3, {0.5, 0, 0.5, 0.5, 0.5, 0, 0, 0.5, 0.5}});
  t.symmetric = false;
  EXPECT_EQ(error_of([&] { validate(t); }), "");
  t.symmetric = true;
  e = error_of([&] { validate(t); });
  EXPECT_TRUE(contains(e, "claimed symmetric")) << e;
  // Time-varying: each phase alone is disconnected, the union is not.
  topology tv;
  tv.name = "alternating";
  tv.symmetric = true;
  tv.phases.push_back(mixing_matrix{3, {0.5, 0.5, 0, 0.5, 0.5, 0, 0, 0, 1}});
  tv.phases.push_back(mixing_matrix{3, {1, 0, 0, 0, 0.5, 0.5, 0, 0.5, 0.5}});
  EXPECT_EQ(error_of([&] { validate(tv); }), "");
  tv.phases[1] = tv.phases[0];
  e = error_of([&] { validate(tv); });
  EXPECT_TRUE(contains(e, "not connected")) << e;
  EXPECT_NEAR(spectral_gap(tv), 0.0, 1e-12);
}

// --- files -----------------------------------------------------------------------------

TEST(topology, file_edge_list_dense_matrix_and_weights) {
  // Edge list: a ring of 4 with a comment and a blank line.
  std::string edges = write_file("edges", "# ring\n0 1\n1 2\n\n2 3\n3 0\n");
  EXPECT_EQ(make_topology("file:" + edges, 4, weight_rule::uniform, 0).phases[0].w,
            make_topology("ring", 4, weight_rule::uniform, 0).phases[0].w);
  // Weighted edge list: weights as given, self weights what is left.
  std::string weighted = write_file("weighted", "0 1 0.1\n1 2 0.3\n2 0 0.2\n0 0 0.7\n");
  const mixing_matrix wm = make_topology("file:" + weighted, 3, weight_rule::uniform, 0).phases[0];
  EXPECT_EQ(wm.at(1, 0), 0.1);
  EXPECT_EQ(wm.at(0, 2), 0.2);
  EXPECT_EQ(wm.at(0, 0), 0.7);
  EXPECT_NEAR(wm.at(1, 1), 0.6, 1e-15);
  // Dense, not symmetric (the directed 4-node exponential graph).
  std::string dense = write_file("dense",
                                 "0.3333333333333333 0 0.3333333333333333 0.3333333333333333\n"
                                 "0.3333333333333333 0.3333333333333333 0 0.3333333333333333\n"
                                 "0.3333333333333333 0.3333333333333333 0.3333333333333333 0\n"
                                 "0 0.3333333333333333 0.3333333333333333 0.3333333333333333\n");
  topology d = make_topology("file:" + dense, 4, weight_rule::uniform, 0);
  EXPECT_FALSE(d.symmetric);
  EXPECT_EQ(d.phases[0].in_neighbours(0), (std::vector<int>{2, 3}));
  EXPECT_NEAR(spectral_gap(d), spectral_gap(make_topology("exp", 4, weight_rule::uniform, 0)), 1e-12);
  // n = 2: two lines of two numbers. Node ids -> an edge list; weights -> a matrix.
  std::string as_edges = write_file("as_edges", "0 1\n1 0\n");
  EXPECT_EQ(make_topology("file:" + as_edges, 2, weight_rule::uniform, 0).phases[0].w,
            (std::vector<double>{0.5, 0.5, 0.5, 0.5}));
  std::string as_matrix = write_file("as_matrix", "0.25 0.75\n0.75 0.25\n");
  EXPECT_EQ(make_topology("file:" + as_matrix, 2, weight_rule::uniform, 0).phases[0].w,
            (std::vector<double>{0.25, 0.75, 0.75, 0.25}));
}

TEST(topology, file_disconnected_graph_is_rejected) {
  std::string path = write_file("split", "0 1\n2 3\n");
  std::string e = error_of([&] { make_topology("file:" + path, 4, weight_rule::uniform, 0); });
  EXPECT_TRUE(contains(e, "not connected")) << e;
  EXPECT_TRUE(contains(e, path)) << e;
}

TEST(topology, file_matrix_that_is_not_doubly_stochastic_is_rejected) {
  // Rows sum to 1; column 0 sums to 1.5.
  std::string path = write_file("rows_only", "0.5 0.25 0.25\n0.5 0.5 0\n0.5 0 0.5\n");
  std::string e = error_of([&] { make_topology("file:" + path, 3, weight_rule::uniform, 0); });
  EXPECT_TRUE(contains(e, "column 0 sums to 1.5, not 1")) << e;
  EXPECT_TRUE(contains(e, path)) << e;
  // Weighted edges whose weights exceed 1 at a node.
  std::string heavy = write_file("heavy", "0 1 0.6\n1 2 0.6\n");
  e = error_of([&] { make_topology("file:" + heavy, 3, weight_rule::uniform, 0); });
  EXPECT_TRUE(contains(e, "w[1][1] = -0.2 is negative")) << e;
}

TEST(topology, file_errors_name_the_file_and_line) {
  std::string missing = ::testing::TempDir() + "chorus_topology_no_such_file.txt";
  std::string e = error_of([&] { make_topology("file:" + missing, 4, weight_rule::uniform, 0); });
  EXPECT_TRUE(contains(e, missing)) << e;
  EXPECT_TRUE(contains(e, "cannot open")) << e;

  std::string bad = write_file("bad", "0 1\n# fine\n1 x\n");
  e = error_of([&] { make_topology("file:" + bad, 2, weight_rule::uniform, 0); });
  EXPECT_TRUE(contains(e, bad + "' line 3")) << e;
  EXPECT_TRUE(contains(e, "'x' is not a number")) << e;

  std::string wrong_n = write_file("wrong_n", "0 1\n1 2\n2 3\n");
  e = error_of([&] { make_topology("file:" + wrong_n, 5, weight_rule::uniform, 0); });
  EXPECT_TRUE(contains(e, wrong_n)) << e;
  EXPECT_TRUE(contains(e, "has 4 nodes")) << e;
  EXPECT_TRUE(contains(e, "n = 5")) << e;

  std::string small_matrix = write_file("small_matrix", "0.25 0.25 0.25 0.25\n0.25 0.25 0.25 0.25\n"
                                                        "0.25 0.25 0.25 0.25\n0.25 0.25 0.25 0.25\n");
  e = error_of([&] { make_topology("file:" + small_matrix, 5, weight_rule::uniform, 0); });
  EXPECT_TRUE(contains(e, "4 x 4 matrix, but n = 5")) << e;

  std::string mixed = write_file("mixed", "0 1 0.5\n1 2\n");
  e = error_of([&] { make_topology("file:" + mixed, 3, weight_rule::uniform, 0); });
  EXPECT_TRUE(contains(e, "line 2")) << e;
  EXPECT_TRUE(contains(e, "no weight")) << e;

  std::string ragged = write_file("ragged", "0 1\n1 2 3 4\n");
  e = error_of([&] { make_topology("file:" + ragged, 3, weight_rule::uniform, 0); });
  EXPECT_TRUE(contains(e, "line 2")) << e;

  std::string fractional = write_file("fractional", "0 1.5\n");
  e = error_of([&] { make_topology("file:" + fractional, 2, weight_rule::uniform, 0); });
  EXPECT_TRUE(contains(e, "not a non-negative integer")) << e;

  std::string empty = write_file("empty", "# nothing\n\n");
  e = error_of([&] { make_topology("file:" + empty, 2, weight_rule::uniform, 0); });
  EXPECT_TRUE(contains(e, empty)) << e;
}

// --- specs ------------------------------------------------------------------------------

TEST(topology, bad_specs_throw_clear_messages) {
  auto make = [](const std::string& spec, int n) {
    return error_of([&] { make_topology(spec, n, weight_rule::uniform, 0); });
  };
  std::string e = make("erdos:1.5", 8);
  EXPECT_TRUE(contains(e, "1.5 is outside (0, 1]")) << e;
  e = make("erdos:0", 8);
  EXPECT_TRUE(contains(e, "outside (0, 1]")) << e;
  e = make("erdos:abc", 8);
  EXPECT_TRUE(contains(e, "'abc' is not a number")) << e;
  e = make("erdos:0.5x", 8);
  EXPECT_TRUE(contains(e, "not a number")) << e;
  e = make("erdos", 8);
  EXPECT_TRUE(contains(e, "needs a parameter")) << e;
  e = make("torus:x", 8);
  EXPECT_TRUE(contains(e, "'torus' takes no parameter")) << e;
  e = make("mesh", 8);
  EXPECT_TRUE(contains(e, "unknown topology 'mesh'")) << e;
  for (const auto& [name, summary] : topology_names())
    EXPECT_TRUE(contains(e, name)) << e;
  e = make("ring", 0);
  EXPECT_TRUE(contains(e, "n must be >= 1")) << e;
  e = make("file:", 2);
  EXPECT_TRUE(contains(e, "needs a path")) << e;
}

TEST(topology, erdos_is_deterministic_for_a_seed) {
  auto draw = [](uint64_t seed) {
    return make_topology("erdos:0.3", 16, weight_rule::metropolis, seed).phases[0].w;
  };
  EXPECT_EQ(draw(42), draw(42));
  EXPECT_NE(draw(42), draw(43));
  // Irregular, so the two rules give different weights.
  EXPECT_NE(make_topology("erdos:0.3", 16, weight_rule::uniform, 42).phases[0].w, draw(42));
}

TEST(topology, erdos_far_below_the_threshold_falls_back_to_a_ring) {
  topology t = make_topology("erdos:0.001", 16, weight_rule::uniform, 3);
  EXPECT_NO_THROW(validate(t));
  for (int i = 0; i < 16; ++i)
    EXPECT_GT(t.phases[0].at(i, (i + 1) % 16), 0.0) << "node " << i;
  // p = 1 is the complete graph.
  EXPECT_EQ(spectral_gap(make_topology("erdos:1", 16, weight_rule::uniform, 3)), 1.0);
}
