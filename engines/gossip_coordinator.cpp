// The gossip engine's coordinator (see engines/gossip.hpp for its part in a
// run), and the measures and options every gossip run shares: the consensus
// distance, the topology read from the plan, the neighbour sets and the
// initial models.
#include "engines/gossip_peer.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <deque>
#include <limits>
#include <map>
#include <set>
#include <stdexcept>

namespace chorus {

// -- measures and options ---------------------------------------------------------

namespace {

// Whether every vector of xs holds the same floats as xs[0], bit for bit
// (host memory only; device vectors are never taken as equal here).
bool all_identical(const std::vector<buffer>& xs) {
  for (auto& x : xs)
    if (x.kind() != memory_kind::host || x.size() != xs[0].size()
        || (x.data() != xs[0].data()
            && std::memcmp(x.data(), xs[0].data(), x.size() * sizeof(float)) != 0))
      return false;
  return true;
}

} // namespace

double consensus_distance(backend& be, const std::vector<buffer>& xs, buffer* mean) {
  if (xs.empty())
    return 0;
  // Replicas in exact consensus (allreduce_sgd; any gossip after exact
  // averaging): x_bar is that model itself. The mean of k equal floats is
  // not always the float (3a / 3 rounds), and the output must be the model
  // the replicas hold.
  if (all_identical(xs)) {
    if (mean)
      *mean = xs[0];
    return 0;
  }
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
  auto rule = parse_weight_rule(plan.text("weights"));
  auto seed = static_cast<uint64_t>(plan.number("seed"));
  return make_topology(plan.text("topology"), n, rule, seed);
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

std::vector<bool> byzantine_peers(const run_context& ctx) {
  std::vector<bool> out(ctx.workers.size(), false);
  if (ctx.byzantine.empty())
    return out;
  auto plan = parse_byzantine(ctx.byzantine, static_cast<int32_t>(ctx.workers.size()));
  if (plan.atk.omniscient)
    throw std::invalid_argument(
      "--byzantine " + ctx.byzantine + ": " + plan.atk.spec
      + " forges from the honest vectors of a round, which no gossip peer sees; a Byzantine gossip "
        "peer forges the models it sends from its own (signflip, scale:K, gaussian:S, zero, nan, "
        "inf) or trains on flipped labels (labelflip)");
  for (auto r : plan.ranks)
    out[static_cast<size_t>(r)] = true;
  return out;
}

size_t fewest_mix_inputs(const topology& t) {
  size_t fewest = std::numeric_limits<size_t>::max();
  for (const auto& w : t.phases)
    for (int i = 0; i < w.n; ++i)
      fewest = std::min(fewest, 1 + w.in_neighbours(i).size());
  return fewest == std::numeric_limits<size_t>::max() ? 1 : fewest;
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
// peers go on meanwhile until their report windows fill (engines/gossip.hpp),
// so the reports queued here are at most n * window buffer handles. Once the budget
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
  // Per peer: latest[i].x is the model of latest[i].step. False after a
  // report without a model (a peer on a node): fetch it before using it.
  std::vector<bool> fresh;
  bool fetching = false;  // models are being fetched
  bool wrapping = false;  // wrap_up has begun
  std::map<int64_t, std::map<int32_t, pending_report>> by_round;  // rounds: not yet counted
  std::deque<peer_state> queue;  // steps: reports not yet counted (counted as they come)
  std::vector<caf::typed_response_promise<ok_atom>> parked;  // reports after the end, never answered
  int64_t next_round = 0;
  bool eval_in_flight = false;
  bool stopping = false;  // budget spent or stop asked: count nothing more
  double gap = 0;
  std::vector<std::vector<std::pair<int32_t, int32_t>>> edges;  // per phase: i -> j, i != j
  int components = 1;  // of the live peers' graph, as last counted (see live_components)

  // The connected components of the graph the live peers still form: the
  // union over phases of the edges between two live peers, direction
  // ignored (a peer that only sends to another still pulls it along). One
  // component: gossip still draws every live model to one average. More:
  // lost peers cut the graph, and each part goes on as a run of its own
  // whose models never meet again. Sorted lists of ranks, by smallest rank.
  std::vector<std::vector<int32_t>> live_components() const {
    std::vector<int32_t> root(alive.size());
    for (size_t i = 0; i < root.size(); ++i)
      root[i] = static_cast<int32_t>(i);
    auto find = [&root](int32_t i) {
      while (root[static_cast<size_t>(i)] != i)
        i = root[static_cast<size_t>(i)] = root[static_cast<size_t>(root[static_cast<size_t>(i)])];
      return i;
    };
    for (const auto& phase : edges)
      for (auto [i, j] : phase)
        if (alive[static_cast<size_t>(i)] && alive[static_cast<size_t>(j)]) {
          auto a = find(i), b = find(j);
          root[static_cast<size_t>(std::max(a, b))] = std::min(a, b);
        }
    std::map<int32_t, std::vector<int32_t>> parts;
    for (size_t i = 0; i < alive.size(); ++i)
      if (alive[i])
        parts[find(static_cast<int32_t>(i))].push_back(static_cast<int32_t>(i));
    std::vector<std::vector<int32_t>> out;
    for (auto& [r, members] : parts)
      out.push_back(std::move(members));
    return out;
  }

  std::vector<bool> byzantine;  // per peer: a Byzantine one (left out of x_bar)

  // The models x_bar, the consensus distance and the worst worker are
  // taken over: every live honest peer's (every live peer's when only
  // Byzantine ones are left).
  std::vector<buffer> live_models() const {
    std::vector<buffer> xs;
    for (bool honest_only : {true, false}) {
      for (size_t i = 0; i < latest.size(); ++i)
        if (alive[i] && !(honest_only && i < byzantine.size() && byzantine[i]))
          xs.push_back(latest[i].x);
      if (!xs.empty())
        break;
    }
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
      {"workers_alive", static_cast<double>(live_workers())},
      {"components", static_cast<double>(components)}};
    // Robust mixing: what each peer set aside or clipped of its
    // neighbours' models so far (only when some peer did).
    int64_t rejected = 0, clipped = 0;
    for (auto& p : latest)
      rejected += p.rejected, clipped += p.clipped;
    if (rejected > 0 || clipped > 0) {
      m["rejected_total"] = static_cast<double>(rejected);
      m["clipped_total"] = static_cast<double>(clipped);
      for (size_t i = 0; i < latest.size(); ++i) {
        if (latest[i].rejected > 0)
          m["rejected_p" + std::to_string(i)] = static_cast<double>(latest[i].rejected);
        if (latest[i].clipped > 0)
          m["clipped_p" + std::to_string(i)] = static_cast<double>(latest[i].clipped);
      }
    }
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
void finish(coordinator_pointer self);

// Counts the next round (or report) if it is complete; false otherwise.
bool count_next(coordinator_pointer self) {
  auto& st = self->state;
  auto count = [&st](const peer_state& p) {
    auto& last = st.latest[static_cast<size_t>(p.sender)];
    st.tracker.add_work(p.samples - last.samples, p.loss, 1);
    // A report without a model keeps the last one known, marked stale.
    auto known = last.x;
    last = p;
    st.fresh[static_cast<size_t>(p.sender)] = !p.x.empty();
    if (p.x.empty())
      last.x = known;
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

// Calls next() once latest[i].x is the model of latest[i].step for every live
// peer, fetching the stale ones (peers on nodes report without models). A
// peer that does not answer in time keeps its last known model (the peer
// itself will be lost through its monitor if it is gone).
template <class Next>
void with_models(coordinator_pointer self, Next next) {
  auto& st = self->state;
  std::vector<size_t> stale;
  for (size_t i = 0; i < st.latest.size(); ++i)
    if (st.alive[i] && !st.fresh[i])
      stale.push_back(i);
  if (stale.empty()) {
    next();
    return;
  }
  st.fetching = true;
  auto pending = std::make_shared<size_t>(stale.size());
  auto done = [self, pending, next]() mutable {
    if (--*pending == 0) {
      self->state.fetching = false;
      next();
    }
  };
  for (size_t i : stale)
    self
      ->request(st.peers[i], st.ctx.plan.timeout, fetch_atom_v, st.latest[i].step)
      .then(
        [self, i, done](peer_state& p) mutable {
          auto& st = self->state;
          if (!p.x.empty()) {
            st.latest[i].x = std::move(p.x);
            st.fresh[i] = true;
          }
          done();
        },
        [done](caf::error&) mutable { done(); });
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
  if (!st.tracker.running() || st.wrapping)
    return;
  st.wrapping = true;
  with_models(self, [self] {
    auto& st = self->state;
    if (st.tracker.running())
      finish(self);
  });
}

// wrap_up's second half, with every live model at hand.
void finish(coordinator_pointer self) {
  auto& st = self->state;
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
      st.eval_in_flight = true;
      with_models(self, [self] {
        auto& st = self->state;
        if (!st.tracker.running())
          return;
        buffer mean;
        double consensus = consensus_distance(*st.be, st.live_models(), &mean);
        auto extra = st.metrics(consensus);
        for (auto& [k, v] : extra)
          st.tracker.summary_extra()[k] = v;
        // The peers go on meanwhile (until their report windows fill).
        evaluate(
          self, mean, std::move(extra),
          [self] {
            self->state.eval_in_flight = false;
            advance(self);
          },
          /*pauses_training=*/false);
      });
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
  // A run whose graph fell apart goes on, but it must say so: its average
  // model now mixes parts that train apart (far worse than one graph).
  auto parts = st.live_components();
  int before = st.components;
  st.components = static_cast<int>(parts.size());
  if (st.components > 1 && st.components > before) {
    std::string list;
    for (auto& part : parts) {
      list += list.empty() ? "{" : " {";
      for (size_t k = 0; k < part.size(); ++k)
        list += (k ? "," : "") + std::to_string(part[k]);
      list += "}";
    }
    log_line(self, "warning: with worker " + std::to_string(i) + " lost, the gossip graph "
                     + st.cp.topo->name + " is split into " + std::to_string(st.components)
                     + " components " + list + " that no longer exchange models");
  }
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
  st.byzantine = byzantine_peers(st.ctx);
  for (const auto& w : st.cp.topo->phases) {
    st.edges.emplace_back();
    for (int i = 0; i < w.n; ++i)
      for (int j = 0; j < w.n; ++j)
        if (i != j && w.at(j, i) > 0)
          st.edges.back().emplace_back(i, j);
  }
  for (size_t i = 0; i < st.cp.initial.size(); ++i)
    st.latest.push_back(peer_state{static_cast<int32_t>(i), 0, st.cp.initial[i], {}, 0, 0});
  st.fresh.assign(st.latest.size(), true);
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
        // Beside its worker, in the worker's process when that is another.
        auto peer = st.ctx.spawn_beside
                      ? st.ctx.spawn_beside(static_cast<int32_t>(i), caf::actor_cast<caf::actor>(handle))
                      : st.cp.spawn_peer(self->home_system(), static_cast<int32_t>(i), handle);
        if (!peer) {
          fail_run(self, make_error(errc::worker_lost, "peer " + std::to_string(i)
                                                         + " could not be spawned beside its worker"));
          return result;
        }
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
      // Answered when the round is counted (flow control, see engines/gossip.hpp).
      auto answer = self->make_response_promise<ok_atom>();
      auto round = p.step;
      auto sender = p.sender;
      st.by_round[round][sender] = pending_report{std::move(p), answer};
      advance(self);
      return answer;
    },
  };
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

} // namespace chorus
