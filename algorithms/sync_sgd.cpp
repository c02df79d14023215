// Synchronous parallel (proximal) SGD. Each step the server sends the same
// weights w to all N workers and waits for all of them (the barrier).
//
//   sync_sgd       server form:   w+ = Prox_{r,eta}(w - eta * mean_i g_i(w))
//                  With r = 0 and equal batches this is exactly one worker on
//                  an N-times larger batch: the mean of N batch-mean gradients
//                  over disjoint equal batches is the mean over their union.
//                  Per-worker batch sizes (--batch 32,96): the mean is
//                  weighted by samples, sum_i n_i g_i / sum_j n_j, so it is
//                  still the gradient of the union batch (robust
//                  aggregators stay unweighted: they count workers).
//   sync_sgd_avg   averaged form: w+ = mean_i Prox_{r,eta}(w - eta * g_i(w))
//                  (the mean weighted by samples as above)
//                  Each worker takes one proximal step itself (a local step
//                  with k = 1) and the server averages the models. For r = 0
//                  both forms coincide; for L1 they differ: averaging sparse
//                  vectors is not sparse, so the server form is the one whose
//                  iterates stay sparse.
//
// Downlink (--compress-down SPEC): the server broadcasts the compressed
// change of w instead of w, with its own error memory, and every worker
// rebuilds the same w_hat (compressed_link.hpp); the rule runs on w_hat:
//   w+ = Prox(w_hat - eta mean_i D(C(g_i))),  p = w+ - w_hat + e,
//   w_hat <- w_hat + D(C(p)),  e <- p - D(C(p))     (ef; none: e = 0)
//
// Compression (--compress SPEC --error-feedback ef|ef21|none): each worker's
// gradient crosses the uplink as a payload C(g) (compressed_link.hpp); the
// server decodes it before this rule runs, so the rule is unchanged:
//   none   w+ = Prox(w - eta mean_i D(C(g_i)))
//   ef     w+ = Prox(w - eta mean_i D(C(g_i + e_i))),  e_i <- g_i + e_i - D(C(g_i + e_i))
//   ef21   w+ = Prox(w - eta mean_i h_i),  h_i <- h_i + D(C(g_i - h_i))
//
// With a robust aggregator (options aggregator, pre, f; algorithms/robust.hpp)
// the mean becomes the aggregator's value:
//   sync_sgd       w+ = Prox(w - eta * agg(g_1..g_N))
//   sync_sgd_avg   w+ = w + agg(x_1 - w, ..., x_N - w)   (x_i = Prox(w - eta g_i))
// and a worker's NaN/Inf vector is rejected (counted, named in the log)
// instead of failing the run. The aggregation runs on the server's host
// memory, so it does not combine with allreduce=nccl.
//
// Cost per step: N weight broadcasts (one shared buffer in-process) and N
// replies of the model's size; one pass over N buffers to aggregate.
//
// Where the mean is taken (option allreduce, both forms):
//   none   the server brings every reply to its own memory and averages
//          there, in the same pass as the update. The default.
//   nccl   an NCCL group averages the replies where they are, on the
//          workers' GPUs. NCCL allows one rank per GPU in a communicator, so
//          the group has one rank per distinct GPU the workers use: each rank
//          first averages the replies on its GPU (weighted by how many there
//          are, so uneven placements still give the plain mean), then one
//          all-reduce runs across the GPUs, and the server gets the mean on
//          its own GPU and applies the same update to it. With one GPU the
//          communicator has one rank: the same code path as with N GPUs.
//          The gradients cross the PCIe/NVLink fabric once, in NCCL, instead
//          of each being copied to the server's GPU.
//          Workers in node processes (--processes/--nodes): one rank per
//          worker, beside it on its node, and the all-reduce runs among the
//          nodes; only rank 0's mean reaches the server (actors/nccl_nodes.hpp).
#include <algorithm>
#include <memory>
#include <stdexcept>

#include "actors/nccl_group.hpp"
#include "algorithms/compressed_link.hpp"
#include "algorithms/protocols.hpp"
#include "algorithms/registry.hpp"
#include "algorithms/robust.hpp"
#include "gpu/device.hpp"

