// Decentralized SGD (DSGD): every node takes a local stochastic gradient step
// and averages with its in-neighbours under the round's mixing matrix W_k
// (topology.at(k); doubly stochastic, time-varying for onepeer-exp):
//   atc (adapt-then-combine, default):  x_i <- sum_j w_ij Prox(x_j - eta g_j(x_j))
//   cta (combine-then-adapt):           x_i <- Prox(sum_j w_ij x_j - eta g_i(x_i))
// With eta = 0 both are pure gossip, x <- W x: the mean is kept and the
// consensus distance mean_i ||x_i - x_bar||^2 shrinks by |lambda_2(W)|^2 per
// round asymptotically (lambda_2 the second-largest eigenvalue modulus).
// With a constant eta and heterogeneous data DSGD stops at a distance of
// order eta * heterogeneity / spectral gap from the optimum; gradient
// tracking (gradient_tracking.cpp) removes that bias.
//
// A step is one round. There is no global barrier: a peer waits only for its
// in-neighbours' messages of its own round, so neighbours may be a round or
// more apart (a message of a future round is kept until its round comes).
// Bytes: each message to each out-neighbour, wire_bytes of x (of x and y
// for gradient tracking); reports to the coordinator are not counted.
//
// This file also holds the machinery every gossip protocol shares (see
// gossip.hpp): the coordinator, the synchronous round peer, and the
// consensus distance.
//
// Options: topology (default ring), weights (uniform | metropolis),
//          mix_order (atc | cta), seed (random graphs).
#include "algorithms/gossip.hpp"

#include <algorithm>
#include <cmath>
#include <deque>
#include <limits>
#include <map>
#include <set>
#include <stdexcept>

namespace chorus {

// -- measures and options ---------------------------------------------------------

double consensus_distance(backend& be, const std::vector<buffer>& xs, buffer* mean) {
  if (xs.empty())
    return 0;
  std::vector<cview> views(xs.begin(), xs.end());
  mutable_buffer m(xs[0].size());
  be.mean(views, m.span());
  double sum = 0;
  for (auto& x : xs)
    sum += be.squared_distance(x, m.span());
  if (mean)
    *mean = std::move(m).freeze();
  return sum / static_cast<double>(xs.size());
}

topology read_topology(const run_plan& plan, int n) {
  auto option = [&plan](const std::string& key, const std::string& fallback) {
    auto i = plan.options.find(key);
    return i == plan.options.end() ? fallback : i->second;
  };
  auto rule = parse_weight_rule(option("weights", "uniform"));
  auto seed = static_cast<uint64_t>(plan.number("seed", 1));
  return make_topology(option("topology", "ring"), n, rule, seed);
}

std::vector<int32_t> all_neighbours(const topology& t, int i) {
  std::set<int32_t> out;
  for (const auto& w : t.phases) {
    for (int j : w.in_neighbours(i))
      out.insert(j);
    for (int j : w.out_neighbours(i))
      out.insert(j);
  }
  return {out.begin(), out.end()};
}

std::vector<buffer> initial_models(const run_context& ctx, std::vector<buffer> given) {
  const size_t n = ctx.workers.size();
  if (given.empty())
    return std::vector<buffer>(n, ctx.initial);
  if (given.size() != n)
    throw std::invalid_argument("gossip: " + std::to_string(given.size()) + " initial models for "
                                + std::to_string(n) + " workers");
  for (auto& x : given)
    if (x.size() != ctx.initial.size())
      throw std::invalid_argument("gossip: an initial model has " + std::to_string(x.size())
                                  + " values, w_0 has " + std::to_string(ctx.initial.size()));
  return given;
}

namespace {

// -- the coordinator ---------------------------------------------------------------
//
// It counts a round once every live peer has reported it (or, for
// asynchronous protocols, each local step as it is reported), and evaluates
// x_bar when the schedule says so. While an evaluation is out it counts no
// round, so every metrics row belongs to exactly the round it names; the
// peers go on meanwhile until their report windows fill (gossip.hpp), so the
// reports queued here are at most n * window buffer handles. Once the budget
// is spent it answers no report: the peers stop at their windows and leave
// the CPU to the final evaluations, then get their exits.

// A report of a round not yet counted, and the answer its peer waits for.
struct pending_report {
  peer_state state;
  caf::typed_response_promise<ok_atom> answer;
};

struct coordinator_state : protocol_state {
  static inline const char* name = "chorus.gossip_coordinator";
  coordinator_plan cp;
  std::vector<caf::actor> peers;
  std::vector<peer_state> latest;  // per peer: its last counted report
  std::map<int64_t, std::map<int32_t, pending_report>> by_round;  // rounds: not yet counted
  std::deque<peer_state> queue;  // steps: reports not yet counted (counted as they come)
  std::vector<caf::typed_response_promise<ok_atom>> parked;  // reports after the end, never answered
  int64_t next_round = 0;
  bool eval_in_flight = false;
  bool stopping = false;  // budget spent or stop asked: count nothing more
  double gap = 0;
  std::vector<std::vector<std::pair<int32_t, int32_t>>> edges;  // per phase: i -> j, i != j

