// A test harness for protocol tests: builds a run graph (monitor, workers,
// evaluator; engines/run_graph.hpp) and runs a protocol from the registry on it.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "tools/experiment.hpp"
#include "algorithms/protocols.hpp"
#include "algorithms/registry.hpp"
#include "engines/run_graph.hpp"
#include "tests/test_util.hpp"

namespace chorus::test {

/// A run graph on its own actor system, quiet, with a 120 s cap per run.
struct graph {
  test_system ts;
  run_graph rg;
  run_context& ctx;
  actor_guard guard;  ///< for actors a test spawns beside the graph's

  explicit graph(size_t threads = 2) : ts(threads), rg(ts.sys, quiet()), ctx(rg.context()) {}

  static monitor_config quiet() {
    monitor_config mc;
    mc.progress = false;
    mc.quiet_log = true;
    return mc;
  }

  void add_worker(const worker_config& cfg) { rg.add_worker(cfg); }

  void set_evaluator(const worker_config& cfg) { rg.set_evaluator(cfg); }

  /// Runs a registered protocol on this graph (spawned as the runner does:
  /// options checked and completed with their defaults).
  caf::expected<run_summary> run(const std::string& algorithm) {
    return run(spawn_algorithm(ts.sys, algorithm, ctx));
  }

  /// Runs a protocol actor spawned by the caller on this graph.
  caf::expected<run_summary> run(protocol_actor proto) {
    return rg.run(std::move(proto), caf::duration{std::chrono::seconds(120)});
  }
};

/// The least-squares set-up protocol tests share (add_least_squares).
struct least_squares_setup {
  int workers = 4;
  uint64_t partition_seed = 3;  ///< partition_iid's seed
  int32_t batch = 16;           ///< 0: each worker's whole shard (full-shard gradient steps)
  sampling order = sampling::sequential;
  bool whole_set = false;  ///< every worker holds all of data.train (a full gradient)
  /// Adjusts worker i's config before it is added (a seed, an injection).
  std::function<void(int, worker_config&)> each;
};

/// `s.workers` linear workers on an iid partition of data.train, a linear
/// evaluator on data.test, and w0 = 0; the plan (steps, lr, options) is the
/// caller's.
inline void add_least_squares(graph& g, const train_test& data, const least_squares_setup& s) {
  auto parts = partition_iid(*data.train, s.workers, s.partition_seed);
  if (s.whole_set)
    for (auto& p : parts) {
      p.resize(data.train->size());
      for (size_t j = 0; j < p.size(); ++j)
        p[j] = static_cast<int64_t>(j);
    }
  for (int i = 0; i < s.workers; ++i) {
    worker_config wc;
    wc.rank = i;
    wc.model = "linear";
    wc.data = data.train;
    wc.shard = parts[static_cast<size_t>(i)];
    wc.batch = s.batch > 0 ? s.batch : static_cast<int32_t>(wc.shard.size());
    wc.order = s.order;
    if (s.each)
      s.each(i, wc);
    g.add_worker(wc);
  }
  worker_config ec;
  ec.model = "linear";
  ec.data = data.test;
  g.set_evaluator(ec);
  g.ctx.initial = buffer::from(std::vector<float>(static_cast<size_t>(data.train->num_features), 0.0f));
}

// Worker i holds samples x = (1, ..., 1), y = -i: the linear model's
// gradient at w = 0 is exactly i in every coordinate.
inline dataset_ptr rank_data(int n, int64_t dim) {
  auto d = std::make_shared<dataset>();
  d->task = task_kind::regression;
  d->num_features = dim;
  for (int i = 0; i < n; ++i) {
    d->x.insert(d->x.end(), static_cast<size_t>(dim), 1.0f);
    d->y.push_back(static_cast<float>(-i));
  }
  return d;
}

// n linear workers on rank_data (worker i holds sample i, batch 1), an
// evaluator, w0 = 0 and lr = 1: one sync step lands on -(n-1)/2 exactly.
inline void add_rank_workers(graph& g, int n, int64_t dim) {
  auto data = rank_data(n, dim);
  for (int i = 0; i < n; ++i) {
    worker_config wc;
    wc.rank = i;
    wc.model = "linear";
    wc.data = data;
    wc.shard = {i};
    wc.batch = 1;
    g.add_worker(wc);
  }
  worker_config ec;
  ec.model = "linear";
  ec.data = data;
  g.set_evaluator(ec);
  g.ctx.plan.lr = 1.0f;
  g.ctx.initial = buffer::from(std::vector<float>(static_cast<size_t>(dim), 0.0f));
}

// Runs `steps` rounds with n workers that split each global batch of n*b
// consecutive samples into n consecutive chunks (one shared data order).
inline buffer run_shared_order(const train_test& data, const std::string& algorithm, int n,
                               int b, int steps, const buffer& w0, const std::string& model,
                               std::map<std::string, std::string> options = {}) {
  graph g;
  const int64_t global = static_cast<int64_t>(n) * b;
  for (int i = 0; i < n; ++i) {
    worker_config wc;
    wc.rank = i;
    wc.model = model;
    wc.data = data.train;
    wc.batch = b;
    wc.order = sampling::sequential;
    for (int t = 0; t < steps; ++t)
      for (int k = 0; k < b; ++k)
        wc.shard.push_back((t * global + i * b + k) % data.train->size());
    g.add_worker(wc);
  }
  worker_config ec;
  ec.model = model;
  ec.data = data.test;
  g.set_evaluator(ec);
  g.ctx.plan.steps = steps;
  g.ctx.plan.lr = 0.05f;
  g.ctx.plan.options = options;
  g.ctx.initial = w0;
  g.ctx.shard_sizes.assign(static_cast<size_t>(n), 1);
  auto s = g.run(algorithm);
  EXPECT_TRUE(s) << describe(s.error());
  return s ? s->final_weights : buffer{};
}


/// What a fake_node does when asked for a peer.
enum class node_mode { spawns, refuses, silent };

/// What a fake_node saw.
struct node_log {
  std::atomic<int> asked{0};
  std::atomic<bool> job_named{true};  // every request named the expected job
};

/// A stand-in for a node process (tools/node.cpp) in this process: its
/// peer_atom spawns the protocol's actor beside worker `rank` here
/// (spawn_algorithm_peer on ctx, as a node does), refuses, or never answers;
/// the other messages are refused.
inline node_actor fake_node(caf::actor_system& sys, node_mode mode, run_context ctx, std::string algorithm,
                     caf::actor job, std::shared_ptr<node_log> log) {
  // mode and log are spawn arguments, not captures: CAF 0.17 dereferences a
  // null argument tuple when a function actor is spawned with none (UBSan).
  return sys.spawn([ctx, algorithm, job](node_actor::pointer self, node_mode mode,
                                         std::shared_ptr<node_log> log) -> node_actor::behavior_type {
    auto no = [] { return make_error(errc::bad_request, "not served by this test node"); };
    return {
      [no](hello_atom, const std::string&, uint64_t) -> caf::result<std::string> { return no(); },
      [no](devices_atom) -> caf::result<node_devices> { return no(); },
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
      // (in this process: every payload stays in it)
      [](traffic_atom) -> caf::result<uint64_t, uint64_t> { return {uint64_t{0}, uint64_t{0}}; },
    };
  }, mode, std::move(log));
}

/// Points g.ctx.beside at a fake_node that spawns `algorithm`'s actors here
/// (or does as `mode` says), so a protocol takes its path for workers in
/// other processes (peers or agents beside the workers) within this
/// process. Call it once the workers, plan and options are set.
inline void beside_here(graph& g, const std::string& algorithm, node_mode mode = node_mode::spawns,
                        std::shared_ptr<node_log> log = std::make_shared<node_log>()) {
  // The job's identity only; named by an argument (see fake_node on why one).
  auto job = g.guard.add(caf::actor{g.ts.sys.spawn(
    [](const std::string&) { return caf::behavior{[](int32_t) {}}; }, std::string{"test job"})});
  auto node = g.guard.add(fake_node(g.ts.sys, mode, g.ctx, algorithm, job, std::move(log)));
  g.ctx.beside = [node, job, monitor = g.ctx.monitor](int32_t) {
    return beside_site{node, job, caf::actor_cast<caf::actor>(monitor), "test node", nullptr};
  };
}

} // namespace chorus::test
