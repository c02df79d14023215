// Elastic averaging SGD (EASGD; Zhang, Choromanska and LeCun, NeurIPS
// 2015), the baseline of leader SGD: the workers are tied by elastic forces
// to a centre variable x~ instead of to the best worker.
//
// Between exchanges every worker takes plain local SGD steps on its own x_i:
//   x_i <- Prox_{r, eta}(x_i - eta g_i(x_i))
// Synchronous (default): one step = one round of one local step per live
// worker; after every tau-th round all live workers and the centre move
// toward each other, using the x_i from before the move:
//   x_i <- x_i - alpha (x_i - x~)             for each live i
//   x~  <- x~ + alpha sum_i (x_i - x~)
// (the paper's beta = n alpha; n alpha < 1 keeps the centre a convex
// combination). Asynchronous (option async = 1): one step = one applied
// update; each worker, after every tau of its own local steps, exchanges
// with the centre on its own:
//   x_i <- x_i - alpha (x_i - x~),   x~ <- x~ + alpha (x_i_old - x~)
// Each exchange sends x_i to the centre and x~ back (two models of bytes).
//
// The protocol's model is the centre x~: it is what is evaluated and
// returned as final_weights. Metrics: center_distance (mean over live
// workers of ||x_i - x~||^2), exchanges (worker-centre exchanges so far).
#include <stdexcept>

#include "algorithms/leader.hpp"
#include "algorithms/registry.hpp"
#include "engines/options.hpp"
#include "engines/replicas.hpp"

namespace chorus {

// -- the elastic moves (leader.hpp) ---------------------------------------------------

void elastic_move(backend& be, float alpha, cview x, cview target, view out) {
  be.weighted_sum({x, target}, {1.0f - alpha, alpha}, out);
}

void elastic_center(backend& be, float alpha, cview centre, const std::vector<cview>& xs,
                    view out) {
  std::vector<cview> all{centre};
  std::vector<float> coeffs{1.0f - alpha * static_cast<float>(xs.size())};
  for (auto& x : xs) {
    all.push_back(x);
    coeffs.push_back(alpha);
  }
  be.weighted_sum(all, coeffs, out);
}

// -- the rule ---------------------------------------------------------------------------

namespace {

class easgd_rule final : public replica_rule {
public:
  easgd_rule(float alpha, int64_t tau) : alpha_(alpha), tau_(tau) {}

  void start(replica_state& st) override {
    centre_ = st.ctx.initial;
    const auto n = static_cast<float>(st.x.size());
    st.log("easgd: " + std::to_string(st.x.size()) + " workers, alpha " + std::to_string(alpha_)
           + ", elastic exchange every " + std::to_string(tau_) + " local steps ("
           + (st.async ? "asynchronous" : "synchronous") + ")");
    if (!st.async && n * alpha_ >= 1.0f)
      st.log("easgd: warning: n * alpha = " + std::to_string(n * alpha_)
             + " >= 1, the centre overshoots the workers' mean (use alpha < 1/n)");
  }

  void local_step(backend& be, float eta, cview x, cview g, const std::vector<buffer>&,
                  view out) const override {
    // x_i - eta g_i (the engine applies the prox).
    be.weighted_sum({x, g}, {1.0f, -eta}, out);
  }

  std::vector<size_t> reads(const replica_state& st, int i) const override {
    if (st.async)
      return st.updates[static_cast<size_t>(i)] % tau_ == 0 ? std::vector<size_t>{static_cast<size_t>(i)}
                                                           : std::vector<size_t>{};
    return st.tracker.step() % tau_ == 0 ? st.live() : std::vector<size_t>{};
  }

  void communicate(replica_state& st, int i) override {
    if (st.async) {
      if (st.updates[static_cast<size_t>(i)] % tau_ == 0)
        exchange_one(st, static_cast<size_t>(i));
    } else if (st.tracker.step() % tau_ == 0) {
      exchange_all(st);
    }
  }

  buffer output(const replica_state&) const override { return centre_; }

  std::map<std::string, double> metrics(const replica_state& st) const override {
    return {{"center_distance", st.mean_distance_to(centre_)},
            {"exchanges", static_cast<double>(exchanges_)}};
  }

private:
  void exchange_one(replica_state& st, size_t i) {
    const buffer old = st.x[i];
    st.x[i] = moved(st, old, centre_);
    centre_ = moved(st, centre_, old);
    st.tracker.add_bytes(2 * static_cast<int64_t>(old.wire_bytes()));
    ++exchanges_;
  }

  void exchange_all(replica_state& st) {
    std::vector<cview> xs;
    for (size_t i = 0; i < st.x.size(); ++i)
      if (st.alive[i])
        xs.push_back(st.x[i]);
    mutable_buffer next(centre_.size());
    elastic_center(*st.be, alpha_, centre_, xs, next.span());
    for (size_t i = 0; i < st.x.size(); ++i)
      if (st.alive[i])
        st.x[i] = moved(st, st.x[i], centre_);  // toward the centre before its move
    centre_ = std::move(next).freeze();
    st.tracker.add_bytes(2 * static_cast<int64_t>(xs.size() * centre_.wire_bytes()));
    exchanges_ += static_cast<int64_t>(xs.size());
  }

  // x - alpha (x - target), as a new buffer.
  buffer moved(replica_state& st, cview x, cview target) const {
    mutable_buffer out(x.size);
    elastic_move(*st.be, alpha_, x, target, out.span());
    return std::move(out).freeze();
  }

  const float alpha_;
  const int64_t tau_;
  buffer centre_;  // x~
  int64_t exchanges_ = 0;
};

} // namespace

namespace {

// The rule of a completed plan, and whether it runs asynchronously; throws
// std::invalid_argument for a bad option value.
std::pair<std::shared_ptr<easgd_rule>, bool> easgd_of(const run_plan& plan) {
  const float alpha = option_weight(plan, "alpha");
  const int64_t tau = option_count(plan, "tau", 1);
  const bool async = option_flag(plan, "async");
  if (!(alpha > 0 && alpha < 1))
    throw std::invalid_argument("option alpha must be in (0, 1) (got " + std::to_string(alpha) + ")");
  return {std::make_shared<easgd_rule>(alpha, tau), async};
}

} // namespace

protocol_actor spawn_easgd(caf::actor_system& sys, run_context ctx) {
  complete_options(find_algorithm("easgd"), ctx.plan);
  auto [rule, async] = easgd_of(ctx.plan);
  return spawn_replica_protocol(sys, std::move(ctx), std::move(rule), async, 1);
}

caf::actor spawn_easgd_agent(caf::actor_system& sys, run_context ctx, int32_t rank,
                             const caf::actor& engine) {
  auto rule = easgd_of(ctx.plan).first;
  return spawn_replica_agent(sys, std::move(ctx), std::move(rule), rank, engine);
}

} // namespace chorus
