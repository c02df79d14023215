// The worker's contract: it answers every request with a fresh buffer, turns
// bad input into a caf::error (and stays alive), and keeps no algorithm.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

#include "actors/worker.hpp"
#include "tests/test_util.hpp"

using namespace chorus;

namespace {

// y = 2 x_0 - x_1 on a handful of points: the linear model's gradient at w
// is X^T (X w - y) / n, easy to check by hand.
dataset_ptr tiny_regression() {
  auto d = std::make_shared<dataset>();
  d->name = "tiny";
  d->task = task_kind::regression;
  d->num_features = 2;
  d->x = {1, 0, 0, 1, 1, 1, 2, -1};
  d->y = {2, -1, 1, 5};
  return d;
}

// The 10 s request timeout only turns a lost reply into a failure instead of
// a hang; every reply here is computed in microseconds, so a loaded or
// single-core machine is still three orders of magnitude inside it.
template <class T, class... Ts>
caf::expected<T> ask(caf::scoped_actor& self, const worker_actor& w, Ts... xs) {
  caf::expected<T> out{caf::error{}};
  self->request(w, std::chrono::seconds(10), xs...)
    .receive([&](T& x) { out = std::move(x); }, [&](caf::error& e) { out = std::move(e); });
  return out;
}

// A linear-model worker on tiny_regression with full batches, so its local
// steps are deterministic.
worker_config full_batch_linear() {
  worker_config cfg;
  cfg.model = "linear";
  cfg.data = tiny_regression();
  cfg.batch = 4;
  cfg.order = sampling::sequential;
  return cfg;
}

// `steps` local steps by hand, in double, on tiny_regression's full batch
// with an l1 prox: m <- beta m + g, x <- Prox(x - lr m) (beta 0: plain
// proximal gradient steps).
void steps_by_hand(const dataset& d, int steps, double lr, double l1, double beta, double x[2],
                   double m[2]) {
  const float* X = d.x.data();
  for (int k = 0; k < steps; ++k) {
    double g[2] = {0, 0};
    for (int i = 0; i < 4; ++i) {
      double res = X[2 * i] * x[0] + X[2 * i + 1] * x[1] - d.y[i];
      g[0] += res * X[2 * i] / 4, g[1] += res * X[2 * i + 1] / 4;
    }
    for (int j = 0; j < 2; ++j) {
      m[j] = beta * m[j] + g[j];
      double v = x[j] - lr * m[j];
      x[j] = std::copysign(std::max(std::fabs(v) - lr * l1, 0.0), v);
    }
  }
}

} // namespace

TEST(worker, gradient_at_weights_is_the_batch_mean_gradient) {
  test::test_system ts;
  test::actor_guard guard;
  worker_config cfg;
  cfg.rank = 5;
  cfg.model = "linear";
  cfg.data = tiny_regression();
  cfg.batch = 4;
  cfg.order = sampling::sequential;
  auto w = guard.add(spawn_worker(ts.sys, cfg));
  caf::scoped_actor self{ts.sys};
  auto g = ask<gradient>(self, w, compute_atom_v, weights{-1, 3, buffer::from({0.5f, 0.5f})});
  ASSERT_TRUE(g) << describe(g.error());
  EXPECT_EQ(g->sender, 5);
  EXPECT_EQ(g->step, 3);
  EXPECT_EQ(g->samples, 4);
  // residuals r = Xw - y = {0.5-2, 0.5+1, 1-1, 0.5-5} = {-1.5, 1.5, 0, -4.5}
  // grad = X^T r / 4 = {(-1.5 + 0 + -9)/4, (1.5 + 0 + 4.5)/4} = {-2.625, 1.5}
  EXPECT_NEAR(g->values[0], -2.625f, 1e-6);
  EXPECT_NEAR(g->values[1], 1.5f, 1e-6);
  double loss = 0.5 * (1.5 * 1.5 + 1.5 * 1.5 + 0 + 4.5 * 4.5) / 4;
  EXPECT_NEAR(g->loss, loss, 1e-5);
}

TEST(worker, local_steps_equal_repeated_proximal_gradient_steps) {
  test::test_system ts;
  test::actor_guard guard;
  auto cfg = full_batch_linear();
  auto w = guard.add(spawn_worker(ts.sys, cfg));
  caf::scoped_actor self{ts.sys};
  local_plan plan{3, 0.1f, regularizer::parse("l1:0.05")};
  auto r = ask<local_result>(self, w, local_atom_v, weights{-1, 0, buffer::from({0.0f, 0.0f})},
                             plan);
  ASSERT_TRUE(r) << describe(r.error());
  // The same three steps by hand, in double.
  double x[2] = {0, 0}, m[2] = {0, 0};
  steps_by_hand(*cfg.data, 3, 0.1, 0.05, 0.0, x, m);
  EXPECT_NEAR(r->values[0], x[0], 1e-5);
  EXPECT_NEAR(r->values[1], x[1], 1e-5);
  EXPECT_EQ(r->samples, 12);
}

