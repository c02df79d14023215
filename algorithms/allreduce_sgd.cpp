// allreduce_sgd: synchronous parallel SGD without a server, the message
// pattern of PyTorch's DDP. Every worker has a peer beside it holding a
// replica of w; each round every peer asks its worker for g_i at w, sends
// g_i to every other peer (an all-gather), and once all of them are in,
// takes the step sync_sgd's server takes:
//
//   w+ = Prox_{r,eta}(w - eta * sum_i n_i g_i / sum_j n_j)
//
// with the gradients in rank order, through sync_sgd's own round rule
// (sync_sgd_rule's combine_slice), so every replica computes the same floats
// as the server would: the run's model equals sync_sgd's bit for bit (a test
// compares them, in one process and over node processes).
//
// Why: with the workers in other processes, sync_sgd sends w to each and
// takes each g_i back through the coordinator, 2N model-sized messages on
// one process's link per round. Here each peer sends its gradient to the
// N - 1 others, node to node, and nothing model-sized passes through the
// coordinator (it takes a small report per round and fetches one replica
// when it evaluates): for 2 processes, one message each way per round where
// the server takes four. The all-gather sends (N - 1) gradients per peer
// per round, against 2 (N - 1) / N for a ring all-reduce, so it suits a few
// processes; a reduce-scatter form is not built.
//
// It runs on the synchronous gossip engine (engines/gossip.hpp) over the
// complete graph: one round is one step, no global barrier (a peer waits
// for the round's gradients), reports, evaluation, link model, Byzantine
// peers (their gradients are forged) and lost peers as in gossip_sgd. A lost
// peer's gradient drops out of the mean from the round its neighbours give
// up on it; two survivors that disagree on that round end with replicas
// that differ by one round's step, which the consensus distance in the
// metrics shows (it is 0 while the replicas agree).
#include "algorithms/gossip.hpp"
#include "algorithms/protocols.hpp"
#include "algorithms/registry.hpp"

#include <algorithm>

#include "engines/gossip.hpp"

namespace chorus {

namespace {

// The complete graph with uniform weights: every peer hears every other
// one each round. The weights themselves are not used (the rule weighs by
// samples), only who sends to whom.
run_plan on_complete_graph(run_plan plan) {
  plan.options["topology"] = "complete";
  plan.options["weights"] = "uniform";
  return plan;
}

gossip_rule allreduce_rule(const run_plan& plan) {
  gossip_rule rule;
  rule.prepare = [](gossip_vars&, backend&, const gradient& g, int64_t) {
    peer_state message;
    message.x = g.values;
    message.batch = g.samples;
    return message;
  };
  rule.mix = [step = sync_sgd_rule(plan).combine_slice](
               gossip_vars& v, backend& be, const std::vector<const peer_state*>& in,
               const std::vector<float>&, const gradient& g) {
    std::vector<const peer_state*> ranked(in.begin(), in.end());
    std::sort(ranked.begin(), ranked.end(),
              [](const peer_state* a, const peer_state* b) { return a->sender < b->sender; });
    std::vector<round_reply> replies;
    std::vector<cview> grads;
    for (auto* p : ranked) {
      if (p->x.size() != v.x.size()) {
        v.log.push_back("gradient of peer " + std::to_string(p->sender) + " has "
                        + std::to_string(p->x.size()) + " floats, not "
                        + std::to_string(v.x.size()) + ": left out of round "
                        + std::to_string(g.step));
        ++v.rejected;
        continue;
      }
      replies.push_back(round_reply{p->sender, p->x, p->loss, p->batch});
      grads.push_back(p->x);
    }
    mutable_buffer next(v.x.size());
    // The gossip round counts from 0, the round server's from 1.
    step(be, v.x, grads, replies, next.span(), g.step + 1);
    v.x = std::move(next).freeze();
  };
  return rule;
}

} // namespace

protocol_actor spawn_allreduce_sgd(caf::actor_system& sys, run_context ctx) {
  complete_options(find_algorithm("allreduce_sgd"), ctx.plan);
  ctx.plan = on_complete_graph(std::move(ctx.plan));
  auto rule = allreduce_rule(ctx.plan);
  return spawn_synchronous_gossip(sys, std::move(ctx), std::move(rule), {});
}

caf::actor spawn_allreduce_sgd_peer(caf::actor_system& sys, run_context ctx, int32_t rank,
                                    const caf::actor& coordinator) {
  complete_options(find_algorithm("allreduce_sgd"), ctx.plan);
  ctx.plan = on_complete_graph(std::move(ctx.plan));
  auto rule = allreduce_rule(ctx.plan);
  return spawn_synchronous_gossip_peer(sys, std::move(ctx), std::move(rule), {}, rank, coordinator);
}

} // namespace chorus