  std::vector<buffer> live_models() const {
    std::vector<buffer> xs;
    for (size_t i = 0; i < latest.size(); ++i)
      if (alive[i])
        xs.push_back(latest[i].x);
    return xs;
  }

  int peer_index(const caf::actor_addr& addr) const {
    for (size_t i = 0; i < peers.size(); ++i)
      if (peers[i].address() == addr)
        return static_cast<int>(i);
    return -1;
  }

  // Gossip payload bytes of round r: each live peer's message to each of its
  // live out-neighbours. Reports to the coordinator and the peer <-> own
  // worker traffic (one node) are not gossip and are not counted.
  int64_t round_bytes(int64_t r) const {
    int64_t messages = 0;
    for (auto [i, j] : edges[static_cast<size_t>(r % static_cast<int64_t>(edges.size()))])
      messages += alive[static_cast<size_t>(i)] && alive[static_cast<size_t>(j)] ? 1 : 0;
    return messages * cp.message_bytes;
  }

  std::map<std::string, double> metrics(double consensus) const {
    const double live = static_cast<double>(std::max<size_t>(1, live_workers()));
    const double units = static_cast<double>(std::max<int64_t>(1, tracker.step()));
    std::map<std::string, double> m{
      {"consensus_distance", consensus},
      {"bytes_per_worker_per_round",
       static_cast<double>(tracker.bytes()) / (cp.rounds ? units * live : units)},
      {"spectral_gap", gap},
      {"workers_alive", static_cast<double>(live_workers())}};
    if (!cp.rounds) {
      // Local steps of the slowest and the fastest live peer: how unevenly
      // the asynchronous peers progress.
      int64_t lo = std::numeric_limits<int64_t>::max(), hi = 0;
      for (size_t i = 0; i < latest.size(); ++i)
        if (alive[i])
          lo = std::min(lo, latest[i].step), hi = std::max(hi, latest[i].step);
      m["peer_steps_min"] = static_cast<double>(live > 0 && hi >= lo ? lo : 0);
      m["peer_steps_max"] = static_cast<double>(hi);
    }
    return m;
  }
};

using coordinator_pointer = gossip_coordinator_actor::stateful_pointer<coordinator_state>;

void advance(coordinator_pointer self);

// Counts the next round (or report) if it is complete; false otherwise.
bool count_next(coordinator_pointer self) {
  auto& st = self->state;
  auto count = [&st](const peer_state& p) {
    auto& last = st.latest[static_cast<size_t>(p.sender)];
    st.tracker.add_work(p.samples - last.samples, p.loss, 1);
    last = p;
  };
  if (st.cp.rounds) {
    auto it = st.by_round.find(st.next_round);
    if (it == st.by_round.end())
      return false;
    for (size_t i = 0; i < st.alive.size(); ++i)
      if (st.alive[i] && it->second.count(static_cast<int32_t>(i)) == 0)
        return false;
    for (auto& [i, p] : it->second) {
      if (st.alive[static_cast<size_t>(i)])
        count(p.state);
      p.answer.deliver(ok_atom_v);
    }
    st.tracker.add_bytes(st.round_bytes(st.next_round));
    st.tracker.step_done();
    st.by_round.erase(it);
    ++st.next_round;
    return true;
  }
  while (!st.queue.empty()) {
    auto p = std::move(st.queue.front());
    st.queue.pop_front();
    if (!st.alive[static_cast<size_t>(p.sender)])
      continue;
    const int64_t steps = p.step - st.latest[static_cast<size_t>(p.sender)].step;
    st.tracker.add_bytes(steps * st.cp.message_bytes);
    for (int64_t k = 0; k < steps; ++k)
      st.tracker.step_done();
    count(p);
    return true;
  }
  return false;
}

// Scores each of `xs` on the evaluator and calls next(worst accuracy).
template <class Next>
void evaluate_each(coordinator_pointer self, const std::vector<buffer>& xs, Next next) {
  auto& st = self->state;
  auto pending = std::make_shared<size_t>(xs.size());
  auto worst = std::make_shared<double>(std::numeric_limits<double>::quiet_NaN());
  if (xs.empty()) {
    next(*worst);
    return;
  }
  for (auto& x : xs)
    self->request(st.ctx.evaluator, st.ctx.plan.timeout, evaluate_atom_v,
                  weights{-1, st.tracker.step(), x})
      .then(
        [pending, worst, next](evaluation& ev) mutable {
          if (!(ev.accuracy >= *worst))  // also replaces the initial NaN
            *worst = ev.accuracy;
          if (--*pending == 0)
            next(*worst);
        },
        [pending, worst, next](caf::error&) mutable {
          if (--*pending == 0)
            next(*worst);
        });
}

void end(coordinator_pointer self, const buffer& mean) {
  auto& st = self->state;
  finish_run(self, mean, st.tracker.budget_spent() ? "budget" : "stopped");
}

// The run's last act: a final evaluation of x_bar (and of every live x_i,
// for the worst worker's accuracy) if one is due, then the summary.
void wrap_up(coordinator_pointer self) {
  auto& st = self->state;
  if (!st.tracker.running())
    return;
  buffer mean;
  double consensus = consensus_distance(*st.be, st.live_models(), &mean);
  auto extra = st.metrics(consensus);
  for (auto& [k, v] : extra)
    st.tracker.summary_extra()[k] = v;
  if (!st.tracker.eval_due()) {
    end(self, mean);
    return;
  }
  st.eval_in_flight = true;
  evaluate_each(self, st.live_models(), [self, mean, extra](double worst) mutable {
    extra["worst_worker_acc"] = worst;
    self->state.tracker.summary_extra()["worst_worker_acc"] = worst;
    evaluate(self, mean, std::move(extra), [self, mean] { end(self, mean); });
  });
}

void advance(coordinator_pointer self) {
  auto& st = self->state;
  // Rounds wait while an evaluation is out (see above); asynchronous steps
  // do not: their reports are counted as they come, so the coordinator
  // holds one model per peer, and a row names the step its evaluation ended
  // at (as in async_sgd).
  while (st.tracker.running() && !(st.cp.rounds && st.eval_in_flight) && !st.stopping
         && count_next(self)) {
    if (st.tracker.budget_spent()) {
      st.stopping = true;
    } else if (!st.eval_in_flight && st.tracker.eval_due()) {
      buffer mean;
      double consensus = consensus_distance(*st.be, st.live_models(), &mean);
      auto extra = st.metrics(consensus);
      for (auto& [k, v] : extra)
        st.tracker.summary_extra()[k] = v;
      st.eval_in_flight = true;
      // The peers go on meanwhile (until their report windows fill).
      evaluate(
        self, mean, std::move(extra),
        [self] {
          self->state.eval_in_flight = false;
          advance(self);
        },
        /*pauses_training=*/false);
    }
  }
  if (st.stopping && !st.eval_in_flight)
    wrap_up(self);
}

// Peer (or worker) i is gone: the run goes on without it, unless its reason
// is a failure of the whole run (NaN, dimension mismatch).
void lose(coordinator_pointer self, size_t i, const caf::error& reason) {
  auto& st = self->state;
  if (is_run_failure(reason)) {
    fail_run(self, reason);
    return;
  }
  if (!drop_worker(self, i, describe(reason)))
    return;
  if (i < st.peers.size())  // its worker died first: the peer goes with it
    self->send_exit(st.peers[i], make_error(errc::worker_lost, "worker " + std::to_string(i) + " is gone"));
  if (st.live_workers() == 0)
    fail_run(self, make_error(errc::no_workers_left, "every peer is gone"));
  else
    advance(self);
}

gossip_coordinator_actor::behavior_type coordinator(coordinator_pointer self, run_context ctx,
                                                    coordinator_plan cp) {
  auto& st = self->state;
  st.init(std::move(ctx));
  st.cp = std::move(cp);
  st.gap = spectral_gap(*st.cp.topo);
  for (const auto& w : st.cp.topo->phases) {
    st.edges.emplace_back();
    for (int i = 0; i < w.n; ++i)
      for (int j = 0; j < w.n; ++j)
        if (i != j && w.at(j, i) > 0)
          st.edges.back().emplace_back(i, j);
  }
  for (size_t i = 0; i < st.cp.initial.size(); ++i)
    st.latest.push_back(peer_state{static_cast<int32_t>(i), 0, st.cp.initial[i], {}, 0, 0});
  self->set_down_handler([self](caf::down_msg& dm) {
    auto& st = self->state;
    int i = st.peer_index(dm.source);
    if (i < 0)
      i = st.index_of(dm.source);
    if (i >= 0 && st.tracker.running())
      lose(self, static_cast<size_t>(i), dm.reason);
  });
  return {
    [self](run_atom) -> caf::result<run_summary> {
      auto& st = self->state;
      if (st.tracker.running())
        return begin_run(self);
      auto result = begin_run(self);
      auto handle = caf::actor_cast<gossip_coordinator_actor>(self);
      for (size_t i = 0; i < st.ctx.workers.size(); ++i) {
        auto peer = st.cp.spawn_peer(self->home_system(), static_cast<int32_t>(i), handle);
        // Whenever this actor terminates, normally or not, its peers go too.
        self->attach_functor([peer] { caf::anon_send_exit(peer, caf::exit_reason::user_shutdown); });
        self->monitor(peer);
        self->monitor(st.ctx.workers[i]);
        st.peers.push_back(std::move(peer));
      }
      log_line(self, "gossip on topology " + st.cp.topo->name + " (n=" + std::to_string(st.peers.size())
                       + ", spectral gap " + std::to_string(st.gap) + ")");
      for (auto& peer : st.peers)
        caf::anon_send(peer, run_atom_v, st.peers);  // peers are typed per protocol
      return result;
    },
    [self](stop_atom) {
      self->state.stopping = true;
      advance(self);
    },
    [self](report_atom, peer_state& p) -> caf::result<ok_atom> {
      auto& st = self->state;
      if (!st.tracker.running() || p.sender < 0 || static_cast<size_t>(p.sender) >= st.alive.size()
          || !st.alive[static_cast<size_t>(p.sender)] || (st.cp.rounds && p.step < st.next_round))
        return ok_atom_v;
      if (!st.cp.rounds && !st.stopping) {
        st.queue.push_back(std::move(p));
        advance(self);
        return ok_atom_v;
      }
      if (st.stopping) {
        // The budget is spent: hold the peers (each stops at its window),
        // so the final evaluations get the CPU; the exits come after them.
        st.parked.push_back(self->make_response_promise<ok_atom>());
        return st.parked.back();
      }
      // Answered when the round is counted (flow control, see gossip.hpp).
      auto answer = self->make_response_promise<ok_atom>();
      auto round = p.step;
      auto sender = p.sender;
      st.by_round[round][sender] = pending_report{std::move(p), answer};
      advance(self);
      return answer;
    },
  };
}

// -- the synchronous round peer ------------------------------------------------------
//
// Round k at peer i: ask the worker for g_i at x_i; send rule.prepare's
// message to the out-neighbours of W_k; wait for the round-k messages of the
// in-neighbours of W_k; rule.mix; report; round k+1.
//
// A neighbour that terminates is dropped at once (the peer monitors it); one
// that sends nothing for twice plan.timeout is dropped too. Twice: a node
// whose worker hangs leaves after one timeout (and its neighbours learn it
// from its down message), so a second one keeps a chain of nodes that only
// wait for that node from dropping each other (a peer held by its report
// window waits at most one evaluation, itself bounded by plan.timeout, so it
// is never taken for dead either). A dropped neighbour's weight
// goes to the peer's self weight: rows of W stay stochastic, columns do not
// (the average drifts a little after a loss).

using round_peer_actor = caf::typed_actor<
  // Start: every peer's handle, by rank.
  caf::reacts_to<run_atom, std::vector<caf::actor>>,
  // A neighbour's message of some round.
  caf::reacts_to<gossip_atom, peer_state>,
  // Self: the wait for the neighbours may have lasted too long.
  caf::reacts_to<caf::tick_atom>>;

// Node i's row and column of one phase of W, read once (rows are n long).
struct phase_view {
  double self_weight = 1;        // w_ii
  std::vector<int32_t> in;       // j != i with w_ij > 0
  std::vector<double> in_weight; // w_ij, in the order of `in`
  std::vector<int32_t> out;      // j != i with w_ji > 0
};

std::vector<phase_view> views_of(const topology& t, int32_t i) {
  std::vector<phase_view> views;
  for (const auto& w : t.phases) {
    phase_view v;
    v.self_weight = w.at(i, i);
    for (int j : w.in_neighbours(i)) {
      v.in.push_back(j);
      v.in_weight.push_back(w.at(i, j));
    }
    for (int j : w.out_neighbours(i))
      v.out.push_back(j);
    views.push_back(std::move(v));
  }
  return views;
}

struct round_peer_state : peer_base {
  static inline const char* name = "chorus.gossip_peer";
  std::vector<phase_view> phases;
  std::vector<int32_t> neighbours;  // over all phases
  std::shared_ptr<const gossip_rule> rule;
  int64_t max_rounds = 0;  // <= 0: until the coordinator ends the run
  gossip_vars vars;
  std::vector<round_peer_actor> peers;
  std::vector<bool> dead;     // terminated: nothing is sent to it
  std::vector<bool> dropped;  // no longer waited for
  int64_t round = 0;
  bool waiting = false;  // own message sent, in-neighbours' awaited
  gradient g;
  peer_state own;
  std::map<int64_t, std::map<int32_t, peer_state>> inbox;  // by round, then sender
  std::chrono::steady_clock::time_point wait_since;
  bool timer_armed = false;  // at most one tick in flight

