// The worker actor. Each handler validates its input, computes, and replies
// with a fresh buffer (the only allocation per step); any failure becomes a
// caf::error for the protocol to handle instead of killing the actor.
#include "actors/worker.hpp"

#include <algorithm>
#include <chrono>
#include <new>
#include <numeric>
#include <optional>
#include <random>

#include <time.h>

#include <caf/all.hpp>

namespace chorus {

namespace {

// CPU time used by the calling thread.
std::chrono::nanoseconds thread_cpu_time() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec);
}

struct worker_state {
  static inline const char* name = "chorus.worker";

  worker_config cfg;
  std::shared_ptr<model> net;  // built and validated by spawn_worker
  std::shared_ptr<backend> be;  // where net's w and g live (eigen: host, cuda: device)
  std::mt19937_64 rng;
  std::vector<int64_t> order;  // the current pass over the shard
  size_t cursor = 0;           // next position in `order`
  weights replica;
  // The heavy-ball buffer m of local steps with momentum (local_plan::
  // momentum > 0), in the backend's memory; kept across requests, empty
  // until the first such request and after a non-finite local model.
  mutable_buffer momentum;

  // The next mini-batch, as a pointer into `order` (refilled between passes,
  // so a batch never straddles two permutations: it may be short at the end
  // of a pass only if the shard is smaller than a batch).
  std::pair<const int64_t*, int64_t> next_batch() {
    if (drawn) {
      auto b = *drawn;
      drawn.reset();
      return b;
    }
    const auto batch = static_cast<size_t>(cfg.batch);
    if (cursor + batch > order.size()) {
      if (cfg.order == sampling::shuffle)
        std::shuffle(order.begin(), order.end(), rng);
      cursor = 0;
    }
    auto n = std::min(batch, order.size() - cursor);
    const int64_t* first = order.data() + cursor;
    cursor += n;
    return {first, static_cast<int64_t>(n)};
  }

  // A batch drawn ahead by prefetch_next, the next one next_batch returns.
  std::optional<std::pair<const int64_t*, int64_t>> drawn;

  // Draws the next batch now and lets the model gather its samples
  // (model::prefetch): called after a gradient's reply has left, so the
  // gather overlaps the requester's combine instead of delaying the next
  // step. The batches drawn, and their order, are the same as without it.
  void prefetch_next() {
    if (drawn || order.empty())
      return;
    drawn = next_batch();
    net->prefetch(*cfg.data, drawn->first, drawn->second);
  }

  caf::error check_weights(const weights& w) const {
    if (static_cast<int64_t>(w.values.size()) != net->num_params())
      return make_error(errc::dimension_mismatch,
                        "worker " + std::to_string(cfg.rank) + ": got "
                          + std::to_string(w.values.size()) + " weights, model "
                          + net->name() + " has " + std::to_string(net->num_params()));
    return caf::none;
  }

  // When the worker, were it one serial process, would be free for its next
  // request: the end of the last reply it holds back. Only workers with
  // injected delays hold replies back.
  caf::actor_clock::time_point free_at{};
  bool crash_due(int64_t step) const {
    return cfg.inject.crash_at_step >= 0 && step >= cfg.inject.crash_at_step;
  }

  caf::error non_finite(const char* what, int64_t step) const {
    return make_error(errc::non_finite, "worker " + std::to_string(cfg.rank) + ": " + what
                                          + " at step " + std::to_string(step)
                                          + " contains NaN or Inf");
  }
};

using worker_pointer = worker_actor::stateful_pointer<worker_state>;

template <class F>
auto guarded(worker_pointer self, F&& f) -> decltype(f()) {
  const auto& st = self->state;
  try {
    return f();
  } catch (const std::bad_alloc&) {
    // Said in full: "std::bad_alloc" alone names neither the model nor the size.
    return make_error(errc::compute_failed,
                      "worker " + std::to_string(st.cfg.rank) + ": out of memory computing "
                        + st.net->name() + " (" + std::to_string(st.net->num_params())
                        + " parameters) on batches of " + std::to_string(st.cfg.batch)
                        + "; try a smaller model or --batch");
  } catch (const std::exception& e) {
    return make_error(errc::compute_failed, "worker " + std::to_string(st.cfg.rank) + ": " + e.what());
  }
}

// An injected crash: the worker terminates without answering, as a process
// that died would. Whoever monitors it gets a down message with the reason.
template <class Reply>
caf::result<Reply> crash(worker_pointer self, int64_t step) {
  self->quit(make_error(errc::worker_lost, "worker " + std::to_string(self->state.cfg.rank)
                                             + ": injected crash at step " + std::to_string(step)));
  return caf::delegated<Reply>{};
}

