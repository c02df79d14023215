// Reply deadlines for a protocol actor without a clock entry per request.
//
// A CAF 0.17 request with a timeout puts an entry in the actor clock and
// wakes the clock's thread (a condition variable) when it is set, and again
// when the reply cancels it. A sync round with 64 workers did that 64 times:
// 50-60 context switches per round, and about half of the protocol's CPU
// time (chorus train --workers 64 --model linear --dataset synthetic-lsq
// --batch 1: 670 ms of CPU and 100-137k context switches for 2000 rounds,
// against 360-410 ms and 3.3-4k with untimed requests, on a loaded 2-core
// machine, 3 interleaved runs each).
//
// So the protocols send their requests untimed and keep one deadline per
// worker here; a ticker actor beside the protocol answers one request per
// period (one clock entry per period, not per request), and each tick hands
// the workers whose deadline passed to the protocol, which treats them as
// it treated a request timeout. A deadline fires between `timeout` and
// `timeout + period` after the request; the period is a quarter of the
// timeout, between 1 ms and 250 ms.
#pragma once

#include <chrono>
#include <cstddef>
#include <vector>

#include <caf/all.hpp>

#include "messages/atoms.hpp"

namespace chorus {

/// Spawns the ticker for `owner`: it answers each (tick_atom, period in
/// microseconds) request with tick_atom after that period, and quits when
/// the owner does.
caf::actor spawn_ticker(caf::actor_system& sys, const caf::actor& owner);

/// How often deadlines of `timeout` are checked.
std::chrono::microseconds tick_period(std::chrono::milliseconds timeout);

/// One deadline per worker.
class reply_deadlines {
public:
  using time_point = caf::actor_clock::time_point;

  void resize(size_t n) { due_.assign(n, time_point::max()); }
  /// Worker i owes a reply by now + timeout.
  void expect(size_t i, time_point now, std::chrono::milliseconds timeout) {
    due_.at(i) = now + timeout;
  }
  /// Worker i owes nothing (it replied, failed, or was dropped).
  void clear(size_t i) {
    if (i < due_.size())
      due_[i] = time_point::max();
  }
  /// The workers whose deadline passed at `now`, each cleared.
  std::vector<size_t> expired(time_point now) {
    std::vector<size_t> out;
    for (size_t i = 0; i < due_.size(); ++i)
      if (due_[i] <= now) {
        due_[i] = time_point::max();
        out.push_back(i);
      }
    return out;
  }

private:
  std::vector<time_point> due_;
};

/// Ticks for `self` (whose state has `deadlines`, a reply_deadlines, and
/// `ticker`, a caf::actor) while its run is running: each tick calls
/// on_expired(i) for every worker whose deadline passed.
template <class Self, class OnExpired>
void watch_deadlines(Self self, std::chrono::microseconds period, OnExpired on_expired) {
  auto& st = self->state;
  if (!st.ticker)
    st.ticker = spawn_ticker(self->system(), caf::actor_cast<caf::actor>(self));
  self->request(st.ticker, caf::infinite, tick_atom_v, static_cast<int64_t>(period.count()))
    .then([self, period, on_expired](tick_atom) {
      auto& st = self->state;
      if (!st.tracker.running())
        return;
      for (auto i : st.deadlines.expired(self->clock().now()))
        on_expired(i);
      if (self->state.tracker.running())
        watch_deadlines(self, period, on_expired);
    });
}

} // namespace chorus
