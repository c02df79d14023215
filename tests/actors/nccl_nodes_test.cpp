// NCCL across processes (actors/nccl_nodes.hpp), without a GPU: stand-in
// ranks that record the id they are given and average on the host through
// a hub play NCCL, so the protocol around it is checked in every build:
// the id from rank 0's node reaches every rank, the reducer waits for every
// rank and names one that never joins, the stages reply with the mean on
// rank 0 only, and sync_sgd through stages and the reducer ends where
// allreduce=none does. A real rank without a GPU refuses with a clear error.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <mutex>

#include "actors/nccl_group.hpp"
#include "actors/nccl_nodes.hpp"
#include "gpu/device.hpp"
#include "tests/algorithms/harness.hpp"
#include "tests/test_util.hpp"

using namespace chorus;
using chorus::test::ask;

namespace {

// What the stand-in ranks saw: the id each one joined with.
struct rank_log {
  std::mutex m;
  std::vector<std::optional<nccl_unique_id>> ids;
  explicit rank_log(size_t n) : ids(n) {}
};

// Plays NCCL's all-reduce on the host: collects one buffer from each of n
// ranks and answers all of them with the element-wise mean.
struct hub_state {
  size_t n = 0;
  std::vector<buffer> got;
  std::vector<caf::response_promise> waiting;
};

caf::behavior hub(caf::stateful_actor<hub_state>* self, size_t n) {
  self->state.n = n;
  return {
    [self](all_reduce_atom, buffer& x) {
      auto& st = self->state;
      auto rp = self->make_response_promise();
      st.got.push_back(x.to_host());
      st.waiting.push_back(rp);
      if (st.got.size() == st.n) {
        std::vector<float> mean(st.got.front().size(), 0.0f);
        for (auto& b : st.got)
          for (size_t j = 0; j < mean.size(); ++j)
            mean[j] += b[j] / static_cast<float>(st.n);
        auto out = buffer::from(mean);
        for (auto& p : st.waiting)
          p.deliver(out);
        st.got.clear();
        st.waiting.clear();
      }
      return rp;
    },
  };
}

struct fake_rank_state {
  std::optional<nccl_unique_id> id;
  std::vector<caf::typed_response_promise<ok_atom>> waiting;
};

// A stand-in NCCL rank: records its id, is ready once it has one, and
// all-reduces through the hub.
nccl_rank_actor::behavior_type fake_rank(nccl_rank_actor::stateful_pointer<fake_rank_state> self,
                                         std::shared_ptr<rank_log> log, size_t rank,
                                         caf::actor hub_actor) {
  return {
    [self, hub_actor](all_reduce_atom, buffer& x) -> caf::result<buffer> {
      auto rp = self->make_response_promise<buffer>();
      self->request(hub_actor, caf::infinite, all_reduce_atom_v, std::move(x))
        .then([rp](buffer& m) mutable { rp.deliver(std::move(m)); },
              [rp](caf::error& e) mutable { rp.deliver(std::move(e)); });
      return rp;
    },
    [](all_reduce_atom, reduce_share&) -> caf::result<buffer> {
      return make_error(errc::bad_request, "not used across processes");
    },
    [self](ready_atom) -> caf::result<ok_atom> {
      if (self->state.id)
        return ok_atom_v;
      auto rp = self->make_response_promise<ok_atom>();
      self->state.waiting.push_back(rp);
      return rp;
    },
    [](join_atom) {},
    [self, log, rank](join_atom, const nccl_unique_id& id) {
      {
        std::lock_guard<std::mutex> guard(log->m);
        log->ids[rank] = id;
      }
      self->state.id = id;
      for (auto& p : self->state.waiting)
        p.deliver(ok_atom_v);
      self->state.waiting.clear();
    },
  };
}

nccl_unique_id some_id(uint8_t seed) {
  nccl_unique_id id;
  for (size_t i = 0; i < nccl_unique_id::size; ++i)
    id.bytes[i] = static_cast<uint8_t>(seed + 7 * i);
  return id;
}

std::vector<nccl_rank_actor> fake_ranks(caf::actor_system& sys, test::actor_guard& guard,
                                        std::shared_ptr<rank_log> log, size_t n) {
  auto h = guard.add(sys.spawn(hub, n));
  std::vector<nccl_rank_actor> ranks;
  for (size_t i = 0; i < n; ++i)
    ranks.push_back(guard.add(sys.spawn(fake_rank, log, i, h)));
  return ranks;
}

// A worker that answers every compute with a fixed gradient.
worker_actor::behavior_type fixed_worker(std::vector<float> g) {
  return {
    [g](compute_atom, weights& w) -> caf::result<gradient> {
      return gradient{3, w.step, buffer::from(g), 0.25f, 16, false};
    },
    [g](local_atom, weights& w, local_plan&) -> caf::result<local_result> {
      return local_result{3, w.step, buffer::from(g), 0.5f, 8, false};
    },
    [](evaluate_atom, weights&) -> caf::result<evaluation> { return evaluation{}; },
    [](apply_atom, weights&) -> caf::result<ok_atom> { return ok_atom_v; },
    [](fetch_atom) -> caf::result<weights> {
      return weights{3, 0, buffer::from(std::vector<float>{42.0f})};
    },
  };
}

// Both requests out before either reply (the hub needs both ranks), then
// both replies.
template <class Reply, class... Ts>
std::pair<Reply, Reply> ask_both(caf::scoped_actor& self, const worker_actor& a,
                                 const worker_actor& b, std::string& err, Ts... xs) {
  auto ha = self->request(a, std::chrono::seconds(60), xs...);
  auto hb = self->request(b, std::chrono::seconds(60), xs...);
  std::pair<Reply, Reply> out;
  auto fail = [&](caf::error& e) { err += describe(e) + " "; };
  ha.receive([&](Reply& r) { out.first = std::move(r); }, fail);
  hb.receive([&](Reply& r) { out.second = std::move(r); }, fail);
  return out;
}

// n stand-in ranks over one hub, and the nodes reducer over them.
struct fake_group {
  test::test_system ts;
  test::actor_guard guard;
  std::shared_ptr<rank_log> log;
  std::vector<nccl_rank_actor> ranks;
  reducer_actor reducer;
  fake_group(size_t n, std::chrono::milliseconds timeout)
    : log(std::make_shared<rank_log>(n)), ranks(fake_ranks(ts.sys, guard, log, n)),
      reducer(guard.add(spawn_nodes_reducer(ts.sys, ranks, timeout))) {}
};

} // namespace