// Local steps with momentum (local_plan::momentum, local_sgd's
// --local-momentum): heavy ball m <- beta m + g, x <- Prox(x - lr m), with
// m = 0 before the worker's first step and kept across requests: the second
// request starts from new weights but the first request's buffer.
TEST(worker, local_steps_with_momentum_are_heavy_ball_steps_with_the_buffer_kept) {
  test::test_system ts;
  test::actor_guard guard;
  auto cfg = full_batch_linear();
  auto w = guard.add(spawn_worker(ts.sys, cfg));
  caf::scoped_actor self{ts.sys};
  const double beta = 0.7;
  local_plan plan{3, 0.1f, regularizer::parse("l1:0.05"), {}, float(beta)};
  double m[2] = {0, 0}, x[2] = {0, 0};
  for (auto start : {std::vector<float>{0.0f, 0.0f}, std::vector<float>{0.5f, -0.5f}}) {
    auto r = ask<local_result>(self, w, local_atom_v, weights{-1, 0, buffer::from(start)}, plan);
    ASSERT_TRUE(r) << describe(r.error());
    x[0] = start[0], x[1] = start[1];
    steps_by_hand(*cfg.data, 3, 0.1, 0.05, beta, x, m);
    EXPECT_NEAR(r->values[0], x[0], 1e-5);
    EXPECT_NEAR(r->values[1], x[1], 1e-5);
  }
  // Without the buffer the second result would differ: the check can fail.
  auto fresh = guard.add(spawn_worker(ts.sys, cfg));
  auto r = ask<local_result>(self, fresh, local_atom_v,
                             weights{-1, 0, buffer::from({0.5f, -0.5f})}, plan);
  ASSERT_TRUE(r) << describe(r.error());
  EXPECT_GT(std::fabs(r->values[0] - x[0]) + std::fabs(r->values[1] - x[1]), 1e-3);
  // A momentum outside [0, 1) is refused, and the worker survives.
  for (float bad : {-0.1f, 1.0f, NAN}) {
    plan.momentum = bad;
    auto e = ask<local_result>(self, w, local_atom_v, weights{-1, 0, buffer::from({0.0f, 0.0f})},
                               plan);
    ASSERT_FALSE(e);
    EXPECT_EQ(static_cast<errc>(e.error().code()), errc::bad_request);
    EXPECT_NE(describe(e.error()).find("momentum"), std::string::npos) << describe(e.error());
  }
  plan.momentum = 0;
  EXPECT_TRUE(ask<local_result>(self, w, local_atom_v, weights{-1, 0, buffer::from({0.0f, 0.0f})},
                                plan));
}

TEST(worker, wrong_size_weights_are_an_error_and_the_worker_survives) {
  test::test_system ts;
  test::actor_guard guard;
  worker_config cfg;
  cfg.model = "linear";
  cfg.data = tiny_regression();
  auto w = guard.add(spawn_worker(ts.sys, cfg));
  caf::scoped_actor self{ts.sys};
  auto bad = ask<gradient>(self, w, compute_atom_v, weights{-1, 0, buffer::from({1.0f, 2.0f, 3.0f})});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().category(), errc_category);
  EXPECT_EQ(static_cast<errc>(bad.error().code()), errc::dimension_mismatch);
  EXPECT_NE(describe(bad.error()).find("3 weights"), std::string::npos) << describe(bad.error());
  auto good = ask<gradient>(self, w, compute_atom_v, weights{-1, 0, buffer::from({1.0f, 2.0f})});
  EXPECT_TRUE(good);
}

TEST(worker, nan_weights_give_a_non_finite_error) {
  test::test_system ts;
  test::actor_guard guard;
  worker_config cfg;
  cfg.model = "linear";
  cfg.data = tiny_regression();
  auto w = guard.add(spawn_worker(ts.sys, cfg));
  caf::scoped_actor self{ts.sys};
  auto g = ask<gradient>(self, w, compute_atom_v, weights{-1, 9, buffer::from({NAN, 0.0f})});
  ASSERT_FALSE(g);
  EXPECT_EQ(static_cast<errc>(g.error().code()), errc::non_finite);
  EXPECT_NE(describe(g.error()).find("step 9"), std::string::npos);
}

TEST(worker, evaluate_apply_and_fetch) {
  test::test_system ts;
  test::actor_guard guard;
  worker_config cfg;
  cfg.model = "linear";
  cfg.data = tiny_regression();
  auto w = guard.add(spawn_worker(ts.sys, cfg));
  caf::scoped_actor self{ts.sys};
  // The exact solution of this regression is w = (2, -1): zero loss.
  auto exact = buffer::from({2.0f, -1.0f});
  auto ev = ask<evaluation>(self, w, evaluate_atom_v, weights{-1, 0, exact});
  ASSERT_TRUE(ev);
  EXPECT_NEAR(ev->loss, 0.0, 1e-12);
  EXPECT_EQ(ev->samples, 4);
  ASSERT_TRUE(ask<ok_atom>(self, w, apply_atom_v, weights{-1, 11, exact}));
  auto back = ask<weights>(self, w, fetch_atom_v);
  ASSERT_TRUE(back);
  EXPECT_TRUE(back->values.same_storage(exact));
  EXPECT_EQ(back->step, 11);
}

TEST(worker, bad_configs_are_rejected_before_spawning) {
  test::test_system ts;
  worker_config cfg;
  cfg.data = tiny_regression();
  cfg.model = "no-such-model";
  EXPECT_THROW(spawn_worker(ts.sys, cfg), std::invalid_argument);
  cfg.model = "linear";
  cfg.batch = 0;
  EXPECT_THROW(spawn_worker(ts.sys, cfg), std::invalid_argument);
  cfg.batch = 2;
  cfg.shard = {0, 7};
  EXPECT_THROW(spawn_worker(ts.sys, cfg), std::invalid_argument);
  cfg.shard = {};
  cfg.data = std::make_shared<dataset>();
  EXPECT_THROW(spawn_worker(ts.sys, cfg), std::invalid_argument);
}
