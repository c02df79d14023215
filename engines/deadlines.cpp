#include "engines/deadlines.hpp"

#include <algorithm>
#include <utility>

namespace chorus {

namespace {

struct ticker_state {
  std::vector<caf::response_promise> waiting;
};

caf::behavior ticker(caf::stateful_actor<ticker_state>* self, caf::actor owner) {
  self->monitor(owner);
  self->set_down_handler([self](caf::down_msg&) {
    self->state.waiting.clear();
    self->quit();
  });
  return {
    [self](tick_atom, int64_t period_us) -> caf::result<tick_atom> {
      auto promise = self->make_response_promise();
      self->state.waiting.push_back(promise);
      self->delayed_send(self, std::chrono::microseconds(std::max<int64_t>(period_us, 0)),
                         tick_atom_v);
      return promise;
    },
    [self](tick_atom) {
      auto waiting = std::move(self->state.waiting);
      self->state.waiting.clear();
      for (auto& promise : waiting)
        promise.deliver(tick_atom_v);
    },
  };
}

} // namespace

caf::actor spawn_ticker(caf::actor_system& sys, const caf::actor& owner) {
  return sys.spawn(ticker, owner);
}

std::chrono::microseconds tick_period(std::chrono::milliseconds timeout) {
  auto quarter = std::chrono::duration_cast<std::chrono::microseconds>(timeout) / 4;
  return std::clamp(quarter, std::chrono::microseconds(1000), std::chrono::microseconds(250000));
}

} // namespace chorus
