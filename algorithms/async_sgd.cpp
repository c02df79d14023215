// Asynchronous delayed-gradient SGD through a parameter server
// (engines/async_server.hpp runs the loop; this file is the rule).
//
// Every worker loops pull -> compute -> push with no barrier: the server
// hands worker i the current weights (version t - tau by the time its
// gradient comes back), and applies each gradient the moment it arrives:
//   w <- Prox_{r, eta_tau}(w - eta_tau * g_i(w_{t - tau})),
//   eta_tau = eta_t              (default; eta_t = --lr-schedule at the
//                                 server's step t, eta without one)
//           = eta_t / (1 + tau)  (option staleness_lr = 1)
// tau, the staleness, is the number of updates applied since the worker's
// copy was taken; every update's tau is recorded (histogram and mean).
//
// Bounded staleness (option staleness_bound = s >= 0): a gradient older than
// s updates is DROPPED (counted as `dropped_stale`) and the worker is handed
// fresh weights at once; it is never made to wait. A slow worker therefore
// still contributes whenever it manages to be within s updates.
//
// A step is one applied update (one worker's mini-batch). With one worker
// and no delay tau is always 0 and this is plain SGD, step for step.
//
// With a robust aggregator (options aggregator, pre, f, window): a WINDOW of
// arrivals holds one gradient per worker: a worker whose gradient is in the
// open window waits (is handed no new weights) until the window closes, so
// a fast Byzantine worker fills one slot, not the window, and fast honest
// workers do not starve slow ones. Once K = window distinct workers are in
// (default n - f: the f slowest never hold a window back),
// w <- Prox(w - eta_tau agg(window)) with tau the staleness of the arrival
// that closed it, the window empties and its workers get the new weights.
// One step uses K gradients, each once; --steps counts windows. If workers
// die and every live one waits on an unfinished window, it closes with what
// it holds (the aggregator refuses if that is too few for f). A worker's NaN/Inf gradient
// takes its slot as invalid (the aggregator sets it aside, counted as one of
// the f) instead of failing the run.
//
// Compression (--compress SPEC --error-feedback ef|ef21|none): each pushed
// gradient is C(g_i) (compressed_link.hpp), decoded on arrival:
//   w <- Prox(w - eta_tau D(C(g_i + e_i))),  e_i <- g_i + e_i - D(C(g_i + e_i))  (ef)
// The broadcast stays uncompressed (each worker gets its own version of w).
#include <algorithm>
#include <map>
#include <memory>
#include <stdexcept>

#include "algorithms/compressed_link.hpp"
#include "algorithms/protocols.hpp"
#include "algorithms/registry.hpp"
#include "algorithms/robust.hpp"
#include "engines/async_server.hpp"

namespace chorus {

namespace {

async_rule async_sgd_rule(const run_plan& plan) {
  const auto bound = static_cast<int64_t>(plan.number("staleness_bound"));  // < 0: none
  const bool staleness_lr = plan.number("staleness_lr") != 0;
  async_rule rule;
  if (bound >= 0) {
    rule.accept = [bound](int64_t tau) { return tau <= bound; };
    rule.note = "bounded staleness " + std::to_string(bound)
                + ": older gradients are dropped, workers never wait";
  }
  rule.apply = [plan, staleness_lr](backend& be, cview w, cview g, int64_t tau, int64_t step,
                                     view out) {
    const float lr = plan.lr_at(step);  // t: the server's step (updates applied)
    const regularizer& reg = plan.reg;
    const float eta = staleness_lr ? lr / (1.0f + static_cast<float>(tau)) : lr;
    // w - eta g written straight into the new block (no copy pass), then
    // the prox in place (a no-op without a regularizer).
    be.mean_axpy(w, {g}, -eta, out);
    be.prox(reg, eta, out);
  };
  return rule;
}

} // namespace

namespace {

// The window of arrivals the robust aggregator runs on (see the top).
struct arrival_window {
  size_t k;
  std::map<int32_t, buffer> slots;
  int64_t closed = 0;
};

void add_robust_window(async_rule& rule, const run_plan& plan, size_t n) {
  const double window = plan.number("window");
  if (plan.text("aggregator").empty() || plan.text("aggregator") == "none") {
    if (window != 0)
      throw std::invalid_argument("--window needs --aggregator");
    make_robust(plan, n);  // refuses --pre / --f alone
    return;
  }
  const double f = plan.number("f");
  if (!(window >= 0) || window != static_cast<double>(static_cast<int64_t>(window)))
    throw std::invalid_argument("--window must be a whole number >= 0");
  size_t k = window > 0 ? static_cast<size_t>(window)
                        : static_cast<size_t>(std::max(1.0, static_cast<double>(n) - f));
  if (k > n)
    throw std::invalid_argument("--window " + std::to_string(k) + " is more than the "
                                + std::to_string(n) + " workers (a window holds one gradient per worker)");
  auto robust = make_robust(plan, k);
  auto win = std::make_shared<arrival_window>(arrival_window{k, {}, 0});
  // Closes the window: the aggregate of what it holds (empty: nothing).
  auto close = [robust, win](size_t dim) {
    if (win->slots.empty())
      return buffer{};
    std::vector<buffer> xs;
    std::vector<int32_t> senders;
    for (auto& [s, x] : win->slots) {
      senders.push_back(s);
      xs.push_back(x);
    }
    win->slots.clear();
    return (*robust)(xs, senders, ++win->closed, dim);
  };
  rule.gather = [win, close](int32_t sender, const buffer& g, size_t dim) {
    win->slots[sender] = g;
    return win->slots.size() < win->k ? buffer{} : close(dim);
  };
  rule.flush = close;
  rule.reject_non_finite = true;
  rule.metrics = [robust, win] {
    auto m = robust->metrics();
    m["windows"] = static_cast<double>(win->closed);
    return m;
  };
  rule.take_log = [robust] { return robust->take_log(); };
  rule.note = (rule.note.empty() ? "" : rule.note + "; ") + "robust window: "
              + robust->rule().name() + " over " + std::to_string(k)
              + " distinct workers' latest gradients per update";
}

} // namespace

void check_async_sgd(const run_plan& plan, size_t workers) {
  async_rule rule;
  add_robust_window(rule, plan, workers);
}

protocol_actor spawn_async_sgd(caf::actor_system& sys, run_context ctx) {
  complete_options(find_algorithm("async_sgd"), ctx.plan);
  auto rule = async_sgd_rule(ctx.plan);
  add_robust_window(rule, ctx.plan, ctx.workers.size());
  // --compress: each pushed gradient crosses the uplink as C(g) (with the
  // worker's error memory for ef); the server decodes it on arrival.
  install_uplink_compression(sys, ctx, rule, read_uplink_compression(ctx.plan));
  return spawn_async_server(sys, std::move(ctx), std::move(rule));
}

} // namespace chorus