TEST(NcclNodes, TheIdFromRankZerosNodeReachesEveryRankAndThenTheReducerIsReady) {
  fake_group g(4, std::chrono::seconds(30));
  caf::scoped_actor self{g.ts.sys};
  // Asked before the id is out: the answer waits for every rank's join.
  auto pending = self->request(g.reducer, std::chrono::seconds(60), ready_atom_v);
  const auto id = some_id(3);
  distribute_nccl_id(g.ranks, id);
  bool ready = false;
  std::string why;
  pending.receive([&](ok_atom) { ready = true; }, [&](caf::error& e) { why = describe(e); });
  EXPECT_TRUE(ready) << why;
  std::lock_guard<std::mutex> lock(g.log->m);
  for (size_t i = 0; i < 4; ++i) {
    ASSERT_TRUE(g.log->ids[i].has_value()) << "rank " << i << " got no id";
    EXPECT_EQ(*g.log->ids[i], id) << "rank " << i;
  }
}

TEST(NcclNodes, ARankThatNeverGetsTheIdMakesTheReducerRefuseNamingIt) {
  fake_group g(3, std::chrono::milliseconds(200));
  distribute_nccl_id({g.ranks[0], g.ranks[1]}, some_id(1));  // rank 2 left out
  caf::scoped_actor self{g.ts.sys};
  auto r = ask<ok_atom>(self, g.reducer, ready_atom_v);
  ASSERT_FALSE(r);
  EXPECT_NE(describe(r.error()).find("NCCL rank 2 did not join"), std::string::npos)
    << describe(r.error());
  // Asked again: the same refusal, at once.
  auto again = ask<ok_atom>(self, g.reducer, ready_atom_v);
  ASSERT_FALSE(again);
  EXPECT_NE(describe(again.error()).find("NCCL rank 2"), std::string::npos);
}

TEST(NcclNodes, TheReducerReturnsRankZerosMeanAndRefusesAnyOtherCount) {
  test::test_system ts;
  test::actor_guard guard;
  auto reducer = guard.add(spawn_nodes_reducer(ts.sys, {}, std::chrono::seconds(1)));
  caf::scoped_actor self{ts.sys};
  auto mean = buffer::from(std::vector<float>{1.5f, -2.0f});
  auto one = ask<buffer>(self, reducer, reduce_atom_v, std::vector<buffer>{mean, buffer{}, buffer{}});
  ASSERT_TRUE(one) << describe(one.error());
  EXPECT_EQ(one->to_vector(), (std::vector<float>{1.5f, -2.0f}));
  auto two = ask<buffer>(self, reducer, reduce_atom_v, std::vector<buffer>{mean, mean, buffer{}});
  ASSERT_FALSE(two);
  EXPECT_NE(describe(two.error()).find("2 of 3"), std::string::npos) << describe(two.error());
  auto none = ask<buffer>(self, reducer, reduce_atom_v, std::vector<buffer>{buffer{}, buffer{}});
  ASSERT_FALSE(none);
  EXPECT_NE(describe(none.error()).find("worker 0 lost"), std::string::npos) << describe(none.error());
  auto no_ranks = ask<ok_atom>(self, reducer, ready_atom_v);
  EXPECT_FALSE(no_ranks);
}

