#include "actors/remote_worker.hpp"

#include <utility>

#include <caf/all.hpp>

#include "actors/pending_calls.hpp"
#include "messages/errors.hpp"

namespace chorus {

namespace {

struct stand_in_state {
  worker_actor remote;
  std::string where;
  std::shared_ptr<link_counters> link;
  // Pending requests: how to fail each one.
  pending_calls<const caf::error&> pending;
};

using stand_in = worker_actor::stateful_pointer<stand_in_state>;

int64_t bytes_of(const weights& w) {
  return static_cast<int64_t>(w.values.wire_bytes());
}
int64_t bytes_of(const gradient& g) {
  return static_cast<int64_t>(g.values.wire_bytes());
}
int64_t bytes_of(const local_result& r) {
  return static_cast<int64_t>(r.values.wire_bytes());
}
int64_t bytes_of(const evaluation&) {
  return 0;
}
int64_t bytes_of(const ok_atom&) {
  return 0;
}

// Forwards one request; the reply (or the remote's error) goes back to the
// requester, unless the remote went down first and fail_all answered it.
template <class Reply, class... Ts>
caf::typed_response_promise<Reply> forward(stand_in self, int64_t sent, Ts... xs) {
  auto& st = self->state;
  auto promise = self->template make_response_promise<Reply>();
  auto id = st.pending.add([promise](const caf::error& err) mutable { promise.deliver(err); });
  st.link->sent += sent;
  self->request(st.remote, caf::infinite, std::move(xs)...)
    .then(
      [self, id, promise](Reply& reply) mutable {
        if (!self->state.pending.drop(id))
          return;
        self->state.link->received += bytes_of(reply);
        promise.deliver(std::move(reply));
      },
      [self, id, promise](caf::error& err) mutable {
        if (!self->state.pending.drop(id))
          return;
        // A dead connection can answer a request before our down handler
        // runs (CAF's own error for it); the caller hears the same
        // worker_lost naming the worker either way. The worker's own errors
        // (Chorus's category) pass through unchanged.
        if (err.category() != errc_category)
          err = make_error(errc::worker_lost,
                           self->state.where + " is gone (" + to_string(err) + ")");
        promise.deliver(std::move(err));
      });
  return promise;
}

worker_actor::behavior_type stand_in_behavior(stand_in self, worker_actor remote, std::string where,
                                              std::shared_ptr<link_counters> link) {
  auto& st = self->state;
  st.remote = remote;
  st.where = std::move(where);
  st.link = std::move(link);
  self->monitor(remote);
  self->set_down_handler([self](caf::down_msg& msg) {
    auto& st = self->state;
    if (msg.source != st.remote.address())
      return;
    auto err = make_error(errc::worker_lost, st.where + " is gone (" + to_string(msg.reason) + ")");
    st.pending.call_all(err);
    self->quit(err);
  });
  self->attach_functor([remote](const caf::error&) {
    caf::anon_send_exit(remote, caf::exit_reason::user_shutdown);
  });
  return {
    [self](compute_atom, weights& w) {
      auto bytes = bytes_of(w);
      return forward<gradient>(self, bytes, compute_atom_v, std::move(w));
    },
    [self](local_atom, weights& w, local_plan& plan) {
      auto bytes = bytes_of(w);
      return forward<local_result>(self, bytes, local_atom_v, std::move(w), std::move(plan));
    },
    [self](evaluate_atom, weights& w) {
      auto bytes = bytes_of(w);
      return forward<evaluation>(self, bytes, evaluate_atom_v, std::move(w));
    },
    [self](apply_atom, weights& w) {
      auto bytes = bytes_of(w);
      return forward<ok_atom>(self, bytes, apply_atom_v, std::move(w));
    },
    [self](fetch_atom) { return forward<weights>(self, 0, fetch_atom_v); },
  };
}

} // namespace

worker_actor spawn_remote_worker(caf::actor_system& sys, worker_actor remote, std::string where,
                                 std::shared_ptr<link_counters> link) {
  return sys.spawn(stand_in_behavior, std::move(remote), std::move(where), std::move(link));
}

} // namespace chorus
