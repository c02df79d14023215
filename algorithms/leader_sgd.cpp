// Leader SGD (LSGD; Teng et al., NeurIPS 2019, "Leader Stochastic Gradient
// Descent for Distributed Training of Deep Learning Models").
//
// Every worker i trains its own x_i and is pulled toward the leader, the
// worker whose recent training loss is lowest:
//   x_i <- Prox_{r, eta}(x_i - eta (g_i(x_i) + lambda (x_i - x_leader)))
// x_leader is a snapshot of the leader's x taken at the election; sharing
// that buffer handle with everyone is the broadcast (counted as the bytes
// of n - 1 copies). Unlike EASGD's centre, the pull point is a real model
// reached by SGD, and the pull is toward the best of them.
//
// Multi-leader (option groups = G > 1): workers form G groups of contiguous
// ranks (group_of); each group elects a local leader, and the global leader
// is the best of all (necessarily one of the local leaders). Each worker is
// pulled toward both:
//   x_i <- Prox(x_i - eta (g_i + lambda (x_i - x_local_leader)
//                               + lambda_global (x_i - x_global_leader)))
// Each election broadcasts the local leader within its group (group size - 1
// copies) and the global leader to everyone (n - 1 copies).
//
// Synchronous (default): one step = one round in which every live worker
// takes one step; every tau rounds the leaders are re-elected by each
// worker's mean mini-batch loss over its last tau steps.
// Asynchronous (option async = 1): no barrier; each worker loops request
// gradient -> update with the CURRENT leaders -> request again; one step =
// one applied update, and the leaders are re-elected every tau * n updates
// (n = live workers) by each worker's most recent mini-batch loss.
//
// A leader that dies is replaced at once by an election among the
// survivors. The protocol's model is the global leader's current x: it is
// what is evaluated and returned as final_weights. Metrics: leader (rank of
// the global leader), leader_changes, leader_distance (mean over live
// workers of ||x_i - x_leader_now||^2); every change of the global leader is
// logged ("step 120: leader 3 -> 1").
#include <cmath>
#include <limits>
#include <stdexcept>

#include "algorithms/leader.hpp"
#include "algorithms/registry.hpp"
#include "engines/options.hpp"
#include "engines/replicas.hpp"
#include "gpu/assert.hpp"

namespace chorus {

// -- the election and the pull (leader.hpp) -----------------------------------------

int select_leader(const std::vector<double>& recent_losses, const std::vector<bool>& alive) {
  CHORUS_ASSERT(recent_losses.size() == alive.size(), "select_leader: one loss per worker");
  auto key = [&](size_t i) {
    double l = recent_losses[i];
    return std::isnan(l) ? std::numeric_limits<double>::infinity() : l;
  };
  int best = -1;
  for (size_t i = 0; i < alive.size(); ++i)
    if (alive[i] && (best < 0 || key(i) < key(static_cast<size_t>(best))))
      best = static_cast<int>(i);
  return best;
}

int group_of(int rank, int workers, int groups) {
  CHORUS_ASSERT(workers >= 1 && groups >= 1 && rank >= 0 && rank < workers,
                "group_of: needs 0 <= rank < workers and groups >= 1");
  return static_cast<int>(static_cast<int64_t>(rank) * groups / workers);
}

std::vector<int> select_group_leaders(const std::vector<double>& recent_losses,
                                      const std::vector<bool>& alive, int groups) {
  const int n = static_cast<int>(alive.size());
  std::vector<int> leaders;
  for (int g = 0; g < groups; ++g) {
    std::vector<bool> member(alive.size(), false);
    for (int i = 0; i < n; ++i)
      member[static_cast<size_t>(i)] = alive[static_cast<size_t>(i)] && group_of(i, n, groups) == g;
    leaders.push_back(select_leader(recent_losses, member));
  }
  return leaders;
}

void pulled_sgd_step(backend& be, float eta, cview g, cview x,
                     const std::vector<std::pair<float, cview>>& pulls, view out) {
  // x - eta g - eta sum_k lambda_k (x - y_k)
  //   = (1 - eta sum_k lambda_k) x - eta g + sum_k eta lambda_k y_k:
  // one weighted sum, one pass over memory.
  std::vector<cview> xs{x, g};
  std::vector<float> coeffs{1.0f, -eta};
  for (auto& [lambda, y] : pulls) {
    if (lambda == 0)
      continue;
    coeffs[0] -= eta * lambda;
    xs.push_back(y);
    coeffs.push_back(eta * lambda);
  }
  be.weighted_sum(xs, coeffs, out);
}

void multi_leader_step(backend& be, float eta, float lambda_local, float lambda_global, cview g,
                       cview x_local_leader, cview x_global_leader, cview x, view out) {
  pulled_sgd_step(be, eta, g, x, {{lambda_local, x_local_leader}, {lambda_global, x_global_leader}},
                  out);
}

// -- the rule ---------------------------------------------------------------------------

namespace {

class leader_rule final : public replica_rule {
public:
  leader_rule(float lambda, float lambda_global, int64_t tau, int groups)
    : lambda_(lambda), lambda_global_(lambda_global), tau_(tau), groups_(groups) {}

