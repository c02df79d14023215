// NCCL across processes: the stage beside each worker and the coordinator's
// reducer (see nccl_nodes.hpp for the protocol).
#include "actors/nccl_nodes.hpp"

#include <memory>
#include <string>

#include <caf/all.hpp>

namespace chorus {

namespace {

struct stage_state {
  static inline const char* name = "chorus.nccl_stage";
  worker_actor worker;
  nccl_rank_actor rank;
  bool reply_mean = false;
  std::chrono::milliseconds timeout{0};
};

using stage_pointer = worker_actor::stateful_pointer<stage_state>;

// Asks the worker with `request` (a compute or local request), all-reduces
// the `values` of its reply through the rank, and delivers the reply with
// the mean (rank 0) or with no values (the others). Reply is gradient or
// local_result: both carry values, encoded, loss and samples.
template <class Reply, class... Ts>
caf::result<Reply> through_rank(stage_pointer self, Ts... request) {
  auto rp = self->make_response_promise<Reply>();
  self->request(self->state.worker, caf::infinite, std::move(request)...)
    .then(
      [self, rp](Reply& r) mutable {
        auto& st = self->state;
        if (r.encoded) {
          // A compressed payload's bytes have no mean: refused before a run
          // (check_nccl_across_processes), said here should one arrive.
          rp.deliver(make_error(errc::bad_request,
                                "an encoded payload cannot be all-reduced (--compress needs "
                                "--allreduce none)"));
          return;
        }
        buffer values = std::move(r.values);
        self->request(st.rank, 2 * st.timeout, all_reduce_atom_v, std::move(values))
          .then(
            [self, rp, r](buffer& mean) mutable {
              r.values = self->state.reply_mean ? std::move(mean) : buffer{};
              rp.deliver(std::move(r));
            },
            [rp](caf::error& err) mutable { rp.deliver(std::move(err)); });
      },
      [rp](caf::error& err) mutable { rp.deliver(std::move(err)); });
  return rp;
}

worker_actor::behavior_type stage_behavior(stage_pointer self, worker_actor worker,
                                           nccl_rank_actor rank, bool reply_mean,
                                           std::chrono::milliseconds timeout) {
  auto& st = self->state;
  st.worker = std::move(worker);
  st.rank = std::move(rank);
  st.reply_mean = reply_mean;
  st.timeout = timeout;
  self->link_to(st.worker);
  return {
    [self](compute_atom, weights& w) -> caf::result<gradient> {
      return through_rank<gradient>(self, compute_atom_v, std::move(w));
    },
    [self](local_atom, weights& w, local_plan& p) -> caf::result<local_result> {
      return through_rank<local_result>(self, local_atom_v, std::move(w), std::move(p));
    },
    [self](evaluate_atom, weights& w) {
      return self->delegate(self->state.worker, evaluate_atom_v, std::move(w));
    },
    [self](apply_atom, weights& w) {
      return self->delegate(self->state.worker, apply_atom_v, std::move(w));
    },
    [self](fetch_atom) { return self->delegate(self->state.worker, fetch_atom_v); },
  };
}

struct reducer_state {
  static inline const char* name = "chorus.nodes_reducer";
  std::vector<nccl_rank_actor> ranks;
  std::chrono::milliseconds timeout{0};
  size_t joined = 0;
  bool asked = false;  // the ranks were asked whether they joined
  caf::error broken;   // the first refusal
  std::vector<caf::typed_response_promise<ok_atom>> waiting;

  void settle() {
    if (!broken && joined < ranks.size())
      return;
    for (auto& p : waiting)
      if (broken)
        p.deliver(broken);
      else
        p.deliver(ok_atom_v);
    waiting.clear();
  }
};

using reducer_pointer = reducer_actor::stateful_pointer<reducer_state>;

reducer_actor::behavior_type reducer_behavior(reducer_pointer self,
                                              std::vector<nccl_rank_actor> ranks,
                                              std::chrono::milliseconds timeout) {
  self->state.ranks = std::move(ranks);
  self->state.timeout = timeout;
  return {
    [self](ready_atom) -> caf::result<ok_atom> {
      auto& st = self->state;
      if (st.broken)
        return st.broken;
      if (st.ranks.empty())
        return make_error(errc::bad_request, "an NCCL all-reduce over no ranks");
      if (st.joined == st.ranks.size())
        return ok_atom_v;
      auto promise = self->make_response_promise<ok_atom>();
      st.waiting.push_back(promise);
      if (!st.asked) {
        st.asked = true;
        for (size_t i = 0; i < st.ranks.size(); ++i)
          self->request(st.ranks[i], 2 * st.timeout, ready_atom_v)
            .then(
              [self](ok_atom) {
                ++self->state.joined;
                self->state.settle();
              },
              [self, i](caf::error& err) {
                auto& st = self->state;
                if (!st.broken)
                  st.broken = make_error(errc::compute_failed, "NCCL rank " + std::to_string(i)
                                                                 + " did not join: " + describe(err));
                st.settle();
              });
      }
      return promise;
    },
    [self](reduce_atom, std::vector<buffer>& xs) -> caf::result<buffer> {
      size_t found = 0;
      buffer mean;
      for (auto& x : xs)
        if (!x.empty()) {
          ++found;
          mean = std::move(x);
        }
      if (found != 1)
        return make_error(errc::bad_request,
                          "the nodes' all-reduce sent " + std::to_string(found) + " of "
                            + std::to_string(xs.size())
                            + " replies with values; exactly one (rank 0's mean) was expected"
                            + (found == 0 ? " (was worker 0 lost?)" : ""));
      return mean;
    },
  };
}

} // namespace

worker_actor spawn_all_reduce_stage(caf::actor_system& sys, worker_actor worker,
                                    nccl_rank_actor rank, bool reply_mean,
                                    std::chrono::milliseconds timeout) {
  return sys.spawn(stage_behavior, std::move(worker), std::move(rank), reply_mean, timeout);
}

void distribute_nccl_id(const std::vector<nccl_rank_actor>& ranks, const nccl_unique_id& id) {
  for (auto& r : ranks)
    caf::anon_send(r, join_atom_v, id);
}

reducer_actor spawn_nodes_reducer(caf::actor_system& sys, std::vector<nccl_rank_actor> ranks,
                                  std::chrono::milliseconds timeout) {
  return sys.spawn(reducer_behavior, std::move(ranks), timeout);
}

} // namespace chorus
