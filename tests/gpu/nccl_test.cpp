// NCCL: the RAII communicator, the group of detached rank actors, and
// sync_sgd with allreduce=nccl.
//  - every build: the unique id survives CAF serialization byte for byte;
//    without a device, making an id or a communicator throws device_error,
//    a group answers with errors (never hangs) and the actor system shuts
//    down; allreduce=nccl fails before training with a clear error; the
//    round server's reducer path (the asynchronous combine it uses) matches
//    the plain mean, with a host reducer standing in for NCCL.
//  - `*_gpu` suites need a GPU and skip without one; two-rank tests need two.
#include <gtest/gtest.h>

#include <caf/binary_deserializer.hpp>
#include <caf/binary_serializer.hpp>

#include <atomic>
#include <chrono>
#include <cmath>
#include <thread>

#include "actors/nccl_group.hpp"
#include "tools/experiment.hpp"
#include "gpu/backend.hpp"
#include "gpu/device.hpp"
#include "gpu/nccl_comm.hpp"
#include "tests/algorithms/harness.hpp"
#include "tests/gpu/gpu_test_util.hpp"

using namespace chorus;
using chorus::test::ask;
using chorus::test::add_rank_workers;
using chorus::test::graph;
using clock_type = std::chrono::steady_clock;

namespace {

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

// A least-squares graph: n linear workers on IID shards (host workers),
// the protocol actor on `server_backend`.
void least_squares_graph(graph& g, const train_test& data, int n, const std::string& server_backend) {
  test::least_squares_setup setup;
  setup.workers = n;
  test::add_least_squares(g, data, setup);
  g.ctx.plan.steps = 40;
  g.ctx.plan.lr = 0.05f;
  g.ctx.backend = server_backend;
  g.ctx.device = 0;
}

double max_abs_diff(const buffer& a, const buffer& b) {
  auto x = a.to_vector(), y = b.to_vector();
  EXPECT_EQ(x.size(), y.size());
  double d = 0;
  for (size_t i = 0; i < std::min(x.size(), y.size()); ++i)
    d = std::max(d, double(std::fabs(x[i] - y[i])));
  return d;
}

// A reducer on the host: what the NCCL group does, without NCCL. Counts
// its reduce requests; `fail_ready` / `fail_reduce` make it refuse.
reducer_actor::behavior_type host_reducer(std::shared_ptr<std::atomic<int>> calls,
                                          bool fail_ready, bool fail_reduce) {
  return {
    [fail_ready](ready_atom) -> caf::result<ok_atom> {
      if (fail_ready)
        return make_error(errc::compute_failed, "test reducer: no device");
      return ok_atom_v;
    },
    [calls, fail_reduce](reduce_atom, std::vector<buffer>& xs) -> caf::result<buffer> {
      ++*calls;
      if (fail_reduce)
        return make_error(errc::compute_failed, "test reducer: NCCL failed");
      auto be = make_eigen_backend();
      std::vector<cview> views;
      std::vector<buffer> held;
      for (auto& x : xs)
        held.push_back(x.to_host());
      for (auto& h : held)
        views.push_back(h);
      auto out = be->allocate(held.front().size());
      be->mean(views, out.span());
      return std::move(out).freeze();
    },
  };
}

} // namespace

// -- every build: the id as a payload ------------------------------------------------

TEST(nccl, unique_id_round_trips_through_caf_serialization_byte_for_byte) {
  test::test_system ts;
  nccl_unique_id id;
  for (size_t i = 0; i < nccl_unique_id::size; ++i)
    id.bytes[i] = static_cast<uint8_t>(255 - 7 * i);  // every byte differs from its index
  std::vector<char> bytes;
  caf::binary_serializer sink{ts.sys, bytes};
  ASSERT_FALSE(sink(id));
  EXPECT_EQ(bytes.size(), nccl_unique_id::size);  // raw bytes, no per-element framing
  nccl_unique_id back;
  caf::binary_deserializer source{ts.sys, bytes};
  ASSERT_FALSE(source(back));
  EXPECT_EQ(back, id);

  // Inside a message, through the project's type-ID block, as rank 0 sends it.
  auto msg = caf::make_message(join_atom_v, id);
  std::vector<char> wire;
  caf::binary_serializer msg_sink{ts.sys, wire};
  ASSERT_FALSE(msg_sink(msg));
  caf::message received;
  caf::binary_deserializer msg_source{ts.sys, wire};
  ASSERT_FALSE(msg_source(received));
  ASSERT_TRUE((received.match_elements<join_atom, nccl_unique_id>()));
  EXPECT_EQ(received.get_as<nccl_unique_id>(1), id);

  // Logs get a fingerprint, not the token.
  auto text = caf::deep_to_string(id);
  EXPECT_NE(text.find("nccl_unique_id"), std::string::npos) << text;
  EXPECT_LT(text.size(), 64u) << text;
}