  void start(replica_state& st) override {
    // Every x_i is w_0, so any worker is the leader; the tie rule says rank 0.
    const int n = static_cast<int>(st.x.size());
    leader_ = 0;
    x_leader_ = st.ctx.initial;
    group_leaders_.clear();
    for (int g = 0; g < groups_; ++g) {
      int first = 0;
      while (group_of(first, n, groups_) != g)
        ++first;
      group_leaders_.push_back(first);
    }
    x_group_leader_.assign(static_cast<size_t>(groups_), st.ctx.initial);
    st.log("leader_sgd: " + std::to_string(n) + " workers in " + std::to_string(groups_)
           + " group(s), lambda " + std::to_string(lambda_)
           + (groups_ > 1 ? ", lambda_global " + std::to_string(lambda_global_) : "")
           + ", leaders elected every " + std::to_string(tau_)
           + (st.async ? " * n updates (asynchronous)" : " rounds (synchronous)"));
  }

  std::vector<buffer> pulls(const replica_state& st, size_t i) const override {
    if (groups_ == 1)
      return {x_leader_};
    const int n = static_cast<int>(st.x.size());
    return {x_group_leader_[static_cast<size_t>(group_of(static_cast<int>(i), n, groups_))], x_leader_};
  }

  void local_step(backend& be, float eta, cview x, cview g, const std::vector<buffer>& pulls,
                  view out) const override {
    CHORUS_ASSERT(pulls.size() == static_cast<size_t>(groups_ == 1 ? 1 : 2),
                  "leader_sgd: a local step needs the leaders' models");
    if (groups_ == 1)
      pulled_sgd_step(be, eta, g, x, {{lambda_, pulls[0]}}, out);
    else
      multi_leader_step(be, eta, lambda_, lambda_global_, g, pulls[0], pulls[1], x, out);
  }

  std::vector<size_t> reads(const replica_state& st, int) const override {
    const bool elects = st.async
                          ? since_election_ + 1 >= tau_ * static_cast<int64_t>(st.live_workers())
                          : st.tracker.step() % tau_ == 0;
    return elects ? elected(st) : std::vector<size_t>{};
  }

  void communicate(replica_state& st, int) override {
    if (!st.async) {
      if (st.tracker.step() % tau_ == 0)
        elect(st);
      return;
    }
    if (++since_election_ >= tau_ * static_cast<int64_t>(st.live_workers()))
      elect(st);
  }

  void lost(replica_state& st, size_t i) override {
    bool was_leader = static_cast<int>(i) == leader_;
    for (int l : group_leaders_)
      was_leader = was_leader || static_cast<int>(i) == l;
    if (was_leader)
      elect(st);
  }

  buffer output(const replica_state& st) const override {
    return st.x[static_cast<size_t>(leader_)];
  }

  std::map<std::string, double> metrics(const replica_state& st) const override {
    return {{"leader", static_cast<double>(leader_)},
            {"leader_changes", static_cast<double>(changes_)},
            {"leader_distance", st.mean_distance_to(output(st))}};
  }

private:
  // Who an election now would pick (every group's leader and the global
  // one): the models it reads.
  std::vector<size_t> elected(const replica_state& st) const {
    const auto losses = st.recent_losses();
    std::vector<size_t> out;
    if (groups_ > 1)
      for (int l : select_group_leaders(losses, st.alive, groups_))
        if (l >= 0)
          out.push_back(static_cast<size_t>(l));
    int best = select_leader(losses, st.alive);
    if (best >= 0)
      out.push_back(static_cast<size_t>(best));
    return out;
  }