TEST(NcclNodes, StagesReplyWithTheMeanOnRankZeroAndOnlyTheirCountsElsewhere) {
  test::test_system ts;
  test::actor_guard guard;
  auto log = std::make_shared<rank_log>(2);
  auto ranks = fake_ranks(ts.sys, guard, log, 2);
  auto w0 = guard.add(ts.sys.spawn(fixed_worker, std::vector<float>{1.0f, 2.0f}));
  auto w1 = guard.add(ts.sys.spawn(fixed_worker, std::vector<float>{3.0f, 6.0f}));
  auto s0 = guard.add(spawn_all_reduce_stage(ts.sys, w0, ranks[0], true, std::chrono::seconds(30)));
  auto s1 = guard.add(spawn_all_reduce_stage(ts.sys, w1, ranks[1], false, std::chrono::seconds(30)));
  caf::scoped_actor self{ts.sys};
  weights w{-1, 7, buffer::from(std::vector<float>{0.0f, 0.0f})};
  std::string err;
  auto g = ask_both<gradient>(self, s0, s1, err, compute_atom_v, w);
  ASSERT_TRUE(err.empty()) << err;
  EXPECT_EQ(g.first.values.to_vector(), (std::vector<float>{2.0f, 4.0f}));
  EXPECT_TRUE(g.second.values.empty());
  EXPECT_FLOAT_EQ(g.first.loss, 0.25f);
  EXPECT_FLOAT_EQ(g.second.loss, 0.25f);
  EXPECT_EQ(g.second.samples, 16);
  auto l = ask_both<local_result>(self, s0, s1, err, local_atom_v, w, local_plan{});
  ASSERT_TRUE(err.empty()) << err;
  EXPECT_EQ(l.first.values.to_vector(), (std::vector<float>{2.0f, 4.0f}));
  EXPECT_TRUE(l.second.values.empty());
  EXPECT_FLOAT_EQ(l.second.loss, 0.5f);
  EXPECT_EQ(l.second.samples, 8);
  // Everything else goes to the worker untouched.
  auto fetched = ask<weights>(self, s1, fetch_atom_v);
  ASSERT_TRUE(fetched);
  EXPECT_EQ(fetched->values.to_vector(), (std::vector<float>{42.0f}));
}

// The whole path in one process: workers behind stages, stand-in ranks,
// the nodes reducer in ctx.reducer, and sync_sgd's server taking its mean.
// Worker i's gradient at w = 0 is i (add_rank_workers): one step with lr 1
// lands on -(n-1)/2; more steps end where allreduce=none does.
TEST(NcclNodes, SyncSgdThroughStagesAndTheNodesReducerEndsWhereAllreduceNoneDoes) {
  auto run = [](const char* algo, int steps, bool nccl) {
    test::graph g;
    test::add_rank_workers(g, 3, 5);
    g.ctx.plan.steps = steps;
    g.ctx.plan.lr = 0.3f;
    if (nccl) {
      auto log = std::make_shared<rank_log>(3);
      auto ranks = fake_ranks(g.ts.sys, g.guard, log, 3);
      for (size_t i = 0; i < 3; ++i)
        g.ctx.workers[i] = g.guard.add(spawn_all_reduce_stage(
          g.ts.sys, g.ctx.workers[i], ranks[i], i == 0, std::chrono::seconds(30)));
      distribute_nccl_id(ranks, some_id(9));
      g.ctx.reducer = g.guard.add(spawn_nodes_reducer(g.ts.sys, ranks, std::chrono::seconds(30)));
      g.ctx.plan.options["allreduce"] = "nccl";
    }
    auto s = g.run(algo);
    EXPECT_TRUE(s) << algo << " " << describe(s.error());
    EXPECT_EQ(s ? s->steps : -1, steps) << algo;
    return s ? s->final_weights.to_vector() : std::vector<float>{};
  };
  for (auto algo : {"sync_sgd", "sync_sgd_avg"}) {
    auto one = run(algo, 1, true);
    ASSERT_EQ(one.size(), 5u) << algo;
    for (float v : one)
      EXPECT_NEAR(v, -0.3f, 1e-6) << algo;  // w = 0 - 0.3 * mean(0, 1, 2)
    auto x = run(algo, 8, false), y = run(algo, 8, true);
    ASSERT_EQ(x.size(), y.size());
    for (size_t i = 0; i < x.size(); ++i)
      EXPECT_NEAR(x[i], y[i], 1e-5) << algo << " [" << i << "]";  // the hub sums in another order
  }
}

TEST(NcclNodes, ARealRankWithoutAGpuRefusesToJoinSayingWhich) {
  test::test_system ts;
  EXPECT_THROW(spawn_nccl_rank(ts.sys, 2, 2, 0, {}), std::invalid_argument);
  EXPECT_THROW(spawn_nccl_rank(ts.sys, 0, 2, -1, {}), std::invalid_argument);
  if (device::count() > 0)
    GTEST_SKIP() << "a GPU is present: joining would wait for the missing rank";
  test::actor_guard guard;
  auto rank = guard.add(
    spawn_nccl_rank(ts.sys, 1, 2, 0, nccl_wait{std::chrono::milliseconds(500), nullptr}));
  distribute_nccl_id({rank}, some_id(5));
  caf::scoped_actor self{ts.sys};
  auto r = ask<ok_atom>(self, rank, ready_atom_v);
  ASSERT_FALSE(r);
  auto why = describe(r.error());
  EXPECT_NE(why.find("nccl rank 1/2 (device 0) could not join"), std::string::npos) << why;
}