namespace chorus {

namespace {

std::string allreduce_mode(const run_plan& plan) {
  const std::string& mode = plan.text("allreduce");
  if (mode != "none" && mode != "nccl")
    throw std::invalid_argument("allreduce=" + mode + " is not known (valid: none, nccl)");
  return mode;
}

// One rank per distinct GPU the workers compute on, the server's own GPU
// first when a worker uses it (rank 0's copy of the mean is the one the
// server gets back). Workers on the host, or a graph that does not say where
// its workers are, count as the server's GPU: the rank there copies them in.
std::vector<int> rank_devices(const run_context& ctx) {
  std::vector<int> gpus;
  for (int d : ctx.worker_devices)
    if (d >= 0 && std::find(gpus.begin(), gpus.end(), d) == gpus.end())
      gpus.push_back(d);
  auto own = std::find(gpus.begin(), gpus.end(), ctx.device);
  if (own != gpus.end())
    std::rotate(gpus.begin(), own, own + 1);
  if (gpus.empty())
    gpus.push_back(ctx.device);
  return gpus;
}

// The round server for `rule`; with allreduce=nccl, with an NCCL group as
// its reducer, owned by the server (it shuts down when the server ends).
protocol_actor spawn_with_allreduce(caf::actor_system& sys, run_context ctx, round_rule rule) {
  if (allreduce_mode(ctx.plan) != "none" && rule.reject_non_finite)
    throw std::invalid_argument("--aggregator runs on the server: it does not combine with "
                                "--allreduce nccl");
  if (allreduce_mode(ctx.plan) == "none")
    return spawn_round_server(sys, std::move(ctx), std::move(rule));
  if (ctx.reducer) {
    // The workers' nodes all-reduce among themselves (--processes/--nodes):
    // the replies that reach this server are rank 0's mean and empty ones.
    rule.reducer = ctx.reducer;
    return spawn_round_server(sys, std::move(ctx), std::move(rule));
  }
  auto devices = rank_devices(ctx);
  // No GPU (or no CUDA in this build) is a clear error now, before training.
  for (int d : devices)
    device::require(d, "allreduce=nccl");
  nccl_group_options opts;
  // Joining can take seconds; a short reply timeout must not break it.
  opts.timeout = std::max(opts.timeout, ctx.plan.timeout);
  auto group = spawn_nccl_group(sys, std::move(devices), opts);
  rule.reducer = group.actor();
  auto server = spawn_round_server(sys, std::move(ctx), std::move(rule));
  caf::actor_cast<caf::abstract_actor*>(server)->attach_functor(
    [group]() mutable { group.reset(); });
  return server;
}

} // namespace

buffer mean_of(backend& be, const std::vector<round_reply>& replies, size_t n) {
  std::vector<cview> xs;
  xs.reserve(replies.size());
  for (auto& r : replies)
    xs.push_back(r.values);
  auto out = be.allocate(n);
  if (same_samples(replies)) {
    be.mean(xs, out.span());
  } else {
    auto coeffs = sample_weights(replies, 1.0f);
    be.weighted_sum(xs, coeffs, out.span());
  }
  return std::move(out).freeze();
}

bool same_samples(const std::vector<round_reply>& replies) {
  return std::all_of(replies.begin(), replies.end(),
                     [&](const round_reply& r) { return r.samples == replies.front().samples; });
}

std::vector<float> sample_weights(const std::vector<round_reply>& replies, float scale) {
  double total = 0;
  for (auto& r : replies)
    total += r.samples;
  std::vector<float> out;
  out.reserve(replies.size());
  for (auto& r : replies)
    out.push_back(static_cast<float>(scale * (total > 0 ? r.samples / total
                                                        : 1.0 / static_cast<double>(replies.size()))));
  return out;
}

round_rule sync_sgd_rule(const run_plan& plan) {
  round_rule rule;
  rule.ask = [](round_asker& ask, size_t i, const weights& w, int64_t) { ask.gradient(i, w); };
  // w - eta * mean_i g_i in one pass over memory, then the prox in place;
  // element-wise, so the server may split it by coordinates.
  // The mean weights each gradient by its samples, n_i / sum_j n_j: g_i is
  // the mean over worker i's n_i samples, so the weighted mean is the
  // gradient of the union batch, whatever the per-worker batch sizes
  // (--batch 32,96 steps as one worker on 128). Equal batches: the plain
  // mean, the same floats as ever. Rounds count from 1; the schedule's t
  // (the server's step) from 0.
  rule.combine_slice = [plan](backend& be, cview w, const std::vector<cview>& grads,
                              const std::vector<round_reply>& replies, view out, int64_t round) {
    const float lr = plan.lr_at(round - 1);
    if (same_samples(replies)) {
      be.mean_axpy(w, grads, -lr, out);
    } else {
      std::vector<cview> terms{w};
      terms.insert(terms.end(), grads.begin(), grads.end());
      auto coeffs = sample_weights(replies, -lr);
      coeffs.insert(coeffs.begin(), 1.0f);
      be.weighted_sum(terms, coeffs, out);
    }
    be.prox(plan.reg, lr, out);
  };
  rule.combine = combine_whole(rule);
  return rule;
}

round_rule sync_sgd_avg_rule(const run_plan& plan) {
  round_rule rule;
  rule.ask = [plan](round_asker& ask, size_t i, const weights& w, int64_t round) {
    ask.local(i, w, local_plan{1, plan.lr_at(round - 1), plan.reg, {}});
  };
  // The models' mean, weighted by samples as sync_sgd's (the plain mean for
  // equal batches).
  rule.combine_slice = [](backend& be, cview, const std::vector<cview>& xs,
                          const std::vector<round_reply>& replies, view out, int64_t) {
    if (same_samples(replies))
      be.mean(xs, out);
    else
      be.weighted_sum(xs, sample_weights(replies, 1.0f), out);
  };
  rule.combine = combine_whole(rule);
  return rule;
}

// sync_sgd's rule with the robust aggregator: w+ = Prox(w - eta agg(g)).
round_rule robust_sync_sgd_rule(const run_plan& plan, std::shared_ptr<robust_aggregation> robust) {
  round_rule rule;
  rule.ask = [](round_asker& ask, size_t i, const weights& w, int64_t) { ask.gradient(i, w); };
  rule.combine = [robust, plan](backend& be, const buffer& w,
                                const std::vector<round_reply>& replies, int64_t round) {
    const float lr = plan.lr_at(round - 1);
    const regularizer& reg = plan.reg;
    std::vector<buffer> grads;
    std::vector<int32_t> senders;
    for (auto& r : replies) {
      grads.push_back(r.values);
      senders.push_back(r.sender);
    }
    auto g = be.adopt((*robust)(grads, senders, round, w.size()));
    auto next = be.allocate(w.size());
    be.copy(w, next.span());
    be.prox_step(reg, lr, g, next.span());
    return std::move(next).freeze();
  };
  attach_robust(rule, std::move(robust));
  return rule;
}

void check_robust_round(const run_plan& plan, size_t workers) {
  if (make_robust(plan, workers) && allreduce_mode(plan) != "none")
    throw std::invalid_argument("--aggregator runs on the server: it does not combine with "
                                "--allreduce nccl");
}

protocol_actor spawn_sync_sgd(caf::actor_system& sys, run_context ctx) {
  complete_options(find_algorithm("sync_sgd"), ctx.plan);
  auto robust = make_robust(ctx.plan, ctx.workers.size());
  auto rule = robust ? robust_sync_sgd_rule(ctx.plan, std::move(robust)) : sync_sgd_rule(ctx.plan);
  // --compress: each gradient crosses the uplink as C(g) (compressed_link.hpp);
  // the rule above still combines d floats per worker (decoded first).
  auto compression = read_uplink_compression(ctx.plan);
  if (compression.any() && allreduce_mode(ctx.plan) != "none")
    throw std::invalid_argument("--compress and --compress-down need allreduce=none (the server "
                                "decodes the replies and encodes the broadcast; nccl would "
                                "average the payloads' bytes)");
  install_uplink_compression(sys, ctx, rule, compression);
  return spawn_with_allreduce(sys, std::move(ctx), std::move(rule));
}

protocol_actor spawn_sync_sgd_avg(caf::actor_system& sys, run_context ctx) {
  complete_options(find_algorithm("sync_sgd_avg"), ctx.plan);
  auto rule = sync_sgd_avg_rule(ctx.plan);
  if (auto robust = make_robust(ctx.plan, ctx.workers.size())) {
    rule.combine_slice = nullptr;  // the robust step is not element-wise
    rule.combine = [robust](backend& be, const buffer& w, const std::vector<round_reply>& replies,
                            int64_t round) { return robust_model_step(*robust, be, w, replies, round); };
    attach_robust(rule, robust);
  }
  return spawn_with_allreduce(sys, std::move(ctx), std::move(rule));
}

} // namespace chorus
