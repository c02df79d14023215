// CHOCO-SGD (Koloskova, Stich, Jaggi 2019, "Decentralized Stochastic
// Optimization and Gossip Algorithms with Compressed Communication",
// Algorithm 2): decentralized SGD whose gossip messages are compressed.
// Every node i keeps its model x_i and public copies x_hat_j of itself and
// of each neighbour j, identical at every node that holds them. Round t:
//   x_i^{t+1/2} = Prox(x_i - eta g_i(x_i))                        local step
//   q_i         = C(x_i^{t+1/2} - x_hat_i)        sent to the out-neighbours
//   x_hat_j    += q_j                           for j = i and every in-neighbour
//   x_i^{t+1}   = x_i^{t+1/2} + gamma sum_j w_ij (x_hat_j - x_hat_i)
// Only q_i crosses the network: the encoded payload (engines/compressors.hpp),
// so bytes_sent and the link model (--link) see the compressed size, and
// peers on other processes receive the payload itself.
//
// Why not average decoded compressed models (naive compressed gossip,
// x_i <- sum_j w_ij D(C(x_j))): its compression error is proportional to
// ||x_j|| and never shrinks, so the nodes neither agree nor reach the
// optimum. CHOCO compresses x_i - x_hat_i, which goes to zero as the copies
// catch up, so the error vanishes (tests/algorithms/gossip_test.cpp shows
// both on least squares).
//
// Choices made here:
//   - C must be contractive, E||C(v) - v||^2 <= (1 - delta) ||v||^2
//     (the paper's Assumption 2). topk and sign are; qsgd:S and randk:F
//     (unbiased, variance above ||v||^2) are used in the paper's rescaled
//     form: the decoded qsgd vector times 1 / (1 + min(d/S^2, sqrt(d)/S)),
//     the decoded randk vector times k/d (no d/k scaling). Sender and
//     receivers scale alike (the scale is read from the payload's header).
//   - x_hat_j^0 = w_0 (the run's initial model, the same in every process),
//     so the first differences are small when the peers start at w_0.
//   - gamma (option `gamma`): the consensus step size. The theory asks for
//     gamma of order delta^2 * spectral gap; the default, auto, takes
//     gamma = delta, the compressor's contraction: 1 for none, 1 / (1 + the
//     qsgd variance factor) for qsgd (0.043 for qsgd:4 at d = 7850), k/d for
//     topk and randk (the worst case of topk), 0.5 for sign. Measured on
//     Fashion-MNIST softmax, 8 nodes on a ring, 1 epoch: qsgd:4 at 0.5
//     diverges, at 0.04 reaches 0.819 test accuracy (DSGD 0.795); topk:0.01
//     at 0.01 reaches 0.818. gamma = 1 with --compress none is DSGD
//     (adapt-then-combine) exactly.
//   - no --error-feedback: x_hat is CHOCO's own error compensation.
//   - a static graph only: every copy x_hat_j must see every q_j, so a
//     time-varying topology (onepeer-exp) is refused.
//   - a neighbour that leaves: its copy stays and its weight goes to the
//     self weight (the engine's rule for every gossip protocol), which drops
//     its term from the sum.
//
// Options (defaults in registry.cpp): compress, gamma, topology, weights, seed.
#include "algorithms/gossip.hpp"
#include "algorithms/registry.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

#include "engines/compressors.hpp"
#include "engines/gossip.hpp"

