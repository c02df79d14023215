// One run's actor graph (see run_graph.hpp).
#include "engines/run_graph.hpp"

#include <algorithm>
#include <chrono>

#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>

namespace chorus {

run_graph::run_graph(caf::actor_system& sys, monitor_config mc) : sys_(sys) {
  ctx_.monitor = keep(spawn_monitor(sys_, std::move(mc)));
}

run_graph::~run_graph() {
  for (auto& a : members_)
    caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
}

worker_actor run_graph::add_worker(const worker_config& wc) {
  auto worker = keep(spawn_worker(sys_, wc));
  if (wc.inject.crash_at_step >= 0) {
    if (!watch_)
      watch_ = std::make_unique<caf::scoped_actor>(sys_);
    (*watch_)->monitor(worker);
    crashes_.push_back({ctx_.workers.size(), worker.address(), wc.inject.crash_at_step});
  }
  ctx_.workers.push_back(worker);
  ctx_.worker_devices.push_back(wc.backend == "cuda" ? wc.device : -1);
  return worker;
}

worker_actor run_graph::set_evaluator(const worker_config& wc) {
  ctx_.evaluator = keep(spawn_worker(sys_, wc));
  return ctx_.evaluator;
}

worker_actor run_graph::add_worker(worker_actor w) {
  ctx_.workers.push_back(keep(w));
  ctx_.worker_devices.push_back(-1);
  return w;
}

worker_actor run_graph::set_evaluator(worker_actor w) {
  ctx_.evaluator = keep(std::move(w));
  return ctx_.evaluator;
}

void run_graph::log(std::string line) {
  caf::anon_send(ctx_.monitor, log_atom_v, std::move(line));
}

caf::expected<run_summary> run_graph::run(protocol_actor protocol, caf::duration timeout) {
  keep(protocol);
  caf::expected<run_summary> out{caf::error{}};
  caf::scoped_actor self{sys_};
  auto pending = self->request(protocol, timeout, run_atom_v);
  {
    // run_atom is in the protocol's mailbox now, so a stop sent from here on
    // reaches it after the run has begun.
    std::lock_guard<std::mutex> guard(stop_mutex_);
    running_ = protocol;
    if (stop_pending_) {
      stop_pending_ = false;
      caf::anon_send(protocol, stop_atom_v);
    }
  }
  pending.receive([&](run_summary& s) { out = std::move(s); },
                  [&](caf::error& err) { out = std::move(err); });
  {
    std::lock_guard<std::mutex> guard(stop_mutex_);
    running_ = protocol_actor{};
  }
  if (out) {
    auto not_fired = check_crashes();
    for (auto& c : not_fired)
      log("warning: the injected crash of worker " + std::to_string(c.index) + " at protocol step "
          + std::to_string(c.step) + " never fired (the run ended at step "
          + std::to_string(out->steps) + ")");
    if (!not_fired.empty())
      out->extra["injections_not_fired"] = static_cast<double>(not_fired.size());
  }
  // Every metrics row on disk before the caller reads or closes the files.
  self->request(ctx_.monitor, std::chrono::seconds(30), flush_atom_v)
    .receive([](ok_atom) {}, [](caf::error&) {});
  return out;
}

void run_graph::stop() {
  std::lock_guard<std::mutex> guard(stop_mutex_);
  if (running_)
    caf::anon_send(running_, stop_atom_v);
  else
    stop_pending_ = true;
}

// Takes the injected crashes that fired (their worker's down message, with
// the worker_lost reason the crash quits with) off the list; returns the rest.
std::vector<run_graph::pending_crash> run_graph::check_crashes() {
  if (!watch_)
    return {};
  auto& self = *watch_;
  for (bool more = true; more;)
    self->receive(
      [&](caf::down_msg& dm) {
        if (dm.reason.category() != errc_category
            || dm.reason.code() != static_cast<uint8_t>(errc::worker_lost))
          return;
        crashes_.erase(std::remove_if(crashes_.begin(), crashes_.end(),
                                      [&](auto& c) { return c.addr == dm.source; }),
                       crashes_.end());
      },
      caf::after(std::chrono::seconds(0)) >> [&] { more = false; });
  return crashes_;
}

caf::expected<run_summary> run_graph::run(const protocol_factory& spawn, caf::duration timeout) {
  return run(spawn(sys_, ctx_), timeout);
}

} // namespace chorus
