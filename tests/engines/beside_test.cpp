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

#include <memory>

#include "algorithms/registry.hpp"
#include "tests/algorithms/harness.hpp"

using namespace chorus;

namespace {

using test::node_log;
using test::node_mode;

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
  if (mode)
    test::beside_here(g, "gossip_sgd", *mode, log ? log : std::make_shared<node_log>());
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
