// The gossip engine's synchronous round peer (see engines/gossip.hpp), and
// spawn_synchronous_gossip, which runs a gossip_rule on it.
//
// Round k at peer i: ask the worker for g_i at x_i; send rule.prepare's
// message to the out-neighbours of W_k; wait for the round-k messages of the
// in-neighbours of W_k; rule.mix; report; round k+1. A step of the run is
// one round. There is no global barrier: a peer waits only for its
// in-neighbours' messages of its own round, so neighbours may be a round or
// more apart (a message of a future round is kept until its round comes).
// Bytes: each message to each out-neighbour, wire_bytes of x (of x and y
// when the rule sends y; rule.message_bytes when the rule encodes its
// messages); reports to the coordinator are not counted. On the link model
// (run_context::link) those messages leave on the peer's own link_queue.
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
#include "engines/gossip_peer.hpp"

#include <algorithm>
#include <chrono>
#include <deque>
#include <map>
#include <stdexcept>

namespace chorus {

namespace {

using round_peer_actor = caf::typed_actor<
  // Start: every peer's handle, by rank.
  caf::reacts_to<run_atom, std::vector<caf::actor>>,
  // A neighbour's message of some round.
  caf::reacts_to<gossip_atom, peer_state>,
  // Self: the wait for the neighbours may have lasted too long.
  caf::reacts_to<caf::tick_atom>,
  // Coordinator: the model reported after this round (peer_base::model_at).
  caf::replies_to<fetch_atom, int64_t>::with<peer_state>>;

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
  std::unique_ptr<link_queue> link;  // this peer's outgoing link (--link); null: none

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
  st.rejected = st.vars.rejected;
  st.clipped = st.vars.clipped;
  for (auto& line : st.vars.log)
    peer_log(self, line);
  st.vars.log.clear();
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
  // A Byzantine peer mixes its own honest message but sends a forgery; on
  // the link model, each message to an out-neighbour queues behind the ones
  // before it on this peer's link and arrives on a timer.
  peer_state sent = st.own;
  sent.x = st.outgoing(st.own.x);
  const size_t bytes = sent.x.wire_bytes() + sent.y.wire_bytes();
  for (int32_t j : st.at(st.round).out)
    if (!st.dead[static_cast<size_t>(j)]) {
      auto& to = st.peers[static_cast<size_t>(j)];
      if (st.link)
        self->delayed_send(to, st.link->send(bytes), gossip_atom_v, sent);
      else
        self->send(to, gossip_atom_v, sent);
    }
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
  st.vars.rank = rank;
  st.phases = views_of(*topo, rank);
  st.neighbours = all_neighbours(*topo, rank);
  st.rule = std::move(rule);
  st.max_rounds = ctx->plan.steps > 0 ? ctx->plan.steps : 0;
  if (ctx->link.active())
    st.link = std::make_unique<link_queue>(ctx->link);
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
    [self](fetch_atom, int64_t round) {
      auto& st = self->state;
      return st.model_at(round, st.vars.x, st.round - 1);
    },
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

} // namespace

namespace {

coordinator_plan round_plan(const run_context& ctx, gossip_rule rule, std::vector<buffer> initial) {
  if (ctx.workers.empty())
    throw std::invalid_argument("gossip: no workers");
  byzantine_peers(ctx);  // refuses a bad spec before any peer is spawned
  coordinator_plan cp;
  cp.rounds = true;
  cp.topo = std::make_shared<const topology>(read_topology(ctx.plan, static_cast<int>(ctx.workers.size())));
  cp.initial = initial_models(ctx, std::move(initial));
  cp.message_bytes = rule.message_bytes
                       ? rule.message_bytes(cp.initial[0])
                       : static_cast<int64_t>(cp.initial[0].wire_bytes()) * (rule.sends_y ? 2 : 1);
  cp.window = round_window(*cp.topo);
  auto shared_ctx = std::make_shared<const run_context>(ctx);
  auto topo = cp.topo;
  auto shared_rule = std::make_shared<const gossip_rule>(std::move(rule));
  cp.spawn_peer = [shared_ctx, topo, shared_rule, xs = cp.initial, window = cp.window](
                    caf::actor_system& sys, int32_t rank, const gossip_coordinator_actor& c) {
    return caf::actor_cast<caf::actor>(sys.spawn(round_peer, rank, shared_ctx, c, window,
                                                 xs[static_cast<size_t>(rank)], topo, shared_rule));
  };
  return cp;
}

} // namespace

protocol_actor spawn_synchronous_gossip(caf::actor_system& sys, run_context ctx, gossip_rule rule,
                                        std::vector<buffer> initial) {
  auto cp = round_plan(ctx, std::move(rule), std::move(initial));
  return spawn_gossip_coordinator(sys, std::move(ctx), std::move(cp));
}

caf::actor spawn_synchronous_gossip_peer(caf::actor_system& sys, run_context ctx, gossip_rule rule,
                                         std::vector<buffer> initial, int32_t rank,
                                         const caf::actor& coordinator) {
  auto cp = round_plan(ctx, std::move(rule), std::move(initial));
  return cp.spawn_peer(sys, rank, caf::actor_cast<gossip_coordinator_actor>(coordinator));
}

} // namespace chorus