// Answers the current request with `value` when a serial worker with the
// injected delays would: its work started when it was free (at `arrived`, or
// at the end of the reply it held back before), took the wall time since
// `arrived`, and then `extra` (the injection's, for compute and local steps).
// The actor clock delivers the reply then, as the response the requester
// waits for; the worker itself goes on at once, so a huge injected wait
// never keeps it (or the process) from ending. Without injected delays the
// reply leaves now.
//
// An injected crash takes effect when its request is taken, so a reply held
// back before may reach the requester after the worker's down message.
template <class T>
caf::result<T> reply(worker_pointer self, caf::actor_clock::time_point arrived,
                     std::chrono::microseconds extra, T value) {
  auto& st = self->state;
  if (!st.cfg.inject.delays())
    return value;
  auto& clock = self->system().clock();
  auto now = clock.now();
  // free_at <= now + max_injected_wait, so this sum stays far from the
  // clock's range (292 years); a reply is never held back past the cap.
  auto at = std::max(arrived, st.free_at) + (now - arrived) + extra;
  at = std::min(at, now + max_injected_wait);
  st.free_at = at;
  // What promise.deliver(value) would send now, sent at `at`.
  auto promise = self->make_response_promise();
  auto stages = promise.stages();
  caf::strong_actor_ptr next;
  caf::mailbox_element_ptr message;
  if (stages.empty()) {
    next = promise.source();
    message = caf::make_mailbox_element(self->ctrl(), promise.id().response_id(), {},
                                      std::move(value));
  } else {
    next = std::move(stages.back());
    stages.pop_back();
    message = caf::make_mailbox_element(promise.source(), promise.id(), std::move(stages),
                                      std::move(value));
  }
  if (next)
    clock.schedule_message(at, std::move(next), std::move(message));
  return caf::delegated<T>{};
}

// The clocks a reply's injected delay needs: when the request arrived and
// how long the compute took (thread CPU time). Read only when the worker
// has delays to inject: CLOCK_THREAD_CPUTIME_ID is a system call, and the
// two reads per request were 20% of a no-op sync round at 64 workers.
caf::actor_clock::time_point arrival(worker_pointer self) {
  return self->state.cfg.inject.delays() ? self->system().clock().now()
                                         : caf::actor_clock::time_point{};
}

std::chrono::nanoseconds compute_started(const worker_state& st) {
  return st.cfg.inject.delays() ? thread_cpu_time() : std::chrono::nanoseconds{0};
}

std::chrono::microseconds injected_extra(worker_state& st, std::chrono::nanoseconds started) {
  if (!st.cfg.inject.delays())
    return std::chrono::microseconds{0};
  return st.cfg.inject.extra_time(thread_cpu_time() - started, st.rng);
}