TEST(nccl, a_truncated_id_fails_to_deserialize) {
  test::test_system ts;
  std::vector<char> bytes(nccl_unique_id::size / 2, 'x');
  nccl_unique_id back;
  caf::binary_deserializer source{ts.sys, bytes};
  EXPECT_TRUE(static_cast<bool>(source(back)));
}

// -- every build: no device ----------------------------------------------------------

TEST(nccl, without_a_device_making_an_id_or_a_communicator_throws_device_error) {
  if (device::count() > 0)
    GTEST_SKIP() << "a CUDA device is present";
  EXPECT_THROW(make_nccl_id(), device_error);
  EXPECT_THROW(nccl_comm(nccl_unique_id{}, 1, 0, 0), device_error);
  try {
    nccl_comm::single(0);
    FAIL() << "nccl_comm::single(0) succeeded without a device";
  } catch (const device_error& e) {
    std::string what = e.what();
    EXPECT_TRUE(what.find("nccl") != std::string::npos || what.find("NCCL") != std::string::npos)
      << what;
  }
}

TEST(nccl, group_device_lists_are_checked_when_spawned) {
  test::test_system ts;
  EXPECT_THROW(spawn_nccl_group(ts.sys, {}), std::invalid_argument);
  EXPECT_THROW(spawn_nccl_group(ts.sys, {-1}), std::invalid_argument);
  try {
    spawn_nccl_group(ts.sys, {0, 1, 0});
    FAIL() << "a device listed twice was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("one rank per GPU"), std::string::npos) << e.what();
  }
}

TEST(nccl, without_a_device_a_group_answers_with_errors_and_the_system_shuts_down) {
  if (device::count() > 0)
    GTEST_SKIP() << "a CUDA device is present";
  const auto t0 = clock_type::now();
  for (std::vector<int> devices : {std::vector<int>{0}, std::vector<int>{0, 1, 2}}) {
    test::test_system ts;
    auto group = spawn_nccl_group(ts.sys, devices);
    caf::scoped_actor self{ts.sys};
    auto ready = ask<ok_atom>(self, group.actor(), ready_atom_v);
    ASSERT_FALSE(ready) << "a group formed without a device";
    std::string why = describe(ready.error());
    EXPECT_NE(why.find("nccl rank 0"), std::string::npos) << why;
    auto x = buffer::from(std::vector<float>{1, 2, 3});
    auto mean = ask<buffer>(self, group.actor(), reduce_atom_v, std::vector<buffer>{x, x});
    EXPECT_FALSE(mean);
    auto each = ask<std::vector<buffer>>(self, group.actor(), all_reduce_atom_v,
                                         std::vector<buffer>(devices.size(), x));
    EXPECT_FALSE(each);
    // A malformed request is refused as such.
    auto wrong = ask<std::vector<buffer>>(self, group.actor(), all_reduce_atom_v,
                                          std::vector<buffer>(devices.size() + 1, x));
    ASSERT_FALSE(wrong);
    EXPECT_EQ(wrong.error().category(), errc_category);
    EXPECT_EQ(wrong.error().code(), static_cast<uint8_t>(errc::bad_request));
    EXPECT_NE(describe(wrong.error()).find("one per rank"), std::string::npos)
      << describe(wrong.error());
    group.reset();
    // Leaving the scope destroys the actor system, which waits for every
    // actor: this returns only if the group's detached ranks exited.
  }
  // Not a speed bound: without a device every answer is immediate (well
  // under a second, even on one loaded core), while the failure this catches,
  // a rank waiting out the formation timeout (nccl_group_options::timeout,
  // 2 minutes), takes at least 120 s. A hang is left to ctest's timeout.
  EXPECT_LT(seconds_since(t0), 30.0);
}

