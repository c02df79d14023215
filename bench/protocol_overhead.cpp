// What one synchronous round costs when the compute is free: sync_sgd over N
// workers holding a one-parameter "linear" model on a 4-sample, 1-feature
// dataset, so every microsecond measured is protocol (messages, the barrier,
// aggregation, bookkeeping). A second part uses a 1M-parameter model on one
// 1M-feature sample to show the bandwidth term: per round every worker gets
// the weights (shared, no copy in-process) and returns a fresh 4 MB gradient
// that the server averages.
//
// Each run times the run_atom request end to end (minus the one final
// evaluation) and reports the median over repetitions.
//
// Run: build/bench/protocol_overhead   (CHORUS_BENCH_QUICK=1 for a smoke run)
#include <caf/all.hpp>

#include <cmath>
#include <cstdint>
#include <exception>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "actors/system.hpp"
#include "algorithms/protocols.hpp"
#include "bench/bench_util.hpp"
#include "engines/run_graph.hpp"
#include "messages/type_ids.hpp"
#include "models/model.hpp"

using namespace chorus;

namespace {

constexpr size_t threads = 2;


// N workers and an evaluator on `data`, reused by every repetition (the
// protocol actor quits at the end of its run; the workers stay).
class graph {
public:
  graph(caf::actor_system& sys, dataset_ptr data, int32_t n, int32_t batch)
      : data_(std::move(data)), run_(sys, bench::quiet_monitor()) {
    for (int32_t i = 0; i < n; ++i) {
      worker_config wc;
      wc.rank = i;
      wc.model = "linear";
      wc.data = data_;
      wc.batch = batch;
      wc.seed = 1000 + static_cast<uint64_t>(i);
      run_.add_worker(wc);
    }
    worker_config ec;
    ec.rank = -1;
    ec.model = "linear";
    ec.data = data_;
    ec.batch = batch;
    run_.set_evaluator(ec);
    auto& ctx = run_.context();
    ctx.plan.algorithm = "sync_sgd";
    ctx.plan.eval_every = 0;  // one evaluation, at the end
    ctx.plan.lr = 0.1f;
    ctx.plan.train_size = data_->size();
    ctx.initial = mutable_buffer::filled(static_cast<size_t>(data_->num_features), 0.0f).freeze();
  }

  bench::run_result run(int64_t steps) {
    run_.context().plan.steps = steps;
    return bench::timed_run(run_, spawn_sync_sgd(run_.system(), run_.context()));
  }

private:
  dataset_ptr data_;
  run_graph run_;
};

// Median over `reps` runs of `steps` rounds each, after one short warm-up.
void measure(caf::actor_system& sys, const char* variant, dataset_ptr data, int32_t n,
             int64_t steps, int reps, double grad_us) {
  graph g(sys, data, n, 1);
  g.run(std::max<int64_t>(1, steps / 10));  // warm-up: first touches, thread wake-ups
  std::vector<double> per_round;
  int64_t bytes_per_round = 0;
  for (int r = 0; r < reps; ++r) {
    auto res = g.run(steps);
    const double train_s = res.seconds - res.summary.eval_s;
    per_round.push_back(train_s / static_cast<double>(res.summary.steps));
    bytes_per_round = res.summary.bytes_sent / std::max<int64_t>(1, res.summary.steps);
  }
  const double s = bench::median(per_round);
  auto o = bench::line("protocol_overhead");
  o.add("variant", variant)
    .add("algorithm", "sync_sgd")
    .add("workers", n)
    .add("threads", static_cast<int64_t>(threads))
    .add("params", data->num_features)
    .add("steps", steps)
    .add("reps", reps)
    .add("rounds_per_s", 1.0 / s)
    .add("us_per_round", s * 1e6)
    .add("us_per_worker_round", s * 1e6 / n)
    .add("bytes_per_round", bytes_per_round);
  if (grad_us > 0) {
    // What the rounds would cost if only the workers' gradients counted,
    // spread over the scheduler's threads.
    const double compute_us = grad_us * n / static_cast<double>(std::min<size_t>(threads, n));
    o.add("loss_grad_us", grad_us)
      .add("compute_bound_us_per_round", compute_us)
      .add("gbps_per_round", static_cast<double>(bytes_per_round) / s / 1e9);
  }
  bench::print(o);
}

// One loss_grad of the model on `data`, outside any actor (median, us).
double loss_grad_us(const dataset_ptr& data, int reps) {
  auto net = make_model("linear", data->num_features, data->num_classes);
  std::vector<float> w(static_cast<size_t>(net->num_params()), 0.0f);
  std::vector<float> g(w.size());
  int64_t idx = 0;
  std::vector<double> ts;
  for (int r = 0; r < reps + 1; ++r) {
    bench::timer t;
    // Like the worker: a fresh gradient block per call.
    mutable_buffer gb(w.size());
    net->loss_grad(w.data(), *data, &idx, 1, gb.data());
    bench::keep(gb[0]);
    if (r > 0)
      ts.push_back(t.seconds());
  }
  return bench::median(ts) * 1e6;
}

void run_all() {
  const bool quick = bench::quick();
  caf::actor_system_config cfg;
  configure_actor_system(cfg, threads);
  caf::actor_system sys{cfg};

  // Part 1: no compute. One round = N requests + N replies + a barrier.
  auto tiny = bench::make_regression_data(1, 4);
  for (int32_t n : {1, 4, 16, 64}) {
    const int64_t steps = quick ? 100 : (n >= 64 ? 1000 : 2000);
    bench::note("no-op model, " + std::to_string(n) + " workers");
    measure(sys, "noop", tiny, n, steps, quick ? 1 : 3, 0);
  }

  // Part 2: 1M parameters. Adds per worker a 4 MB gradient (allocated,
  // written, read by the mean) and the server's pass over N of them.
  const int64_t d = quick ? (int64_t{1} << 16) : (int64_t{1} << 20);
  auto wide = bench::make_regression_data(d, 1);
  const double grad_us = loss_grad_us(wide, quick ? 3 : 20);
  for (int32_t n : {1, 4, 16}) {
    const int64_t steps = quick ? 10 : (n >= 16 ? 50 : 100);
    bench::note("1M-parameter model, " + std::to_string(n) + " workers");
    measure(sys, "wide", wide, n, steps, quick ? 1 : 3, grad_us);
  }
}

} // namespace

int main() {
  try {
    run_all();
  } catch (const std::exception& e) {
    bench::note(std::string("protocol_overhead failed: ") + e.what());
    return 1;
  }
  return 0;
}