  std::chrono::milliseconds neighbour_timeout() const { return 2 * timeout; }
  const phase_view& at(int64_t r) const {
    return phases[static_cast<size_t>(r % static_cast<int64_t>(phases.size()))];
  }
};

using round_peer_pointer = round_peer_actor::stateful_pointer<round_peer_state>;

void begin_round(round_peer_pointer self);

void drop_neighbour(round_peer_pointer self, int32_t j, const std::string& why) {
  auto& st = self->state;
  if (st.dropped[static_cast<size_t>(j)])
    return;
  st.dropped[static_cast<size_t>(j)] = true;
  peer_log(self, "drops neighbour " + std::to_string(j) + " at round " + std::to_string(st.round)
                   + " (" + why + "); its weight goes to the self weight");
}

// Mixes once the round's messages from every in-neighbour still counted are in.
void try_mix(round_peer_pointer self) {
  auto& st = self->state;
  if (!st.waiting)
    return;
  const auto& w = st.at(st.round);
  auto& box = st.inbox[st.round];
  std::vector<const peer_state*> in{&st.own};
  std::vector<float> coeffs{0};
  double self_weight = w.self_weight;
  for (size_t k = 0; k < w.in.size(); ++k) {
    const int32_t j = w.in[k];
    if (st.dropped[static_cast<size_t>(j)]) {
      self_weight += w.in_weight[k];
      continue;
    }
    auto it = box.find(j);
    if (it == box.end())
      return;
    in.push_back(&it->second);
    coeffs.push_back(static_cast<float>(w.in_weight[k]));
  }
  coeffs[0] = static_cast<float>(self_weight);
  st.rule->mix(st.vars, *st.be, in, coeffs, st.g);
  if (!st.be->all_finite(st.vars.x)) {
    peer_leave(self, make_error(errc::non_finite, "peer " + std::to_string(st.rank) + ": model after round "
                                                    + std::to_string(st.round)
                                                    + " contains NaN or Inf (learning rate too large?)"));
    return;
  }
  st.waiting = false;
  st.inbox.erase(st.round);
  const int64_t done = st.round++;
  if (report(self, done, st.vars.x, st.g.loss, [self] { begin_round(self); }))
    begin_round(self);
}

void arm_timer(round_peer_pointer self, std::chrono::milliseconds after) {
  auto& st = self->state;
  if (st.timer_armed)
    return;
  st.timer_armed = true;
  self->delayed_send(self, after, caf::tick_atom_v);
}

void on_gradient(round_peer_pointer self, gradient& g) {
  auto& st = self->state;
  st.g = std::move(g);
  st.own = st.rule->prepare(st.vars, *st.be, st.g, st.round);
  st.own.sender = st.rank;
  st.own.step = st.round;
  st.own.loss = st.g.loss;
  st.own.samples = st.samples;
  for (int32_t j : st.at(st.round).out)
    if (!st.dead[static_cast<size_t>(j)])
      self->send(st.peers[static_cast<size_t>(j)], gossip_atom_v, st.own);
  st.waiting = true;
  st.wait_since = std::chrono::steady_clock::now();
  arm_timer(self, st.neighbour_timeout());
  try_mix(self);
}

void begin_round(round_peer_pointer self) {
  auto& st = self->state;
  if (st.max_rounds > 0 && st.round >= st.max_rounds)
    return;  // done; the coordinator ends the run
  ask_gradient(self, st.vars.x, st.round, [self](gradient& g) { on_gradient(self, g); });
}

void on_tick(round_peer_pointer self) {
  auto& st = self->state;
  st.timer_armed = false;
  if (!st.waiting)
    return;  // the next wait arms a new tick
  auto waited = std::chrono::steady_clock::now() - st.wait_since;
  if (waited < st.neighbour_timeout()) {
    arm_timer(self, std::chrono::duration_cast<std::chrono::milliseconds>(st.neighbour_timeout() - waited)
                      + std::chrono::milliseconds(1));
    return;
  }
  const auto& box = st.inbox[st.round];
  for (int32_t j : st.at(st.round).in)
    if (!st.dropped[static_cast<size_t>(j)] && box.count(j) == 0)
      drop_neighbour(self, j, "no message for " + std::to_string(st.neighbour_timeout().count()) + " ms");
  try_mix(self);
}

round_peer_actor::behavior_type round_peer(round_peer_pointer self, int32_t rank,
                                           std::shared_ptr<const run_context> ctx,
                                           gossip_coordinator_actor coordinator, int32_t window,
                                           buffer x0, std::shared_ptr<const topology> topo,
                                           std::shared_ptr<const gossip_rule> rule) {
  auto& st = self->state;
  st.init(rank, *ctx, std::move(coordinator), window);
  st.vars.x = std::move(x0);
  st.phases = views_of(*topo, rank);
  st.neighbours = all_neighbours(*topo, rank);
  st.rule = std::move(rule);
  st.max_rounds = ctx->plan.steps > 0 ? ctx->plan.steps : 0;
  // Sized now, not at the start message: a neighbour that started first may
  // send its round-0 message before this peer's start arrives.
  st.dead.assign(ctx->workers.size(), false);
  st.dropped.assign(ctx->workers.size(), false);
  self->set_down_handler([self](caf::down_msg& dm) {
    if (on_worker_down(self, dm))
      return;
    auto& st = self->state;
    for (size_t j = 0; j < st.peers.size(); ++j)
      if (st.peers[j].address() == dm.source && !st.dead[j]) {
        st.dead[j] = true;
        // user_shutdown: the coordinator is ending the run (this peer's exit
        // is on its way too); nothing worth a log line.
        if (dm.reason == caf::exit_reason::user_shutdown)
          st.dropped[j] = true;
        else
          drop_neighbour(self, static_cast<int32_t>(j), "terminated: " + describe(dm.reason));
        try_mix(self);
      }
  });
  return {
    [self](run_atom, std::vector<caf::actor>& all) {
      auto& st = self->state;
      for (auto& a : all)
        st.peers.push_back(caf::actor_cast<round_peer_actor>(a));
      self->monitor(st.worker);
      for (int32_t j : st.neighbours)
        self->monitor(st.peers[static_cast<size_t>(j)]);
      begin_round(self);
    },
    [self](gossip_atom, peer_state& m) {
      auto& st = self->state;
      if (m.sender < 0 || static_cast<size_t>(m.sender) >= st.dropped.size()
          || st.dropped[static_cast<size_t>(m.sender)] || m.step < st.round)
        return;  // late: from a neighbour this peer has given up on
      int64_t r = m.step;
      st.inbox[r][m.sender] = std::move(m);
      if (r == st.round)
        try_mix(self);
    },
    [self](caf::tick_atom) { on_tick(self); },
  };
}

// How many uncounted rounds a round peer may have. Peer i can finish round
// r only after each in-neighbour j sent its round-r message, so i runs
// ahead of j by at most the length of the path j -> i; with P phases a hop
// may wait up to P rounds for its phase. The window is that bound, the
// directed diameter of the union graph times P, plus slack: in steady state
// no peer waits for it.
int32_t round_window(const topology& t) {
  const int n = t.phases[0].n;
  std::vector<std::vector<int32_t>> out(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i)
    for (int32_t j : all_neighbours(t, i))
      for (const auto& w : t.phases)
        if (w.at(j, i) > 0) {  // j receives from i
          out[static_cast<size_t>(i)].push_back(j);
          break;
        }
  int diameter = 0;
  for (int s = 0; s < n; ++s) {
    std::vector<int> dist(static_cast<size_t>(n), -1);
    std::deque<int> todo{s};
    dist[static_cast<size_t>(s)] = 0;
    while (!todo.empty()) {
      int a = todo.front();
      todo.pop_front();
      diameter = std::max(diameter, dist[static_cast<size_t>(a)]);
      for (int32_t b : out[static_cast<size_t>(a)])
        if (dist[static_cast<size_t>(b)] < 0) {
          dist[static_cast<size_t>(b)] = dist[static_cast<size_t>(a)] + 1;
          todo.push_back(b);
        }
    }
  }
  return 4 + diameter * static_cast<int32_t>(t.phases.size());
}

// -- DSGD's rule -------------------------------------------------------------------

gossip_rule dsgd_rule(const run_plan& plan) {
  auto it = plan.options.find("mix_order");
  std::string order = it == plan.options.end() ? "atc" : it->second;
  if (order != "atc" && order != "cta")
    throw std::invalid_argument("option mix_order: '" + order
                                + "' is not a mixing order; valid: atc (adapt then combine), "
                                  "cta (combine then adapt)");
  const float lr = plan.lr;
  const regularizer reg = plan.reg;
  auto mix_x = [](const std::vector<const peer_state*>& in, std::vector<cview>& xs) {
    for (auto* p : in)
      xs.push_back(p->x);
  };
  gossip_rule rule;
  if (order == "atc") {
    // Send the half-stepped model; mixing is then one weighted sum.
    rule.prepare = [lr, reg](gossip_vars& v, backend& be, const gradient& g, int64_t) {
      auto half = mutable_buffer::copy_of(v.x);
      be.prox_step(reg, lr, g.values, half.span());
      return peer_state{-1, 0, std::move(half).freeze(), {}, 0, 0};
    };
    rule.mix = [mix_x](gossip_vars& v, backend& be, const std::vector<const peer_state*>& in,
                       const std::vector<float>& w, const gradient&) {
      std::vector<cview> xs;
      mix_x(in, xs);
      mutable_buffer next(v.x.size());
      be.weighted_sum(xs, w, next.span());
      v.x = std::move(next).freeze();
    };
  } else {
    // Send x_i itself; the gradient joins the weighted sum as one more term.
    rule.prepare = [](gossip_vars& v, backend&, const gradient&, int64_t) {
      return peer_state{-1, 0, v.x, {}, 0, 0};
    };
    rule.mix = [mix_x, lr, reg](gossip_vars& v, backend& be, const std::vector<const peer_state*>& in,
                                const std::vector<float>& w, const gradient& g) {
      std::vector<cview> xs;
      mix_x(in, xs);
      xs.push_back(g.values);
      auto coeffs = w;
      coeffs.push_back(-lr);
      mutable_buffer next(v.x.size());
      be.weighted_sum(xs, coeffs, next.span());
      be.prox(reg, lr, next.span());
      v.x = std::move(next).freeze();
    };
  }
  return rule;
}

} // namespace

protocol_actor spawn_gossip_coordinator(caf::actor_system& sys, run_context ctx,
                                        coordinator_plan plan) {
  if (ctx.workers.empty())
    throw std::invalid_argument("gossip: no workers");
  if (plan.initial.size() != ctx.workers.size() || !plan.spawn_peer || !plan.topo
      || plan.topo->phases.empty() || plan.topo->phases[0].n != static_cast<int>(ctx.workers.size()))
    throw std::invalid_argument("gossip: the coordinator needs a topology on n nodes, one initial "
                                "model per worker and a peer factory");
  return caf::actor_cast<protocol_actor>(sys.spawn(coordinator, std::move(ctx), std::move(plan)));
}

protocol_actor spawn_synchronous_gossip(caf::actor_system& sys, run_context ctx, gossip_rule rule,
                                        std::vector<buffer> initial) {
  if (ctx.workers.empty())
    throw std::invalid_argument("gossip: no workers");
  coordinator_plan cp;
  cp.rounds = true;
  cp.topo = std::make_shared<const topology>(read_topology(ctx.plan, static_cast<int>(ctx.workers.size())));
  cp.initial = initial_models(ctx, std::move(initial));
  cp.message_bytes = static_cast<int64_t>(cp.initial[0].wire_bytes()) * (rule.sends_y ? 2 : 1);
  cp.window = round_window(*cp.topo);
  auto shared_ctx = std::make_shared<const run_context>(ctx);
  auto topo = cp.topo;
  auto shared_rule = std::make_shared<const gossip_rule>(std::move(rule));
  cp.spawn_peer = [shared_ctx, topo, shared_rule, xs = cp.initial, window = cp.window](
                    caf::actor_system& sys, int32_t rank, const gossip_coordinator_actor& c) {
    return caf::actor_cast<caf::actor>(sys.spawn(round_peer, rank, shared_ctx, c, window,
                                                 xs[static_cast<size_t>(rank)], topo, shared_rule));
  };
  return spawn_gossip_coordinator(sys, std::move(ctx), std::move(cp));
}

protocol_actor spawn_gossip_sgd_from(caf::actor_system& sys, run_context ctx,
                                     std::vector<buffer> initial) {
  auto rule = dsgd_rule(ctx.plan);
  return spawn_synchronous_gossip(sys, std::move(ctx), std::move(rule), std::move(initial));
}

protocol_actor spawn_gossip_sgd(caf::actor_system& sys, run_context ctx) {
  return spawn_gossip_sgd_from(sys, std::move(ctx), {});
}

} // namespace chorus