TEST(nccl, allreduce_nccl_without_a_gpu_fails_before_training_with_a_clear_error) {
  if (device::count() > 0)
    GTEST_SKIP() << "a CUDA device is present";
  auto data = make_least_squares(512, 128, 8, 0.1, 1);
  {
    graph g;
    least_squares_graph(g, data, 2, "eigen");
    g.ctx.plan.options["allreduce"] = "nccl";
    try {
      find_algorithm("sync_sgd").spawn(g.ts.sys, g.ctx);
      FAIL() << "sync_sgd with allreduce=nccl started without a GPU";
    } catch (const device_error& e) {
      EXPECT_NE(std::string(e.what()).find("allreduce=nccl"), std::string::npos) << e.what();
    }
  }
  experiment_config cfg;
  cfg.algorithm = "sync_sgd";
  cfg.workers = 2;
  cfg.model = "linear";
  cfg.dataset = "synthetic-lsq";
  cfg.steps = 5;
  cfg.progress = false;
  cfg.options["allreduce"] = "nccl";
  EXPECT_NO_THROW(validate(cfg));
  EXPECT_THROW(run_experiment(cfg, data), device_error);
  cfg.backend = "cuda";
  EXPECT_THROW(run_experiment(cfg, data), device_error);
}

TEST(nccl, allreduce_accepts_none_and_nccl_only_and_only_where_it_applies) {
  auto data = make_least_squares(512, 128, 8, 0.1, 1);
  graph g;
  least_squares_graph(g, data, 2, "eigen");
  g.ctx.plan.options["allreduce"] = "mpi";
  try {
    find_algorithm("sync_sgd").spawn(g.ts.sys, g.ctx);
    FAIL() << "allreduce=mpi was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("valid: none, nccl"), std::string::npos) << e.what();
  }
  experiment_config cfg;
  cfg.algorithm = "async_sgd";
  cfg.options["allreduce"] = "nccl";
  EXPECT_THROW(validate(cfg), std::invalid_argument);
  cfg.algorithm = "sync_sgd_avg";
  EXPECT_NO_THROW(validate(cfg));
}

// -- every build: the round server's reducer path, with a host reducer ----------------

TEST(sync_sgd_reducer, a_reducer_gives_the_same_step_as_the_plain_mean) {
  for (int n : {1, 3, 8}) {
    graph g;
    add_rank_workers(g, n, 100);
    g.ctx.plan.steps = 3;
    auto calls = std::make_shared<std::atomic<int>>(0);
    auto rule = sync_sgd_rule(g.ctx.plan);
    rule.reducer = g.guard.add(g.ts.sys.spawn(host_reducer, calls, false, false));
    auto s = g.run(spawn_round_server(g.ts.sys, g.ctx, rule));
    ASSERT_TRUE(s) << describe(s.error());
    EXPECT_EQ(s->steps, 3);
    EXPECT_EQ(calls->load(), 3);
    EXPECT_EQ(s->samples, 3 * n);
    auto plain = g.run(spawn_round_server(g.ts.sys, g.ctx, sync_sgd_rule(g.ctx.plan)));
    ASSERT_TRUE(plain) << describe(plain.error());
    EXPECT_EQ(max_abs_diff(s->final_weights, plain->final_weights), 0.0) << "n=" << n;
  }
}

TEST(sync_sgd_reducer, a_reducer_that_cannot_serve_fails_the_run_before_its_first_step) {
  auto data = make_least_squares(512, 128, 8, 0.1, 1);
  for (bool at_ready : {true, false}) {
    graph g;
    least_squares_graph(g, data, 2, "eigen");
    auto calls = std::make_shared<std::atomic<int>>(0);
    auto rule = sync_sgd_rule(g.ctx.plan);
    rule.reducer = g.guard.add(g.ts.sys.spawn(host_reducer, calls, at_ready, !at_ready));
    auto s = g.run(spawn_round_server(g.ts.sys, g.ctx, rule));
    ASSERT_FALSE(s);
    std::string why = describe(s.error());
    EXPECT_NE(why.find(at_ready ? "not ready" : "NCCL failed"), std::string::npos) << why;
    EXPECT_EQ(calls->load(), at_ready ? 0 : 1);
  }
}

// -- on a GPU ------------------------------------------------------------------------

