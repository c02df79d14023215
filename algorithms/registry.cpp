#include "algorithms/registry.hpp"

#include <cstdlib>
#include <stdexcept>

#include "algorithms/gossip.hpp"
#include "algorithms/leader.hpp"
#include "algorithms/protocols.hpp"

namespace chorus {

namespace {

// Options several protocols share, each with the same meaning and default.
const protocol_option tau_local{"tau", "K", "8", "local steps per worker between averages"};
const protocol_option fraction{"fraction", "F", "1",
                               "share of the live workers sampled per round (FedAvg)"};
const protocol_option post_local{"post_local", "K", "0",
                                 "synchronous (tau 1) for the first K rounds, then local"};
const protocol_option local_momentum{
  "local_momentum", "BETA", "0",
  "heavy-ball momentum in the local steps: m <- BETA m + g, x <- Prox(x - lr m), m kept on the "
  "worker across rounds; not checked against Gao, Xu, Huang's (AAAI 2021) momentum variant "
  "(its text was not found)"};
const protocol_option topology_option{
  "topology", "SPEC", "ring",
  "graph: ring | torus | complete | star | hypercube | exp | onepeer-exp | erdos:P | file:PATH"};
const protocol_option weights_option{"weights", "RULE", "uniform",
                                     "mixing weights: uniform | metropolis"};
const protocol_option allreduce{
  "allreduce", "MODE", "none",
  "on --backend cuda: none (the server averages) | nccl (the workers all-reduce)"};

const protocol_option compress{
  "compress", "SPEC", "none",
  "uplink compressor: none | qsgd:S | topk:F | randk:F | sign (chorus list: compressors); "
  "local steps send C(x_i - w)"};
const protocol_option compress_down{
  "compress_down", "SPEC", "none",
  "broadcast compressor: the server sends C(change of w) with its own error memory and every "
  "worker rebuilds w; refuses --fraction < 1"};
const protocol_option error_feedback{"error_feedback", "MODE", "none",
                                     "with --compress/--compress-down: none | ef | ef21 (both ends)"};
const protocol_option allow_biased{"allow_biased", "", "0",
                                   "allow topk/sign without error feedback (logs a warning)"};
// A robust aggregator in place of the mean (algorithms/robust.hpp).
const protocol_option aggregator_option{
  "aggregator", "SPEC", "none",
  "robust rule in place of the mean: median | trimmed:B | krum | multikrum:M | geomed | "
  "cc:TAU[,ITERS] | filter | mean (chorus list); none: the plain mean, NaN fails the run"};
const protocol_option pre_option{"pre", "SPEC", "none",
                                 "pre-aggregation before --aggregator: nnm | bucket:S | clip:C, "
                                 "chained with '+'; none: none"};
const protocol_option f_option{"f", "F", "0",
                               "Byzantine inputs the aggregator tolerates per aggregation"};
// Robust mixing at each gossip peer (algorithms/robust_gossip.hpp).
const protocol_option gossip_aggregator{
  "aggregator", "SPEC", "none",
  "robust mix at each peer: cc:TAU | cc:auto (ClippedGossip: x_i += sum_j w_ij clip_tau(x_j - x_i), "
  "auto: tau clips the f farthest neighbours) or a rule (median | trimmed:B | krum | ...) on its "
  "own and its in-neighbours' models; none: the weighted sum, NaN fails the run"};
const protocol_option gossip_f{"f", "F", "0",
                               "Byzantine in-neighbours each peer's mix tolerates (cc:auto, rules)"};

} // namespace

const std::vector<algorithm_info>& algorithm_registry() {
  static const std::vector<algorithm_info> table = {
    {"sync_sgd", "synchronous parallel SGD, server-side prox: w+ = Prox(w - eta mean_i g_i)",
     "one round: every worker computes one mini-batch gradient", spawn_sync_sgd,
     {allreduce, compress, compress_down, error_feedback, allow_biased, aggregator_option,
      pre_option, f_option},
     true, {}, {}, check_robust_round, true},
    {"sync_sgd_avg", "synchronous parallel SGD, averaged prox: w+ = mean_i Prox(w - eta g_i)",
     "one round: every worker takes one proximal step", spawn_sync_sgd_avg,
     {allreduce, aggregator_option, pre_option, f_option}, true, {}, {}, check_robust_round, true},
    {"allreduce_sgd",
     "sync_sgd without a server (DDP's pattern): each worker's peer all-gathers the round's "
     "gradients and takes w+ = Prox(w - eta mean_i g_i); the same floats as sync_sgd",
     "one round: every worker computes one mini-batch gradient", spawn_allreduce_sgd, {}, false, {},
     spawn_allreduce_sgd_peer, {}, true},
    {"async_sgd",
     "asynchronous delayed-gradient SGD: w <- Prox(w - eta_tau g_i(w_{t-tau})) per arrival",
     "one applied gradient (one worker's mini-batch)",
     spawn_async_sgd,
     {{"staleness_bound", "S", "-1", "drop gradients older than S updates (counted); -1: keep all"},
      {"staleness_lr", "", "0", "step size eta / (1 + staleness)"},
      aggregator_option, pre_option, f_option,
      {"window", "K", "0",
       "with --aggregator: step once K distinct workers' gradients are in; 0: n - f"},
      compress, error_feedback, allow_biased},
     true, {}, {}, check_async_sgd},
    {"local_sgd", "local SGD / FedAvg: tau local steps, then w+ = sum_i n_i/n x_i",
     "one communication round (tau local steps per worker)", spawn_local_sgd,
     {tau_local, fraction, post_local, local_momentum, compress, compress_down, error_feedback,
      allow_biased, aggregator_option, pre_option, f_option},
     true, {}, {}, check_local_sgd, true},
    {"lazy_sgd", "event-triggered sync SGD (LAG): upload g_i only if it changed enough",
     "one round: every worker computes a gradient, some skip the upload", spawn_lazy_sgd,
     {{"lazy_threshold", "XI", "1",
       "upload only if ||g - g_last||^2 > XI ||w - w_prev||^2 / lr^2"}},
     false, {}, {}, {}, true},
    {"ri_sgd", "redundancy-infused local SGD: local_sgd over shards held with redundancy mu",
     "one communication round (tau local steps per worker)", spawn_ri_sgd,
     {tau_local, fraction, post_local, local_momentum, compress, compress_down, error_feedback,
      allow_biased,
      {"redundancy", "MU", "0.25", "each worker also holds a MU share of the others' shards"}},
     true, ri_sgd_shards, {}, {}, true},
    {"gossip_sgd",
     "decentralized SGD (DSGD): local step and x_i <- sum_j w_ij x_j over graph neighbours",
     "one round: every node takes one gradient step and mixes with its in-neighbours",
     spawn_gossip_sgd,
     {topology_option, weights_option,
      {"mix_order", "ORDER", "atc", "atc (adapt then combine) | cta (combine then adapt)"},
      gossip_aggregator, pre_option, gossip_f},
     false, {}, spawn_gossip_sgd_peer, check_gossip_sgd, true},
    {"async_gossip",
     "asynchronous gossip SGD (AD-PSGD): after each local step, average with one random neighbour",
     "one local step of one node (with its pairwise average)", spawn_async_gossip,
     {topology_option, weights_option}, false, {}, spawn_async_gossip_peer},
    {"gradient_tracking",
     "gradient tracking (DIGing): x_i <- sum_j w_ij x_j - eta y_i, y_i tracks the mean gradient",
     "one round: every node takes one tracked step and mixes x and y with its in-neighbours",
     spawn_gradient_tracking, {topology_option, weights_option}, false, {},
     spawn_gradient_tracking_peer, {}, true},
    {"choco_gossip",
     "CHOCO-SGD: DSGD gossiping compressed differences q_i = C(x_i - x_hat_i) of public copies "
     "x_hat; x_i += gamma sum_j w_ij (x_hat_j - x_hat_i)",
     "one round: every node takes one gradient step and sends q_i to its out-neighbours",
     spawn_choco_gossip,
     {{"compress", "SPEC", "none",
       "what peers send: C(x_i - x_hat_i) with none | qsgd:S | topk:F | randk:F | sign "
       "(qsgd, randk rescaled to be contractive)"},
      {"gamma", "G", "auto",
       "consensus step size in (0, 1]; auto: the compressor's contraction delta (qsgd: "
       "1/(1+min(d/S^2, sqrt(d)/S)), topk/randk: k/d, sign: 0.5, none: 1)"},
      topology_option, weights_option},
     false, {}, spawn_choco_gossip_peer, check_choco_gossip, true},
    {"leader_sgd",
     "leader SGD (LSGD): x_i <- Prox(x_i - eta (g_i + lambda (x_i - x_leader))), leader = lowest "
     "recent loss; groups > 1: also pulled to the global leader (lambda_global)",
     "sync: one round (every live worker takes one step); async: one applied update",
     spawn_leader_sgd,
     {{"lambda", "L", "0.1", "pull strength toward the (group) leader"},
      {"tau", "K", "8", "steps between leader elections and broadcasts"},
      {"groups", "G", "1", "G groups, each with its own leader (multi-leader)"},
      {"lambda_global", "L", "0.05", "pull toward the global leader when groups > 1"},
      {"async", "", "0", "the asynchronous form (no barrier)"}},
     false, {}, {}, {}, true, spawn_leader_sgd_agent},
    {"easgd",
     "elastic averaging SGD: local steps; every tau steps x_i <- x_i - alpha (x_i - x~), "
     "x~ <- x~ + alpha sum_i (x_i - x~)",
     "sync: one round (every live worker takes one step); async: one applied update", spawn_easgd,
     {{"alpha", "A", "0.1", "elastic moving rate"},
      {"tau", "K", "4", "steps between elastic exchanges"},
      {"async", "", "0", "the asynchronous form (no barrier)"}},
     false, {}, {}, {}, true, spawn_easgd_agent},
  };
  return table;
}

bool runs_in_lockstep(const algorithm_info& algo, const std::map<std::string, std::string>& options) {
  // A bad value is option_flag's error to report when the protocol starts;
  // here anything but a number equal to 0 counts as asynchronous.
  auto async = options.find("async");
  if (!algo.lockstep || async == options.end())
    return algo.lockstep;
  char* end = nullptr;
  const double v = std::strtod(async->second.c_str(), &end);
  return end != async->second.c_str() && *end == '\0' && v == 0;
}

const algorithm_info& find_algorithm(const std::string& name) {
  for (auto& entry : algorithm_registry())
    if (entry.name == name)
      return entry;
  std::string valid;
  for (auto& entry : algorithm_registry())
    valid += (valid.empty() ? "" : ", ") + entry.name;
  throw std::invalid_argument("unknown algorithm '" + name + "'; valid algorithms: " + valid);
}

void check_options(const algorithm_info& algo, const std::map<std::string, std::string>& options) {
  for (auto& [key, value] : options) {
    bool known = key == "seed";
    std::string valid;
    for (auto& o : algo.options) {
      known = known || o.key == key;
      valid += (valid.empty() ? "" : ", ") + o.key;
    }
    if (!known)
      throw std::invalid_argument(
        "option " + key + " is not used by " + algo.name + " (its options: "
        + (valid.empty() ? "none" : valid) + ")"
        + (key == "compress" && algo.spawn_peer
             ? "; compressed gossip is choco_gossip (averaging compressed models does not converge)"
             : ""));
  }
}

void complete_options(const algorithm_info& algo, run_plan& plan) {
  plan.options.emplace("seed", "1");
  for (auto& o : algo.options)
    plan.options.emplace(o.key, o.fallback);
}

void check_plan(const algorithm_info& algo, const std::map<std::string, std::string>& options,
                size_t workers) {
  if (!algo.check)
    return;
  run_plan plan;
  plan.algorithm = algo.name;
  plan.options = options;
  complete_options(algo, plan);
  algo.check(plan, workers);
}

std::vector<std::string> cuda_algorithms() {
  std::vector<std::string> names;
  for (auto& a : algorithm_registry())
    if (a.runs_on_cuda)
      names.push_back(a.name);
  return names;
}

void check_backend(const algorithm_info& algo, const std::string& backend) {
  if (backend != "cuda" || algo.runs_on_cuda)
    return;
  std::string list;
  for (auto& a : cuda_algorithms())
    list += (list.empty() ? "" : ", ") + a;
  throw std::invalid_argument(algo.name + " does not run on --backend cuda yet (those that do: "
                              + list + ")");
}

protocol_actor spawn_algorithm(caf::actor_system& sys, const std::string& name, run_context ctx) {
  const auto& algo = find_algorithm(name);
  check_options(algo, ctx.plan.options);
  check_backend(algo, ctx.backend);
  complete_options(algo, ctx.plan);
  ctx.plan.algorithm = name;
  return algo.spawn(sys, std::move(ctx));
}

caf::actor spawn_algorithm_peer(caf::actor_system& sys, const std::string& name, run_context ctx,
                                int32_t rank, const caf::actor& coordinator) {
  const auto& algo = find_algorithm(name);
  if (!algo.spawn_peer && !algo.spawn_agent)
    throw std::invalid_argument(name + " keeps no actor beside its workers");
  check_options(algo, ctx.plan.options);
  complete_options(algo, ctx.plan);
  if (rank < 0 || static_cast<size_t>(rank) >= ctx.workers.size())
    throw std::invalid_argument("peer " + std::to_string(rank) + " of " + name + ": no such worker");
  const auto& hook = algo.spawn_peer ? algo.spawn_peer : algo.spawn_agent;
  return hook(sys, std::move(ctx), rank, coordinator);
}

} // namespace chorus
