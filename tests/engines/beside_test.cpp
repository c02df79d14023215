// Actors kept beside the workers of another process (run_context::beside,
// spawn_all_beside in engines/protocol.hpp), with an in-process stand-in for
// the node: the protocol actor asks the node itself, without blocking, so
//  - on ONE scheduler thread a gossip run whose peers come from a node
//    finishes, with the same model as peers spawned directly (a blocking
//    request from inside the protocol actor held the only thread the node
//    needed to answer: every such run failed after its timeout);
//  - a node that refuses, or never answers within the timeout, fails the run
//    with "peer i could not be spawned beside its worker: <node>: <why>".
#include <gtest/gtest.h>

#include <atomic>
#include <memory>

#include "algorithms/registry.hpp"
#include "tests/algorithms/harness.hpp"

using namespace chorus;

namespace {

enum class node_mode { spawns, refuses, silent };

// What the stand-in node saw.
struct node_log {
  std::atomic<int> asked{0};
  std::atomic<bool> job_named{true};  // every request named the expected job
};

// A node_actor whose peer_atom spawns the real peer here (as tools/node.cpp
// does), refuses, or never answers; the other messages are refused.
node_actor fake_node(caf::actor_system& sys, node_mode mode, run_context ctx, std::string algorithm,
                     caf::actor job, std::shared_ptr<node_log> log) {
  return sys.spawn([=](node_actor::pointer self) -> node_actor::behavior_type {
    auto no = [] { return make_error(errc::bad_request, "not served by this test node"); };
    return {
      [no](hello_atom, const std::string&, uint64_t) -> caf::result<std::string> { return no(); },
      [no](host_atom, const node_job&) -> caf::result<hosted_workers> { return no(); },
      [=](peer_atom, int32_t rank, caf::actor& coordinator, caf::actor&,
          caf::actor& owner) -> caf::result<caf::strong_actor_ptr> {
        ++log->asked;
        if (owner != job)
          log->job_named = false;
        if (mode == node_mode::refuses)
          return make_error(errc::bad_request, "test node: no room for peer " + std::to_string(rank));
        if (mode == node_mode::silent)
          return self->make_response_promise<caf::strong_actor_ptr>();  // never delivered
        return caf::actor_cast<caf::strong_actor_ptr>(
          spawn_algorithm_peer(self->home_system(), algorithm, ctx, rank, coordinator));
      },
      [no](mesh_atom, const std::string&) -> caf::result<ok_atom> { return no(); },
      [](release_atom) {},
    };
  });
}

constexpr int n = 4;

// A ring gossip run on rank workers; with `mode`, its peers come from a
// stand-in node. Returns the summary or the error.
caf::expected<run_summary> gossip_run(size_t threads, const node_mode* mode,
                                      std::shared_ptr<node_log> log = nullptr) {
  test::graph g(threads);
  test::add_rank_workers(g, n, 5);
  g.ctx.plan.steps = 12;
  g.ctx.plan.lr = 0.1f;
  g.ctx.plan.timeout = std::chrono::milliseconds(mode && *mode == node_mode::silent ? 400 : 20000);
  g.ctx.plan.options = {{"topology", "ring"}};
  if (mode) {
    auto job = g.guard.add(caf::actor{g.ts.sys.spawn([] { return caf::behavior{[](int32_t) {}}; })});
    auto node = g.guard.add(fake_node(g.ts.sys, *mode, g.ctx, "gossip_sgd", job, log));
    g.ctx.beside = [node, job, monitor = g.ctx.monitor](int32_t) {
      return beside_site{node, job, caf::actor_cast<caf::actor>(monitor), "test node"};
    };
  }
  return g.run("gossip_sgd");
}

std::vector<float> values(const buffer& b) { return {b.data(), b.data() + b.size()}; }

TEST(beside, peers_from_a_node_on_one_scheduler_thread_finish_and_match_direct_peers) {
  auto direct = gossip_run(1, nullptr);
  ASSERT_TRUE(direct) << describe(direct.error());
  auto log = std::make_shared<node_log>();
  const auto mode = node_mode::spawns;
  auto beside = gossip_run(1, &mode, log);
  ASSERT_TRUE(beside) << describe(beside.error());
  EXPECT_EQ(log->asked.load(), n);
  EXPECT_TRUE(log->job_named.load());
  EXPECT_EQ(beside->steps, 12);
  EXPECT_EQ(values(beside->final_weights), values(direct->final_weights));
}

TEST(beside, a_node_that_refuses_a_peer_fails_the_run_naming_the_peer_and_the_node) {
  auto log = std::make_shared<node_log>();
  const auto mode = node_mode::refuses;
  auto r = gossip_run(1, &mode, log);
  ASSERT_FALSE(r);
  auto text = describe(r.error());
  EXPECT_NE(text.find("peer 0 could not be spawned beside its worker: test node: "), std::string::npos)
    << text;
  EXPECT_NE(text.find("no room for peer 0"), std::string::npos) << text;
}

TEST(beside, a_node_that_never_answers_fails_the_run_after_the_timeout) {
  auto log = std::make_shared<node_log>();
  const auto mode = node_mode::silent;
  auto r = gossip_run(1, &mode, log);
  ASSERT_FALSE(r);
  auto text = describe(r.error());
  EXPECT_NE(text.find("could not be spawned beside its worker: test node: "), std::string::npos) << text;
  EXPECT_NE(text.find("timeout"), std::string::npos) << text;
}

} // namespace
