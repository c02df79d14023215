// engines/protocol.hpp: how an engine loses a worker whose request bounced.
//
// CAF closes an ending actor's mailbox before it sends its down messages,
// so a request that reaches a worker in that gap comes back as
// request_receiver_down BEFORE the down message that says why the worker
// ended. Across processes this is the stand-in of a killed node's worker
// (actors/remote_worker.hpp), whose reason names the node; under load the
// bounce won the race once and the log said only "request_receiver_down".
// Here a worker makes that order certain: it answers with the bounce and
// ends with its reason in the same step, and every engine family must still
// log the worker's own reason (and go on with the others).
#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "algorithms/registry.hpp"
#include "tests/algorithms/harness.hpp"
#include "tests/algorithms/scripted.hpp"

using namespace chorus;

namespace {

const std::string why = "worker 1 on node 1 (test:1 at 127.0.0.1:1) is gone";

// A worker whose node died: it answers its first request the way CAF
// bounces one to an ended actor, and ends with the reason a stand-in gives.
// (`reason` is a spawn argument: CAF 0.17 dereferences a null argument
// tuple when a function actor is spawned with none.)
worker_actor::behavior_type bouncing_worker(worker_actor::pointer self, std::string reason) {
  auto bounce = [self, reason] {
    self->quit(make_error(errc::worker_lost, reason));
    return caf::make_error(caf::sec::request_receiver_down);
  };
  return {
    [bounce](compute_atom, weights&) -> caf::result<gradient> { return bounce(); },
    [bounce](local_atom, weights&, local_plan&) -> caf::result<local_result> { return bounce(); },
    [bounce](evaluate_atom, weights&) -> caf::result<evaluation> { return bounce(); },
    [bounce](apply_atom, weights&) -> caf::result<ok_atom> { return bounce(); },
    [bounce](fetch_atom) -> caf::result<weights> { return bounce(); },
  };
}

// A worker that answers with zeros, but holds its replies until `gate`
// has ended: the run cannot finish (an asynchronous one would, on the
// others' replies alone) before the bouncing worker is gone.
worker_actor::behavior_type gated_worker(worker_actor::pointer self, caf::actor gate, int32_t rank) {
  struct held {
    bool open = false;
    std::vector<std::function<void()>> replies;
  };
  auto h = std::make_shared<held>();
  self->monitor(gate);
  self->set_down_handler([h](caf::down_msg&) {
    h->open = true;
    for (auto& reply : h->replies)
      reply();
    h->replies.clear();
  });
  auto answer = [self, h](auto reply) -> caf::result<decltype(reply)> {
    if (h->open)
      return reply;
    auto promise = self->make_response_promise<decltype(reply)>();
    h->replies.push_back([promise, reply]() mutable { promise.deliver(reply); });
    return promise;
  };
  auto zeros = [](const weights& w) { return buffer::from(std::vector<float>(w.values.size(), 0.0f)); };
  return {
    [=](compute_atom, weights& w) { return answer(gradient{rank, w.step, zeros(w), 0.0f, 1}); },
    [=](local_atom, weights& w, local_plan&) {
      return answer(local_result{rank, w.step, w.values, 0.0f, 1});
    },
    [=](evaluate_atom, weights& w) { return evaluation{rank, w.step, 0.5, 0.5, 1}; },
    [](apply_atom, weights&) { return ok_atom_v; },
    [](fetch_atom) { return weights{}; },
  };
}

class BouncedRequest : public ::testing::TestWithParam<const char*> {};

TEST_P(BouncedRequest, TheWorkerIsLostWithItsOwnReason) {
  test::graph g;
  auto rec = std::make_shared<test::recording>();
  g.ctx.monitor = g.guard.add(g.ts.sys.spawn(test::recorder, rec));
  auto bouncing = g.guard.add(g.ts.sys.spawn(bouncing_worker, why));
  auto gate = caf::actor_cast<caf::actor>(bouncing);
  g.ctx.workers.push_back(g.guard.add(g.ts.sys.spawn(gated_worker, gate, int32_t{0})));
  g.ctx.workers.push_back(bouncing);
  g.ctx.workers.push_back(g.guard.add(g.ts.sys.spawn(gated_worker, gate, int32_t{2})));
  g.ctx.evaluator = g.guard.add(g.ts.sys.spawn(gated_worker, gate, int32_t{-1}));
  g.ctx.shard_sizes.assign(3, 1);
  g.ctx.plan.steps = 40;
  g.ctx.plan.eval_every = 20;
  g.ctx.plan.lr = 0.1f;
  g.ctx.initial = buffer::from(std::vector<float>(4, 0.0f));
  auto s = g.run(GetParam());
  ASSERT_TRUE(s) << describe(s.error());
  EXPECT_EQ(s->workers_lost, 1);
  caf::scoped_actor self{g.ts.sys};
  self->request(g.ctx.monitor, std::chrono::seconds(10), flush_atom_v)
    .receive([](ok_atom) {}, [](caf::error& e) { ADD_FAILURE() << describe(e); });
  std::string lost;
  for (auto& line : rec->lines)
    if (line.find("worker 1 lost") != std::string::npos)
      lost += line + "\n";
  EXPECT_NE(lost.find(why), std::string::npos) << "the log said: " << lost;
  EXPECT_EQ(lost.find("request_receiver_down"), std::string::npos) << lost;
}

// One engine of each family that asks workers and monitors them: rounds
// (engines/round_server), asynchronous updates (async_server) and replicas
// (replicas.cpp).
INSTANTIATE_TEST_SUITE_P(Engines, BouncedRequest,
                         ::testing::Values("sync_sgd", "local_sgd", "async_sgd", "leader_sgd",
                                           "easgd"),
                         [](const auto& info) { return std::string(info.param); });

} // namespace
