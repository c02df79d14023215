// The server's aggregation hot path: backend::mean over k gradient buffers,
// measured against a plain streaming loop over the same bytes in the same
// binary. Both read k inputs once and write one output, so both move
// (k + 1) * n * 4 bytes; the ratio says how close mean() is to what a
// hand-written loop gets from memory (target >= 0.7).
//
// Also times all_finite, the other pass the server makes per round, and
// shows that a broadcast of one buffer to 64 actors copies no floats:
// 64 workers keep the same weights (apply), and buffer_stats counts the
// floats allocated meanwhile (expected: 0).
//
// Robust rules (engines/aggregators.hpp) on n = 16 and 64 worker vectors of
// d = 1M floats: the aggregator "mean", "median" (coordinate-wise, by
// selection per coordinate over blocks of 2048) and "krum" (its distances
// from the Gram matrix X^T X, a blocked double-precision rank update, i.e. a
// GEMM), plus gram_matrix alone. Each is given as GB/s of the n input
// vectors read once plus the output written ((n + 1) d 4 bytes) and as a
// ratio against the streaming mean of the same n vectors, timed in the same
// loop: mean should be near 1; median and krum do more work per byte (a
// selection of n values; n(n+1)/2 dot products per coordinate) and say how
// far from the memory bound that puts them.
//
// The sharded combine (engines/combiners.hpp, issue 16): a sync round's
// update w+ = w - eta mean_i g_i over N = 2, 8 gradients of 1M floats plus
// the finite check of w+, as the round server runs it: in one actor, and
// split over every scheduler thread (the actor computes one slice, combiner
// actors the others, requested and answered by messages). The reference is
// the all-core streaming bound: one std::thread per core, each running the
// same streaming loop over its slice of the same buffers ((N + 2) d 4 bytes:
// N gradients and w read, w+ written), and the one-core loop for scale.
// Lines "op":"sharded_combine"; CAF polling as `chorus train` sets it for a
// sync protocol on idle cores (--spin-polls auto: 100000) and CAF's default.
// The all-cores loop starts its threads in each repetition (tens of us), so
// ratio_split_best_stream also compares against the faster of the two loops.
//
// Run: build/bench/aggregation      (CHORUS_BENCH_QUICK=1 for a smoke run,
//      CHORUS_BENCH_ONLY=robust or =sharded for those lines alone)
// Prints one JSON line per (k, n) for mean, one per n for all_finite, one
// "broadcast" line, then one "robust" line per (rule, n).
#include <caf/all.hpp>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "actors/system.hpp"
#include "actors/worker.hpp"
#include "bench/bench_util.hpp"
#include "engines/aggregators.hpp"
#include "engines/combiners.hpp"
#include "gpu/backend.hpp"
#include "messages/type_ids.hpp"

using namespace chorus;