TEST(nccl_gpu, a_one_rank_communicator_returns_its_input) {
  CHORUS_SKIP_WITHOUT_GPUS(1);
  auto comm = nccl_comm::single(0);
  EXPECT_EQ(comm.size(), 1);
  EXPECT_EQ(comm.rank(), 0);
  EXPECT_EQ(comm.device(), 0);
  for (size_t n : {size_t(0), size_t(1), size_t(1000), size_t(1) << 20}) {
    std::vector<float> v(n);
    for (size_t i = 0; i < n; ++i)
      v[i] = std::sin(0.001f * float(i)) * 100.0f;
    auto in = device::to_device(buffer::from(v), 0);
    auto out = device::make_buffer(n, 0);
    comm.all_reduce_mean(in, out.span());
    EXPECT_EQ(std::move(out).freeze().to_vector(), v) << "n=" << n;
    auto dev = device::to_device(buffer::from(v), 0);
    auto work = device::make_buffer(n, 0);
    make_backend("cuda", 0)->copy(dev, work.span());
    comm.all_reduce_mean(work.span(), work.span());
    EXPECT_EQ(std::move(work).freeze().to_vector(), v) << "in place, n=" << n;
  }
  EXPECT_TRUE(comm.healthy());
  nccl_comm moved = std::move(comm);
  EXPECT_EQ(moved.size(), 1);
}

TEST(nccl_gpu, a_rank_whose_peer_never_joins_gives_up_instead_of_hanging) {
  CHORUS_SKIP_WITHOUT_GPUS(1);
  auto id = make_nccl_id();
  auto t0 = clock_type::now();
  try {
    nccl_comm lonely(id, 2, 0, 0, nccl_wait{std::chrono::milliseconds(1500), nullptr});
    FAIL() << "a two-rank communicator formed with one rank";
  } catch (const device_error& e) {
    EXPECT_NE(std::string(e.what()).find("timed out"), std::string::npos) << e.what();
  }
  // The wait is 1.5 s; 30 s only separates "gave up at its timeout" from
  // "waited for the default 2 minutes" (or forever), whatever the machine's speed.
  EXPECT_LT(seconds_since(t0), 30.0);
  // And a cancel flag stops the wait early.
  auto cancel = std::make_shared<std::atomic<bool>>(false);
  std::thread raiser([cancel] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    cancel->store(true);
  });
  t0 = clock_type::now();
  try {
    nccl_comm lonely(make_nccl_id(), 2, 0, 0, nccl_wait{std::chrono::minutes(5), cancel});
    FAIL() << "a two-rank communicator formed with one rank";
  } catch (const device_error& e) {
    EXPECT_NE(std::string(e.what()).find("cancelled"), std::string::npos) << e.what();
  }
  raiser.join();
  // Cancelled after 0.3 s; without the cancel the wait is 5 minutes.
  EXPECT_LT(seconds_since(t0), 30.0);
}

TEST(nccl_gpu, a_one_rank_group_all_reduce_returns_the_same_values) {
  CHORUS_SKIP_WITHOUT_GPUS(1);
  test::test_system ts;
  auto group = spawn_nccl_group(ts.sys, {0});
  caf::scoped_actor self{ts.sys};
  ASSERT_TRUE(ask<ok_atom>(self, group.actor(), ready_atom_v));
  std::vector<float> v(4097);
  for (size_t i = 0; i < v.size(); ++i)
    v[i] = 0.5f * float(i) - 1000.0f;
  auto x = device::to_device(buffer::from(v), 0);
  // Per rank, through the front and straight to the rank actor.
  auto each = ask<std::vector<buffer>>(self, group.actor(), all_reduce_atom_v, std::vector<buffer>{x});
  ASSERT_TRUE(each) << describe(each.error());
  ASSERT_EQ(each->size(), 1u);
  auto& r = each->front();
  EXPECT_EQ(r.kind(), memory_kind::device);
  EXPECT_EQ(r.device(), 0);
  EXPECT_FALSE(r.same_storage(x));
  EXPECT_EQ(r.to_vector(), v);
  EXPECT_EQ(x.to_vector(), v);  // the input is never modified
  auto direct = ask<buffer>(self, group.ranks().front(), all_reduce_atom_v, x);
  ASSERT_TRUE(direct) << describe(direct.error());
  EXPECT_EQ(direct->to_vector(), v);
  // The mean of several buffers, device and host: workers 0..3 whose
  // gradient is their rank average to exactly 1.5.
  std::vector<buffer> grads;
  for (int i = 0; i < 4; ++i) {
    auto g = buffer::from(std::vector<float>(1000, float(i)));
    grads.push_back(i % 2 == 0 ? device::to_device(g, 0) : g);
  }
  auto mean = ask<buffer>(self, group.actor(), reduce_atom_v, grads);
  ASSERT_TRUE(mean) << describe(mean.error());
  EXPECT_EQ(mean->device(), 0);
  EXPECT_EQ(mean->to_vector(), std::vector<float>(1000, 1.5f));
  // Lengths that disagree are refused, and the group keeps serving.
  auto bad = ask<buffer>(self, group.actor(), reduce_atom_v,
                         std::vector<buffer>{x, buffer::from(std::vector<float>{1})});
  EXPECT_FALSE(bad);
  EXPECT_TRUE(ask<buffer>(self, group.actor(), reduce_atom_v, std::vector<buffer>{x}));
}

