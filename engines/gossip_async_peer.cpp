// The gossip engine's asynchronous peer (see engines/gossip.hpp), and
// spawn_asynchronous_gossip, which runs a pairwise_rule on it.
//
// Each peer loops on its own, with no rounds and no barrier: a gradient from
// its worker at x_i as it is now, rule.step, then one exchange with the
// neighbour rule.pick names (a request; the partner applies rule.answer in
// its handler and replies with its model from before; the initiator applies
// rule.complete in its reply handler), then a report, then the next step.
// A peer answers exchange requests at any time, also while its own is out,
// so two peers exchanging with each other at once cannot deadlock.
//
// Neighbours are those of the topology's graph (in- and out-neighbours, over
// all its phases: a time-varying graph counts as the union of its phases).
// A neighbour that does not answer within plan.timeout (or is gone) is
// dropped for the rest of the run (a timed-out exchange may have been
// applied on the other side only). A step is one local step of one peer;
// bytes count both directions of one exchange per step (also for a peer
// left without neighbours, which sends nothing: an overcount only after
// losses).
//
// On the link model (--link, actors/link.hpp) an exchange is two messages:
// the request leaves on the initiator's link (queued behind its earlier
// ones) and reaches the partner a transmit time + latency later, and the
// partner's reply leaves on the partner's own link. The initiator's
// plan.timeout counts from the moment it puts its request on the link, as
// a centralized protocol's does; the partner applies rule.answer when the
// request arrives and its reply carries its model from before.
#include "engines/gossip_peer.hpp"

#include "actors/link.hpp"

#include <algorithm>
#include <chrono>
#include <stdexcept>