namespace chorus {

namespace {

// The factor that makes a decoded payload contractive (see above).
float contraction(const buffer& payload) {
  auto h = read_header(payload);
  const double d = static_cast<double>(h.dim);
  if (h.codec == codec_id::qsgd && d > 0) {
    const double s = h.param;
    return static_cast<float>(1.0 / (1.0 + std::min(d / (s * s), std::sqrt(d) / s)));
  }
  if (h.codec == codec_id::randk && d > 0)
    return static_cast<float>(static_cast<double>(h.param) / d);
  return 1.0f;
}

// A seed per (run seed, rank, round) for the randomized codecs.
uint64_t round_seed(uint64_t seed, int32_t rank, int64_t round) {
  uint64_t z = seed + 0x632be59bd9b4e019ull * (uint64_t(uint32_t(rank)) + 1)
               + 0x9e3779b97f4a7c15ull * uint64_t(round);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// gamma = auto: the contraction delta of `codec` on vectors of length d.
double auto_gamma(const compressor& codec, size_t d) {
  if (d == 0)
    return 1;
  const buffer payload = codec.encode(buffer::from(std::vector<float>(d, 1.0f)), 0);
  const auto h = read_header(payload);
  switch (h.codec) {
    case codec_id::qsgd:
    case codec_id::randk:
      return contraction(payload);
    case codec_id::topk:
      return static_cast<double>(h.param) / static_cast<double>(d);
    case codec_id::sign:
      return 0.5;
    default:
      return 1;
  }
}

gossip_rule choco_rule(const run_plan& plan, const buffer& w0) {
  const compressor codec = make_compressor(plan.text("compress"));
  const double gamma = plan.text("gamma") == "auto" ? auto_gamma(codec, w0.size()) : plan.number("gamma");
  if (!(gamma > 0 && gamma <= 1))
    throw std::invalid_argument("option gamma: " + plan.text("gamma")
                                + " is not a consensus step size in (0, 1] (or auto)");
  const auto seed = static_cast<uint64_t>(plan.number("seed"));
  const buffer start = w0.to_host();
  gossip_rule rule;
  rule.message_bytes = [codec](const buffer& x0) {
    return static_cast<int64_t>(codec.encode(x0.to_host(), 0).wire_bytes());
  };
  rule.prepare = [codec, seed, plan, start](gossip_vars& v, backend& be, const gradient& g,
                                             int64_t round) {
    const float lr = plan.lr_at(round);  // t: the round (the peer's local step)
    const regularizer& reg = plan.reg;
    if (v.hat.empty())
      v.hat[v.rank] = start;
    auto half = mutable_buffer::copy_of(v.x);
    be.prox_step(reg, lr, g.values, half.span());
    v.x = std::move(half).freeze();
    mutable_buffer diff(v.x.size());
    be.weighted_sum({v.x, v.hat.at(v.rank)}, {1.0f, -1.0f}, diff.span());
    auto q = codec.encode(std::move(diff).freeze(), round_seed(seed, v.rank, round));
    return peer_state{-1, 0, std::move(q), {}, 0, 0};
  };
  rule.mix = [gamma, start](gossip_vars& v, backend& be, const std::vector<const peer_state*>& in,
                            const std::vector<float>& w, const gradient&) {
    const size_t d = v.x.size();
    // x_hat_j += q_j for every message of the round, the peer's own first.
    for (auto* m : in) {
      auto it = v.hat.emplace(m->sender, start).first;
      const buffer q = decode(m->x, d);  // throws on a corrupt payload
      mutable_buffer next(d);
      be.weighted_sum({it->second, q}, {1.0f, contraction(m->x)}, next.span());
      it->second = std::move(next).freeze();
    }
    // x_i += gamma sum_j w_ij (x_hat_j - x_hat_i); the w_ij sum to 1.
    std::vector<cview> xs{v.x, v.hat.at(v.rank)};
    std::vector<float> coeffs{1.0f, static_cast<float>(-gamma)};
    for (size_t k = 0; k < in.size(); ++k) {
      xs.push_back(v.hat.at(in[k]->sender));
      coeffs.push_back(static_cast<float>(gamma * w[k]));
    }
    mutable_buffer next(d);
    be.weighted_sum(xs, coeffs, next.span());
    v.x = std::move(next).freeze();
  };
  return rule;
}

// The plan's checks that need the topology: a static graph only.
void check_static_graph(const run_plan& plan, int n) {
  if (read_topology(plan, n).phases.size() != 1)
    throw std::invalid_argument("choco_gossip: topology " + plan.text("topology")
                                + " changes from round to round; CHOCO keeps copies of its "
                                  "neighbours' models and needs a static graph (ring, torus, "
                                  "exp, hypercube, complete, star, erdos:P, file:PATH)");
}

} // namespace

void check_choco_gossip(const run_plan& plan, size_t workers) {
  check_static_graph(plan, static_cast<int>(workers));
  choco_rule(plan, buffer::from(std::vector<float>(1, 0.0f)));  // the compressor and gamma
}

protocol_actor spawn_choco_gossip(caf::actor_system& sys, run_context ctx) {
  complete_options(find_algorithm("choco_gossip"), ctx.plan);
  check_static_graph(ctx.plan, static_cast<int>(ctx.workers.size()));
  auto rule = choco_rule(ctx.plan, ctx.initial);
  return spawn_synchronous_gossip(sys, std::move(ctx), std::move(rule), {});
}

caf::actor spawn_choco_gossip_peer(caf::actor_system& sys, run_context ctx, int32_t rank,
                                   const caf::actor& coordinator) {
  complete_options(find_algorithm("choco_gossip"), ctx.plan);
  check_static_graph(ctx.plan, static_cast<int>(ctx.workers.size()));
  auto rule = choco_rule(ctx.plan, ctx.initial);
  return spawn_synchronous_gossip_peer(sys, std::move(ctx), std::move(rule), {}, rank, coordinator);
}

} // namespace chorus