  void elect(replica_state& st) {
    since_election_ = 0;
    const auto losses = st.recent_losses();
    const auto live = static_cast<int64_t>(st.live_workers());
    const auto bytes = static_cast<int64_t>(st.ctx.initial.wire_bytes());
    if (groups_ > 1) {
      const int n = static_cast<int>(st.x.size());
      auto leaders = select_group_leaders(losses, st.alive, groups_);
      for (int g = 0; g < groups_; ++g) {
        int l = leaders[static_cast<size_t>(g)];
        if (l < 0)
          continue;  // a group with no live member pulls nobody
        group_leaders_[static_cast<size_t>(g)] = l;
        x_group_leader_[static_cast<size_t>(g)] = st.x[static_cast<size_t>(l)];
        int64_t members = 0;
        for (int i = 0; i < n; ++i)
          members += st.alive[static_cast<size_t>(i)] && group_of(i, n, groups_) == g ? 1 : 0;
        st.tracker.add_bytes((members - 1) * bytes);
      }
    }
    const int best = select_leader(losses, st.alive);
    if (best < 0)
      return;
    x_leader_ = st.x[static_cast<size_t>(best)];
    st.tracker.add_bytes((live - 1) * bytes);
    if (best != leader_) {
      st.log("step " + std::to_string(st.tracker.step()) + ": leader " + std::to_string(leader_)
             + " -> " + std::to_string(best) + " (recent loss "
             + std::to_string(losses[static_cast<size_t>(best)]) + ")");
      leader_ = best;
      ++changes_;
    }
  }

  const float lambda_;
  const float lambda_global_;
  const int64_t tau_;
  const int groups_;
  int leader_ = 0;                    // rank of the global leader
  buffer x_leader_;                   // its x at the last election
  std::vector<int> group_leaders_;    // rank of each group's leader
  std::vector<buffer> x_group_leader_;
  int64_t changes_ = 0;
  int64_t since_election_ = 0;        // asynchronous: updates since the last election
};

} // namespace

namespace {

// The rule of a completed plan for `workers` workers, and whether it runs
// asynchronously; throws std::invalid_argument for a bad option value.
std::pair<std::shared_ptr<leader_rule>, bool> leader_of(const run_plan& plan, size_t workers) {
  const float lambda = option_weight(plan, "lambda");
  const float lambda_global = option_weight(plan, "lambda_global");
  const int64_t tau = option_count(plan, "tau", 1);
  const int64_t groups = option_count(plan, "groups", 1);
  const bool async = option_flag(plan, "async");
  if (groups > static_cast<int64_t>(workers))
    throw std::invalid_argument("option groups (" + std::to_string(groups)
                                + ") must not exceed the number of workers ("
                                + std::to_string(workers) + ")");
  return {std::make_shared<leader_rule>(lambda, lambda_global, tau, static_cast<int>(groups)), async};
}

} // namespace

protocol_actor spawn_leader_sgd(caf::actor_system& sys, run_context ctx) {
  complete_options(find_algorithm("leader_sgd"), ctx.plan);
  auto [rule, async] = leader_of(ctx.plan, ctx.workers.size());
  // The election's loss: the mean over the last tau steps (synchronous), or
  // the most recent mini-batch (asynchronous).
  const size_t window = async ? 1 : static_cast<size_t>(option_count(ctx.plan, "tau", 1));
  return spawn_replica_protocol(sys, std::move(ctx), std::move(rule), async, window);
}

caf::actor spawn_leader_sgd_agent(caf::actor_system& sys, run_context ctx, int32_t rank,
                                  const caf::actor& engine) {
  auto rule = leader_of(ctx.plan, ctx.workers.size()).first;
  return spawn_replica_agent(sys, std::move(ctx), std::move(rule), rank, engine);
}

} // namespace chorus