namespace chorus {

namespace {

using async_peer_actor = caf::typed_actor<
  // Start: every peer's handle, by rank.
  caf::reacts_to<run_atom, std::vector<caf::actor>>,
  // A neighbour's model; replies with this peer's model, which moves by rule.answer.
  caf::replies_to<gossip_atom, peer_state>::with<peer_state>,
  // Self: take the next local step.
  caf::reacts_to<caf::tick_atom>,
  // Self: a message's time on the link is over (delayed_steps).
  caf::reacts_to<caf::tick_atom, uint64_t>,
  // Coordinator: the model reported after this local step (peer_base::model_at).
  caf::replies_to<fetch_atom, int64_t>::with<peer_state>>;

struct async_peer_state : peer_base {
  static inline const char* name = "chorus.async_gossip_peer";
  buffer x;
  std::shared_ptr<const pairwise_rule> rule;
  std::vector<async_peer_actor> peers;
  std::vector<int32_t> neighbours;  // the ones still answering
  std::mt19937_64 rng;
  int64_t steps = 0;
  std::unique_ptr<link_queue> link;  // this peer's outgoing link (--link); null: none
  delayed_steps later;               // requests and replies on their way over it
};

using async_peer_pointer = async_peer_actor::stateful_pointer<async_peer_state>;

void local_step(async_peer_pointer self);

// Reports the step, then yields: the next step begins from a self message
// sent through the actor clock. CAF 0.17's work-stealing scheduler runs an
// actor woken from its own worker thread next (LIFO), so a few peers
// averaging with one another and asking their workers can keep every thread
// to themselves while the other peers starve (seen: one peer of 8 took no
// step during 70,000 averages of the others). The clock's enqueue puts the
// peer at the back of a queue instead: the peers take turns.
void yield(async_peer_pointer self) {
  self->delayed_send(self, std::chrono::microseconds(0), caf::tick_atom_v);
}

void step_done(async_peer_pointer self, double loss) {
  if (report(self, self->state.steps, self->state.x, loss, [self] { yield(self); }))
    yield(self);
}

// Neighbour j did not answer (or is gone): dropped for the rest of the run.
void drop_neighbour(async_peer_pointer self, int32_t j, double loss, const caf::error& err) {
  auto& st = self->state;
  peer_log(self, "drops neighbour " + std::to_string(j) + " after " + std::to_string(st.steps)
                   + " steps (" + describe(err) + ")");
  st.neighbours.erase(std::remove(st.neighbours.begin(), st.neighbours.end(), j), st.neighbours.end());
  step_done(self, loss);
}

void start_exchange(async_peer_pointer self, double loss) {
  auto& st = self->state;
  if (st.neighbours.empty()) {
    step_done(self, loss);
    return;
  }
  const int32_t j = st.rule->pick(st.neighbours, st.rng);
  buffer sent = st.x;
  peer_state request{st.rank, st.steps, st.outgoing(sent), {}, loss, st.samples};
  // On a link the request arrives `transit` from now; the timeout counts from now.
  const auto transit = st.link ? st.link->send(request.x.wire_bytes()) : std::chrono::nanoseconds(0);
  if (transit >= st.timeout) {
    drop_neighbour(self, j, loss, caf::make_error(caf::sec::request_timeout));
    return;
  }
  const auto left = st.timeout - std::chrono::duration_cast<std::chrono::milliseconds>(transit);
  st.later.after(self, transit, [self, j, sent, loss, left, request]() mutable {
    self
      ->request(self->state.peers[static_cast<size_t>(j)], left, gossip_atom_v, std::move(request))
      .then(
        [self, sent, loss](peer_state& theirs) {
          auto& st = self->state;
          st.x = st.rule->complete(*st.be, st.x, sent, theirs.x);
          step_done(self, loss);
        },
        [self, j, loss](caf::error& err) { drop_neighbour(self, j, loss, err); });
  });
}

void local_step(async_peer_pointer self) {
  auto& st = self->state;
  ask_gradient(self, st.x, st.steps, [self](gradient& g) {
    auto& st = self->state;
    auto next = st.rule->step(*st.be, st.x, g);
    if (!st.be->all_finite(next)) {
      peer_leave(self, make_error(errc::non_finite, "peer " + std::to_string(st.rank) + ": model after step "
                                                      + std::to_string(st.steps)
                                                      + " contains NaN or Inf (learning rate too large?)"));
      return;
    }
    st.x = std::move(next);
    ++st.steps;
    start_exchange(self, g.loss);
  });
}

async_peer_actor::behavior_type async_peer(async_peer_pointer self, int32_t rank,
                                           std::shared_ptr<const run_context> ctx,
                                           gossip_coordinator_actor coordinator, int32_t window,
                                           buffer x0, std::vector<int32_t> neighbours,
                                           std::shared_ptr<const pairwise_rule> rule) {
  auto& st = self->state;
  st.init(rank, *ctx, std::move(coordinator), window);
  st.x = std::move(x0);
  st.neighbours = std::move(neighbours);
  st.rule = std::move(rule);
  st.rng.seed(static_cast<uint64_t>(ctx->plan.number("seed")) * 1000003 + static_cast<uint64_t>(rank));
  if (ctx->link.active())
    st.link = std::make_unique<link_queue>(ctx->link);
  self->set_down_handler([self](caf::down_msg& dm) { on_worker_down(self, dm); });
  return {
    [self](run_atom, std::vector<caf::actor>& all) {
      auto& st = self->state;
      for (auto& a : all)
        st.peers.push_back(caf::actor_cast<async_peer_actor>(a));
      self->monitor(st.worker);
      local_step(self);
    },
    [self](gossip_atom, peer_state& theirs) -> caf::result<peer_state> {
      auto& st = self->state;
      peer_state mine{st.rank, st.steps, st.outgoing(st.x), {}, 0, st.samples};
      st.x = st.rule->answer(*st.be, st.x, theirs.x);
      if (!st.link)
        return mine;
      // The reply crosses this peer's link.
      auto rp = self->make_response_promise<peer_state>();
      st.later.after(self, st.link->send(mine.x.wire_bytes()),
                     [rp, mine]() mutable { rp.deliver(std::move(mine)); });
      return rp;
    },
    [self](caf::tick_atom) { local_step(self); },
    [self](caf::tick_atom, uint64_t id) { self->state.later.run(id); },
    [self](fetch_atom, int64_t step) {
      auto& st = self->state;
      return st.model_at(step, st.x, st.steps);
    },
  };
}

} // namespace

namespace {

coordinator_plan pairwise_plan(const run_context& ctx, pairwise_rule rule, std::vector<buffer> initial) {
  if (ctx.workers.empty())
    throw std::invalid_argument("gossip: no workers");
  if (!rule.step || !rule.pick || !rule.answer || !rule.complete)
    throw std::invalid_argument("gossip: a pairwise rule needs step, pick, answer and complete");
  const int n = static_cast<int>(ctx.workers.size());
  byzantine_peers(ctx);  // refuses a bad spec before any peer is spawned
  coordinator_plan cp;
  cp.rounds = false;
  cp.topo = std::make_shared<const topology>(read_topology(ctx.plan, n));
  cp.initial = initial_models(ctx, std::move(initial));
  cp.message_bytes = 2 * static_cast<int64_t>(cp.initial[0].wire_bytes());
  // The coordinator counts a step as soon as it sees it: a few reports in
  // flight per peer are enough.
  cp.window = 4;
  std::vector<std::vector<int32_t>> neighbours;
  for (int i = 0; i < n; ++i)
    neighbours.push_back(all_neighbours(*cp.topo, i));
  auto shared_ctx = std::make_shared<const run_context>(ctx);
  auto shared_rule = std::make_shared<const pairwise_rule>(std::move(rule));
  cp.spawn_peer = [shared_ctx, neighbours, shared_rule, xs = cp.initial, window = cp.window](
                    caf::actor_system& sys, int32_t rank, const gossip_coordinator_actor& c) {
    auto i = static_cast<size_t>(rank);
    return caf::actor_cast<caf::actor>(
      sys.spawn(async_peer, rank, shared_ctx, c, window, xs[i], neighbours[i], shared_rule));
  };
  return cp;
}

} // namespace

protocol_actor spawn_asynchronous_gossip(caf::actor_system& sys, run_context ctx, pairwise_rule rule,
                                         std::vector<buffer> initial) {
  auto cp = pairwise_plan(ctx, std::move(rule), std::move(initial));
  return spawn_gossip_coordinator(sys, std::move(ctx), std::move(cp));
}

caf::actor spawn_asynchronous_gossip_peer(caf::actor_system& sys, run_context ctx,
                                          pairwise_rule rule, std::vector<buffer> initial,
                                          int32_t rank, const caf::actor& coordinator) {
  auto cp = pairwise_plan(ctx, std::move(rule), std::move(initial));
  return cp.spawn_peer(sys, rank, caf::actor_cast<gossip_coordinator_actor>(coordinator));
}

} // namespace chorus
