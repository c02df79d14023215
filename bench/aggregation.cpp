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
// Run: build/bench/aggregation      (CHORUS_BENCH_QUICK=1 for a smoke run,
//      CHORUS_BENCH_ONLY=robust for the robust lines alone)
// Prints one JSON line per (k, n) for mean, one per n for all_finite, one
// "broadcast" line, then one "robust" line per (rule, n).
#include <caf/all.hpp>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "actors/system.hpp"
#include "actors/worker.hpp"
#include "bench/bench_util.hpp"
#include "engines/aggregators.hpp"
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

} // namespace

int main() {
  const bool quick = bench::quick();
  auto be = make_eigen_backend();
  // CHORUS_BENCH_ONLY=robust: only the robust rules' lines.
  const char* only = std::getenv("CHORUS_BENCH_ONLY");
  const bool robust_only = only != nullptr && std::string(only) == "robust";
  const std::vector<size_t> ks = {2, 8, 32};
  const std::vector<size_t> ns = quick ? std::vector<size_t>{size_t{1} << 16}
                                       : std::vector<size_t>{size_t{1} << 20, size_t{1} << 24};
  for (size_t n : robust_only ? std::vector<size_t>{} : ns)
    for (size_t k : ks) {
      // About 1 s of timed work per line at most: few reps for the 2 GB case.
      const double bytes = static_cast<double>(k + 1) * static_cast<double>(n) * 4;
      int reps = quick ? 3 : std::max(5, std::min(50, static_cast<int>(2e9 / bytes)));
      bench::note("mean k=" + std::to_string(k) + " n=" + std::to_string(n));
      bench_mean(*be, k, n, reps);
    }
  for (size_t n : robust_only ? std::vector<size_t>{} : ns)
    bench_all_finite(*be, n, quick ? 3 : 20);
  if (!robust_only)
    bench_broadcast(64, quick ? size_t{1} << 16 : size_t{1} << 20);
  const size_t d = quick ? size_t{1} << 14 : size_t{1} << 20;
  for (size_t n : {size_t{16}, size_t{64}})
    for (std::string rule : {"mean", "median", "krum", "gram"}) {
      bench::note("robust " + rule + " n=" + std::to_string(n) + " d=" + std::to_string(d));
      bench_robust(rule, n, d, quick ? 2 : 5);
    }
  return 0;
}