namespace {

// The reference: the same single pass over memory as mean(), written as plain
// loops the compiler vectorizes. The output chunk (8 KiB) stays in L1 while
// the k inputs stream past it once.
void streaming_mean(const std::vector<const float*>& xs, float* out, size_t n) {
  constexpr size_t chunk = 2048;
  const size_t k = xs.size();
  const float inv_k = 1.0f / static_cast<float>(k);
  for (size_t lo = 0; lo < n; lo += chunk) {
    const size_t hi = std::min(n, lo + chunk);
    const float* x0 = xs[0];
    for (size_t j = lo; j < hi; ++j)
      out[j] = x0[j];
    for (size_t i = 1; i < k; ++i) {
      const float* xi = xs[i];
      for (size_t j = lo; j < hi; ++j)
        out[j] += xi[j];
    }
    for (size_t j = lo; j < hi; ++j)
      out[j] *= inv_k;
  }
}

// The most naive form: one pass over elements, k loads per element (for
// context: compilers do not vectorize it, so it is compute bound).
void naive_mean(const std::vector<const float*>& xs, float* out, size_t n) {
  const size_t k = xs.size();
  const float inv_k = 1.0f / static_cast<float>(k);
  for (size_t j = 0; j < n; ++j) {
    float s = 0;
    for (size_t i = 0; i < k; ++i)
      s += xs[i][j];
    out[j] = s * inv_k;
  }
}

void bench_mean(backend& be, size_t k, size_t n, int reps) {
  // Inputs are real buffers, as the server sees them (distinct blocks).
  std::vector<buffer> inputs;
  inputs.reserve(k);
  for (size_t i = 0; i < k; ++i)
    inputs.push_back(mutable_buffer::filled(n, static_cast<float>(i)).freeze());
  std::vector<cview> views;
  std::vector<const float*> ptrs;
  for (auto& b : inputs) {
    views.push_back(b.span());
    ptrs.push_back(b.data());
  }
  auto out = mutable_buffer::filled(n, 0.0f);  // touched: no page faults in the timing
  const double bytes = static_cast<double>(k + 1) * static_cast<double>(n) * sizeof(float);

  // Interleave the three so drift in machine load hits all of them alike.
  std::vector<double> t_mean, t_stream, t_naive;
  be.mean(views, out.span());  // warm-up
  streaming_mean(ptrs, out.data(), n);
  for (int r = 0; r < reps; ++r) {
    bench::timer t;
    be.mean(views, out.span());
    t_mean.push_back(t.seconds());
    bench::keep(out[n / 2]);
    t.reset();
    streaming_mean(ptrs, out.data(), n);
    t_stream.push_back(t.seconds());
    bench::keep(out[n / 2]);
    if (r < 3) {  // slow and only for context: a few runs are enough
      t.reset();
      naive_mean(ptrs, out.data(), n);
      t_naive.push_back(t.seconds());
      bench::keep(out[n / 2]);
    }
  }
  be.mean(views, out.span());  // the checked result is mean()'s
  const double expected = static_cast<double>(k - 1) / 2.0;
  const bool correct = std::abs(out[0] - expected) < 1e-3 && std::abs(out[n - 1] - expected) < 1e-3;
  const double mean_s = bench::median(t_mean);
  const double stream_s = bench::median(t_stream);
  const double naive_s = bench::median(t_naive);
  const double mean_gbps = bytes / mean_s / 1e9;
  const double stream_gbps = bytes / stream_s / 1e9;
  auto o = bench::line("aggregation");
  o.add("op", "mean")
    .add("backend", be.name())
    .add("k", static_cast<int64_t>(k))
    .add("n", static_cast<int64_t>(n))
    .add("bytes", bytes)
    .add("reps", reps)
    .add("mean_ms", mean_s * 1e3)
    .add("mean_gbps", mean_gbps)
    .add("streaming_ms", stream_s * 1e3)
    .add("streaming_gbps", stream_gbps)
    .add("naive_gbps", bytes / naive_s / 1e9)
    .add("ratio", mean_gbps / stream_gbps)
    .add("correct", correct);
  bench::print(o);
}

// The other pass the server makes over every new w (and each worker over
// every gradient): all_finite, against a plain loop that reads the same
// bytes (an integer OR over the exponent bits; vectorizes).
bool streaming_all_finite(const float* x, size_t n) {
  uint32_t bad = 0;
  for (size_t j = 0; j < n; ++j) {
    uint32_t bits;
    std::memcpy(&bits, x + j, sizeof bits);
    bad |= static_cast<uint32_t>((bits & 0x7f800000u) == 0x7f800000u);
  }
  return bad == 0;
}

void bench_all_finite(backend& be, size_t n, int reps) {
  auto x = mutable_buffer::filled(n, 1.0f);
  x[n - 1] = 2.0f;
  std::vector<double> t_be, t_stream;
  bool ok_be = true, ok_stream = true;
  for (int r = 0; r < reps + 1; ++r) {
    bench::timer t;
    ok_be = be.all_finite(x.span()) && ok_be;
    const double a = t.seconds();
    t.reset();
    ok_stream = streaming_all_finite(x.data(), n) && ok_stream;
    const double b = t.seconds();
    if (r > 0)
      t_be.push_back(a), t_stream.push_back(b);
  }
  const double bytes = static_cast<double>(n) * sizeof(float);
  const double be_gbps = bytes / bench::median(t_be) / 1e9;
  const double stream_gbps = bytes / bench::median(t_stream) / 1e9;
  auto o = bench::line("aggregation");
  o.add("op", "all_finite")
    .add("backend", be.name())
    .add("n", static_cast<int64_t>(n))
    .add("bytes", bytes)
    .add("reps", reps)
    .add("backend_ms", bench::median(t_be) * 1e3)
    .add("backend_gbps", be_gbps)
    .add("streaming_ms", bench::median(t_stream) * 1e3)
    .add("streaming_gbps", stream_gbps)
    .add("ratio", be_gbps / stream_gbps)
    .add("correct", ok_be && ok_stream);
  bench::print(o);
}

// One weights buffer sent to 64 workers, each keeping it as its replica:
// inside one process that must share the block, not copy it.
void bench_broadcast(size_t receivers, size_t n) {
  caf::actor_system_config cfg;
  configure_actor_system(cfg, 2);
  caf::actor_system sys{cfg};
  // A one-sample dataset with n features, so a "linear" worker takes n weights.
  auto data = std::make_shared<dataset>();
  data->name = "broadcast";
  data->task = task_kind::regression;
  data->num_features = static_cast<int64_t>(n);
  data->x.assign(n, 0.0f);
  data->y.assign(1, 0.0f);
  std::vector<worker_actor> workers;
  for (size_t i = 0; i < receivers; ++i) {
    worker_config wc;
    wc.rank = static_cast<int32_t>(i);
    wc.model = "linear";
    wc.data = data;
    wc.batch = 1;
    workers.push_back(spawn_worker(sys, wc));
  }
  weights w{-1, 0, mutable_buffer::filled(n, 1.0f).freeze()};
  long use_count = 0;
  uint64_t floats = 0, blocks = 0;
  size_t acks = 0;
  double seconds = 0;
  {
    caf::scoped_actor self{sys};
    const uint64_t floats0 = buffer_stats::floats_allocated();
    const uint64_t blocks0 = buffer_stats::allocations();
    bench::timer t;
    for (auto& worker : workers)
      self->send(worker, apply_atom_v, w);
    for (size_t i = 0; i < receivers; ++i)
      self->receive([&](ok_atom) { ++acks; }, [&](caf::error&) {});
    seconds = t.seconds();
    floats = buffer_stats::floats_allocated() - floats0;
    blocks = buffer_stats::allocations() - blocks0;
    use_count = w.values.use_count();
  }
  for (auto& worker : workers)
    caf::anon_send_exit(worker, caf::exit_reason::user_shutdown);
  auto o = bench::line("aggregation");
  o.add("op", "broadcast")
    .add("receivers", static_cast<int64_t>(receivers))
    .add("n", static_cast<int64_t>(n))
    .add("acks", static_cast<int64_t>(acks))
    .add("floats_allocated", floats)
    .add("blocks_allocated", blocks)
    .add("use_count", static_cast<int64_t>(use_count))
    .add("us", seconds * 1e6);
  bench::print(o);
}

// One robust rule on n worker vectors of d floats against the streaming
// mean of the same vectors. "gram" times gram_matrix alone (Krum's GEMM).
void bench_robust(const std::string& rule, size_t n, size_t d, int reps) {
  // Distinct vectors with random entries: selection does real work.
  std::mt19937_64 rng(n * 31 + d);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<buffer> inputs;
  std::vector<const float*> ptrs;
  for (size_t i = 0; i < n; ++i) {
    mutable_buffer x(d);
    for (size_t j = 0; j < d; ++j)
      x[j] = normal(rng) + static_cast<float>(i) * 1e-3f;
    inputs.push_back(std::move(x).freeze());
    ptrs.push_back(inputs.back().data());
  }
  auto out = mutable_buffer::filled(d, 0.0f);
  const int f = static_cast<int>(n / 8);  // krum needs n > 2f + 2
  aggregator agg;
  if (rule != "gram")
    agg = make_aggregator(rule, f);
  double checksum = 0;
  auto run_rule = [&] {
    if (rule == "gram") {
      auto g = gram_matrix(inputs);
      checksum += g[0];
    } else {
      auto a = agg(inputs);
      checksum += a.value[0];
    }
  };
  run_rule();  // warm-up
  streaming_mean(ptrs, out.data(), d);
  std::vector<double> t_rule, t_stream;
  for (int r = 0; r < reps; ++r) {
    bench::timer t;
    run_rule();
    t_rule.push_back(t.seconds());
    t.reset();
    streaming_mean(ptrs, out.data(), d);
    t_stream.push_back(t.seconds());
    bench::keep(out[d / 2]);
  }
  bench::keep(static_cast<float>(checksum));
  const double bytes = static_cast<double>(n + 1) * static_cast<double>(d) * sizeof(float);
  const double rule_s = bench::median(t_rule), stream_s = bench::median(t_stream);
  auto o = bench::line("aggregation");
  o.add("op", "robust")
    .add("rule", rule)
    .add("n", static_cast<int64_t>(n))
    .add("d", static_cast<int64_t>(d))
    .add("f", static_cast<int64_t>(f))
    .add("bytes", bytes)
    .add("reps", reps)
    .add("rule_ms", rule_s * 1e3)
    .add("rule_gbps", bytes / rule_s / 1e9)
    .add("streaming_ms", stream_s * 1e3)
    .add("streaming_gbps", bytes / stream_s / 1e9)
    .add("ratio", stream_s / rule_s);
  bench::print(o);
}

// w+ = w + a mean_i x_i over [lo, hi), the streaming reference of the
// sharded combine (same blocking as streaming_mean).
void streaming_step(const float* w, const std::vector<const float*>& xs, float a, float* out,
                    size_t lo, size_t hi) {
  constexpr size_t chunk = 2048;
  const float scale = a / static_cast<float>(xs.size());
  for (size_t c = lo; c < hi; c += chunk) {
    const size_t e = std::min(hi, c + chunk);
    for (size_t j = c; j < e; ++j)
      out[j] = xs[0][j];
    for (size_t i = 1; i < xs.size(); ++i)
      for (size_t j = c; j < e; ++j)
        out[j] += xs[i][j];
    for (size_t j = c; j < e; ++j)
      out[j] = w[j] + scale * out[j];
  }
}

struct combine_host_state {
  std::unique_ptr<backend> be;
  std::optional<combiner_pool> pool;
};

// An actor that runs `task` with a combiner pool of `helpers` actors on
// each request, as the round server runs a round's combine.
caf::behavior combine_host(caf::stateful_actor<combine_host_state>* self, size_t helpers,
                           std::shared_ptr<const sliced_task> task) {
  self->state.be = make_eigen_backend();
  self->state.pool.emplace(self->system(), caf::actor_cast<caf::actor>(self), helpers, "eigen", 0);
  return {
    [self, task](run_atom) -> caf::result<bool> {
      auto rp = self->make_response_promise<bool>();
      self->state.pool->run(
        self, *self->state.be, task, [rp](bool finite) mutable { rp.deliver(finite); },
        [rp](const caf::error& err) mutable { rp.deliver(err); });
      return rp;
    },
  };
}

void bench_sharded(size_t n_grads, size_t d, int reps, size_t spin_polls) {
  const size_t cores = std::max<unsigned>(1, std::thread::hardware_concurrency());
  std::vector<buffer> grads;
  std::vector<const float*> ptrs;
  std::vector<cview> views;
  for (size_t i = 0; i < n_grads; ++i) {
    grads.push_back(mutable_buffer::filled(d, static_cast<float>(i)).freeze());
    ptrs.push_back(grads.back().data());
    views.push_back(grads.back().span());
  }
  auto w = mutable_buffer::filled(d, 1.0f).freeze();
  auto out = std::make_shared<mutable_buffer>(mutable_buffer::filled(d, 0.0f));
  const float a = -0.1f;
  const double bytes = static_cast<double>(n_grads + 2) * static_cast<double>(d) * sizeof(float);

  auto make_task = [&](size_t slices) {
    auto task = std::make_shared<sliced_task>();
    task->bounds = slice_bounds(d, slices);
    task->run = [views, w, out, a](backend& be, size_t lo, size_t hi) {
      auto cut = [lo, hi](cview x) { return cview{x.data + lo, hi - lo, x.kind, x.ops}; };
      std::vector<cview> xs;
      for (auto& v : views)
        xs.push_back(cut(v));
      view o{out->data() + lo, hi - lo};
      be.mean_axpy(cut(w.span()), xs, a, o);
      return be.all_finite(o);
    };
    return std::shared_ptr<const sliced_task>(task);
  };

  caf::actor_system_config cfg;
  configure_actor_system(cfg, cores, spin_polls);
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  auto one = sys.spawn(combine_host, size_t{0}, make_task(1));
  auto split = sys.spawn(combine_host, cores - 1, make_task(cores));
  auto round_trip = [&](const caf::actor& host) {
    bool finite = false;
    self->request(host, caf::infinite, run_atom_v)
      .receive([&](bool f) { finite = f; },
               [&](caf::error& err) { throw std::runtime_error(to_string(err)); });
    return finite;
  };
  auto stream_all = [&] {
    std::vector<std::thread> ts;
    auto bounds = slice_bounds(d, cores);
    for (size_t c = 0; c < cores; ++c)
      ts.emplace_back(
        [&, c] { streaming_step(w.data(), ptrs, a, out->data(), bounds[c], bounds[c + 1]); });
    for (auto& t : ts)
      t.join();
  };
  round_trip(one), round_trip(split), stream_all();  // warm-up
  std::vector<double> t_one, t_split, t_all, t_core;
  bool finite = true;
  for (int r = 0; r < reps; ++r) {
    bench::timer t;
    finite = round_trip(one) && finite;
    t_one.push_back(t.seconds());
    t.reset();
    finite = round_trip(split) && finite;
    t_split.push_back(t.seconds());
    t.reset();
    stream_all();
    t_all.push_back(t.seconds());
    t.reset();
    streaming_step(w.data(), ptrs, a, out->data(), 0, d);
    t_core.push_back(t.seconds());
  }
  // Check the split result against the formula: w + a mean(0..N-1).
  round_trip(split);
  const float expected = 1.0f + a * static_cast<float>(n_grads - 1) / 2.0f;
  const bool correct = finite && std::abs((*out)[0] - expected) < 1e-4f
                       && std::abs((*out)[d - 1] - expected) < 1e-4f;
  self->send_exit(one, caf::exit_reason::user_shutdown);
  self->send_exit(split, caf::exit_reason::user_shutdown);
  const double s_one = bench::median(t_one), s_split = bench::median(t_split);
  const double s_all = bench::median(t_all), s_core = bench::median(t_core);
  auto o = bench::line("aggregation");
  o.add("op", "sharded_combine")
    .add("grads", static_cast<int64_t>(n_grads))
    .add("n", static_cast<int64_t>(d))
    .add("threads", static_cast<int64_t>(cores))
    .add("spin_polls", static_cast<int64_t>(spin_polls))
    .add("reps", reps)
    .add("one_actor_ms", s_one * 1e3)
    .add("split_ms", s_split * 1e3)
    .add("streaming_all_cores_ms", s_all * 1e3)
    .add("streaming_one_core_ms", s_core * 1e3)
    .add("split_gbps", bytes / s_split / 1e9)
    .add("streaming_all_cores_gbps", bytes / s_all / 1e9)
    .add("ratio_split", s_all / s_split)
    // Against the faster of the two loops: the all-cores one pays for
    // starting its threads (tens of us), and one core may already take the
    // whole memory bandwidth.
    .add("ratio_split_best_stream", std::min(s_all, s_core) / s_split)
    .add("ratio_one_actor", s_all / s_one)
    .add("speedup_split", s_one / s_split)
    .add("correct", correct);
  bench::print(o);
}

} // namespace