TEST(nccl_gpu, dropping_a_group_while_it_forms_does_not_hang_shutdown) {
  CHORUS_SKIP_WITHOUT_GPUS(1);
  const auto t0 = clock_type::now();
  {
    test::test_system ts;
    auto group = spawn_nccl_group(ts.sys, {0});
  }
  // Forming one rank takes a second or so; shutdown that waited for the
  // group's formation timeout instead would take at least 2 minutes.
  EXPECT_LT(seconds_since(t0), 60.0);
}

TEST(nccl_gpu, two_ranks_on_two_gpus_average_across_them) {
  CHORUS_SKIP_WITHOUT_GPUS(2);
  test::test_system ts;
  auto group = spawn_nccl_group(ts.sys, {0, 1});
  caf::scoped_actor self{ts.sys};
  ASSERT_TRUE(ask<ok_atom>(self, group.actor(), ready_atom_v));
  const size_t n = 1 << 16;
  std::vector<buffer> in{device::to_device(buffer::from(std::vector<float>(n, 1.0f)), 0),
                         device::to_device(buffer::from(std::vector<float>(n, 2.0f)), 1)};
  auto each = ask<std::vector<buffer>>(self, group.actor(), all_reduce_atom_v, in);
  ASSERT_TRUE(each) << describe(each.error());
  for (int r = 0; r < 2; ++r) {
    EXPECT_EQ((*each)[r].device(), r);
    EXPECT_EQ((*each)[r].to_vector(), std::vector<float>(n, 1.5f));
  }
  // Unevenly placed: two buffers on GPU 0, one on GPU 1 -> the plain mean.
  std::vector<buffer> grads{device::to_device(buffer::from(std::vector<float>(n, 0.0f)), 0),
                            device::to_device(buffer::from(std::vector<float>(n, 3.0f)), 0),
                            device::to_device(buffer::from(std::vector<float>(n, 6.0f)), 1)};
  auto mean = ask<buffer>(self, group.actor(), reduce_atom_v, grads);
  ASSERT_TRUE(mean) << describe(mean.error());
  for (float v : mean->to_vector())
    ASSERT_NEAR(v, 3.0f, 1e-5f);
}

TEST(sync_sgd_nccl_gpu, least_squares_with_allreduce_nccl_equals_allreduce_none) {
  CHORUS_SKIP_WITHOUT_GPUS(1);
  auto data = make_least_squares(2048, 256, 32, 0.1, 5);
  for (auto algo : {"sync_sgd", "sync_sgd_avg"}) {
    buffer result[2];
    for (int k = 0; k < 2; ++k) {
      graph g;
      least_squares_graph(g, data, 3, "cuda");
      g.ctx.plan.options["allreduce"] = k == 0 ? "none" : "nccl";
      auto s = g.run(algo);
      ASSERT_TRUE(s) << algo << " " << describe(s.error());
      EXPECT_EQ(s->steps, 40);
      result[k] = s->final_weights;
    }
    EXPECT_LT(max_abs_diff(result[0], result[1]), 1e-5) << algo;
  }
}

TEST(sync_sgd_nccl_gpu, cuda_workers_sharing_one_gpu_match_allreduce_none) {
  CHORUS_SKIP_WITHOUT_GPUS(1);
  for (auto algo : {"sync_sgd", "sync_sgd_avg"}) {
    auto cfg = chorus::test::small_softmax_run(algo, "cuda");
    cfg.devices = {0};
    auto none = run_experiment(cfg).summary;
    cfg.options["allreduce"] = "nccl";
    auto nccl = run_experiment(cfg).summary;
    EXPECT_EQ(nccl.steps, none.steps) << algo;
    EXPECT_LT(max_abs_diff(nccl.final_weights, none.final_weights), 1e-5) << algo;
    EXPECT_NEAR(nccl.test_loss, none.test_loss, 1e-5) << algo;
  }
}