worker_actor::behavior_type worker_behavior(worker_pointer self, worker_config cfg,
                                            std::shared_ptr<model> prebuilt,
                                            std::shared_ptr<backend> prebuilt_backend) {
  auto& st = self->state;
  st.cfg = std::move(cfg);
  st.net = std::move(prebuilt);
  st.be = std::move(prebuilt_backend);
  st.rng.seed(st.cfg.seed);
  st.order = st.cfg.shard;
  if (st.cfg.order == sampling::shuffle)
    std::shuffle(st.order.begin(), st.order.end(), st.rng);
  return {
    [=](compute_atom, weights& w) -> caf::result<gradient> {
      auto& st = self->state;
      auto arrived = arrival(self);
      if (st.crash_due(w.step))
        return crash<gradient>(self, w.step);
      if (auto err = st.check_weights(w))
        return err;
      return guarded(self, [&]() -> caf::result<gradient> {
        auto started = compute_started(st);
        auto [idx, n] = st.next_batch();
        // Same block when the weights already live where the model does.
        auto wv = st.be->adopt(w.values);
        auto g = st.be->allocate(static_cast<size_t>(st.net->num_params()));
        double loss = st.net->loss_grad(wv.data(), *st.cfg.data, idx, n, g.data());
        auto extra = injected_extra(st, started);
        if (!std::isfinite(loss) || !st.be->all_finite(g.span()))
          return st.non_finite("gradient", w.step);
        gradient out{st.cfg.rank, w.step, std::move(g).freeze(), static_cast<float>(loss),
                     static_cast<int32_t>(n)};
        if (st.cfg.inject.delays())
          return reply(self, arrived, extra, std::move(out));
        // Reply now, then gather the next batch while the requester works.
        auto promise = self->make_response_promise<gradient>();
        promise.deliver(std::move(out));
        st.prefetch_next();
        return caf::delegated<gradient>{};
      });
    },
    [=](local_atom, weights& w, local_plan plan) -> caf::result<local_result> {
      auto& st = self->state;
      auto arrived = arrival(self);
      if (st.crash_due(w.step))
        return crash<local_result>(self, w.step);
      if (auto err = st.check_weights(w))
        return err;
      if (plan.steps < 0 || !(plan.lr >= 0) || !std::isfinite(plan.lr))
        return make_error(errc::bad_request, "local steps need steps >= 0 and a finite lr >= 0");
      if (!plan.lrs.empty()
          && (plan.lrs.size() != static_cast<size_t>(plan.steps)
              || !std::all_of(plan.lrs.begin(), plan.lrs.end(),
                              [](float x) { return x >= 0 && std::isfinite(x); })))
        return make_error(errc::bad_request, "local steps: lrs needs one finite lr >= 0 per step");
      if (!(plan.momentum >= 0 && plan.momentum < 1))
        return make_error(errc::bad_request, "local steps: momentum needs 0 <= beta < 1");
      return guarded(self, [&]() -> caf::result<local_result> {
        auto started = compute_started(st);
        auto wv = st.be->adopt(w.values);
        auto x = st.be->allocate(wv.size());
        st.be->copy(wv, x.span());
        auto g = st.be->allocate(x.size());
        double loss_sum = 0;
        int32_t samples = 0;
        for (int32_t k = 0; k < plan.steps; ++k) {
          auto [idx, n] = st.next_batch();
          loss_sum += st.net->loss_grad(x.data(), *st.cfg.data, idx, n, g.data());
          samples += static_cast<int32_t>(n);
          if (plan.momentum > 0) {
            // m <- beta m + g;  x <- Prox(x - lr m)  (Polyak's heavy ball).
            // m = 0 before the worker's first such step: then m <- g, a copy
            // into a fresh block (whose contents never matter).
            if (st.momentum.size() != x.size()) {
              st.momentum = st.be->allocate(x.size());
              st.be->copy(g.span(), st.momentum.span());
            } else {
              st.be->scale(plan.momentum, st.momentum.span());
              st.be->axpy(1.0f, g.span(), st.momentum.span());
            }
            st.be->prox_step(plan.reg, plan.lr_of(k), st.momentum.span(), x.span());
          } else {
            st.be->prox_step(plan.reg, plan.lr_of(k), g.span(), x.span());
          }
        }
        auto extra = injected_extra(st, started);
        if (!std::isfinite(loss_sum) || !st.be->all_finite(x.span())) {
          st.momentum = mutable_buffer();  // start over from m = 0
          return st.non_finite("local model", w.step);
        }
        float mean_loss = plan.steps > 0 ? static_cast<float>(loss_sum / plan.steps) : 0.0f;
        return reply(self, arrived, extra,
                     local_result{st.cfg.rank, w.step, std::move(x).freeze(), mean_loss, samples});
      });
    },
    [=](evaluate_atom, weights& w) -> caf::result<evaluation> {
      auto& st = self->state;
      auto arrived = arrival(self);
      if (auto err = st.check_weights(w))
        return err;
      return guarded(self, [&]() -> caf::result<evaluation> {
        auto wv = st.be->adopt(w.values);
        auto r = st.net->evaluate(wv.data(), *st.cfg.data, st.cfg.shard.data(),
                                  static_cast<int64_t>(st.cfg.shard.size()));
        return reply(self, arrived, {}, evaluation{st.cfg.rank, w.step, r.loss, r.accuracy, r.samples});
      });
    },
    [=](apply_atom, weights& w) -> caf::result<ok_atom> {
      auto& st = self->state;
      auto arrived = arrival(self);
      if (auto err = st.check_weights(w))
        return err;
      st.replica = std::move(w);
      return reply(self, arrived, {}, ok_atom_v);
    },
    [=](fetch_atom) -> caf::result<weights> {
      auto arrived = arrival(self);
      return reply(self, arrived, {}, self->state.replica);
    },
  };
}

} // namespace

worker_actor spawn_worker(caf::actor_system& sys, worker_config cfg) {
  if (!cfg.data || cfg.data->size() == 0)
    throw std::invalid_argument("worker " + std::to_string(cfg.rank) + ": empty dataset");
  if (cfg.batch <= 0)
    throw std::invalid_argument("worker " + std::to_string(cfg.rank) + ": batch must be > 0");
  if (cfg.shard.empty()) {
    cfg.shard.resize(static_cast<size_t>(cfg.data->size()));
    std::iota(cfg.shard.begin(), cfg.shard.end(), int64_t{0});
  }
  for (auto i : cfg.shard)
    if (i < 0 || i >= cfg.data->size())
      throw std::invalid_argument("worker " + std::to_string(cfg.rank) + ": shard index "
                                  + std::to_string(i) + " outside the dataset");
  // Build once here so a bad model spec, backend or device is reported to
  // the caller.
  std::shared_ptr<backend> be = make_backend(cfg.backend, cfg.device);
  std::shared_ptr<model> net =
    be->kind() == memory_kind::device
      ? make_device_model(cfg.model, cfg.data->num_features, cfg.data->num_classes, cfg.device)
      : make_model(cfg.model, cfg.data->num_features, cfg.data->num_classes);
  if (cfg.inject.active() || be->kind() == memory_kind::device)
    return sys.spawn<caf::detached>(worker_behavior, std::move(cfg), std::move(net),
                                    std::move(be));
  return sys.spawn(worker_behavior, std::move(cfg), std::move(net), std::move(be));
}

} // namespace chorus