int main() {
  const bool quick = bench::quick();
  auto be = make_eigen_backend();
  // CHORUS_BENCH_ONLY=robust: only the robust rules' lines.
  const char* only = std::getenv("CHORUS_BENCH_ONLY");
  const bool robust_only = only != nullptr && std::string(only) == "robust";
  const bool sharded_only = only != nullptr && std::string(only) == "sharded";
  const std::vector<size_t> ks = {2, 8, 32};
  const std::vector<size_t> ns = quick ? std::vector<size_t>{size_t{1} << 16}
                                       : std::vector<size_t>{size_t{1} << 20, size_t{1} << 24};
  for (size_t n : robust_only || sharded_only ? std::vector<size_t>{} : ns)
    for (size_t k : ks) {
      // About 1 s of timed work per line at most: few reps for the 2 GB case.
      const double bytes = static_cast<double>(k + 1) * static_cast<double>(n) * 4;
      int reps = quick ? 3 : std::max(5, std::min(50, static_cast<int>(2e9 / bytes)));
      bench::note("mean k=" + std::to_string(k) + " n=" + std::to_string(n));
      bench_mean(*be, k, n, reps);
    }
  for (size_t n : robust_only || sharded_only ? std::vector<size_t>{} : ns)
    bench_all_finite(*be, n, quick ? 3 : 20);
  if (!robust_only && !sharded_only)
    bench_broadcast(64, quick ? size_t{1} << 16 : size_t{1} << 20);
  for (size_t spin : {lockstep_spin_polls, default_spin_polls})
    for (size_t grads : {size_t{2}, size_t{8}}) {
      if (robust_only)
        break;
      bench::note("sharded combine of " + std::to_string(grads) + " x 1M floats, spin polls "
                  + std::to_string(spin));
      bench_sharded(grads, quick ? size_t{1} << 16 : size_t{1} << 20, quick ? 5 : 40, spin);
    }
  const size_t d = quick ? size_t{1} << 14 : size_t{1} << 20;
  for (size_t n : sharded_only ? std::vector<size_t>{} : std::vector<size_t>{16, 64})
    for (std::string rule : {"mean", "median", "krum", "gram"}) {
      bench::note("robust " + rule + " n=" + std::to_string(n) + " d=" + std::to_string(d));
      bench_robust(rule, n, d, quick ? 2 : 5);
    }
  return 0;
}
