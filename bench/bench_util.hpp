// Tiny helpers shared by every benchmark: a steady-clock timer, the median
// of repeated measurements, and the one output format (one JSON object per
// line on stdout, nothing else there; progress goes to stderr).
//
// Not a harness: each benchmark is a plain main() that measures, takes the
// median over a few repetitions and prints its lines.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <cmath>
#include <memory>
#include <random>

#include "data/dataset.hpp"
#include "engines/run_graph.hpp"
#include "messages/json.hpp"

namespace chorus::bench {

/// Seconds since construction (or the last reset), on the steady clock.
class timer {
public:
  timer() : t0_(clock::now()) {}
  void reset() { t0_ = clock::now(); }
  double seconds() const { return std::chrono::duration<double>(clock::now() - t0_).count(); }

private:
  using clock = std::chrono::steady_clock;
  clock::time_point t0_;
};

/// One protocol run timed end to end (the run_atom request, and the
/// monitor's flush that closes it).
struct run_result {
  double seconds = 0;
  run_summary summary;
};

/// Runs `protocol` on `graph` and times it; throws std::runtime_error if
/// the run fails.
inline run_result timed_run(run_graph& graph, protocol_actor protocol) {
  timer t;
  auto summary = graph.run(std::move(protocol));
  run_result r;
  r.seconds = t.seconds();
  if (!summary)
    throw std::runtime_error("run failed: " + describe(summary.error()));
  r.summary = std::move(*summary);
  return r;
}

/// A monitor that prints nothing (benchmarks print JSON lines only).
inline monitor_config quiet_monitor() {
  monitor_config mc;
  mc.progress = false;
  mc.quiet_log = true;
  return mc;
}

/// Median of `xs` (the mean of the two middle values for an even count).
inline double median(std::vector<double> xs) {
  if (xs.empty())
    return 0;
  std::sort(xs.begin(), xs.end());
  const size_t m = xs.size() / 2;
  return xs.size() % 2 ? xs[m] : 0.5 * (xs[m - 1] + xs[m]);
}

/// Runs `f` `reps` times and returns the median of its wall times in seconds.
template <class F>
double median_seconds(int reps, F&& f) {
  std::vector<double> ts;
  ts.reserve(static_cast<size_t>(reps));
  for (int r = 0; r < reps; ++r) {
    timer t;
    f();
    ts.push_back(t.seconds());
  }
  return median(std::move(ts));
}

/// A JSON line that starts with {"bench": name, ...}; print() writes it.
inline json_object line(const std::string& bench_name) {
  json_object o;
  o.add("bench", bench_name);
  return o;
}

/// Writes one JSON object as one line on stdout, flushed at once so a
/// partial run still leaves complete lines behind.
inline void print(const json_object& o) {
  std::fputs((o.str() + "\n").c_str(), stdout);
  std::fflush(stdout);
}

/// A progress note on stderr (stdout carries JSON only).
inline void note(const std::string& text) {
  std::fputs(("[bench] " + text + "\n").c_str(), stderr);
}

/// True when the environment asks for a quick run (CHORUS_BENCH_QUICK=1):
/// fewer repetitions and smaller sizes, for smoke tests.
inline bool quick() {
  const char* v = std::getenv("CHORUS_BENCH_QUICK");
  return v && *v && std::string(v) != "0";
}

/// Where the benchmarks read Fashion-MNIST: $CHORUS_FASHION_MNIST if set,
/// else Debian's dataset-fashion-mnist folder.
inline std::string fashion_mnist_dir() {
  const char* env = std::getenv("CHORUS_FASHION_MNIST");
  return env && *env ? env : default_fashion_mnist_dir;
}

/// A regression dataset for protocol benchmarks: `samples` samples of
/// `features` features, y = 0.5. Features are scaled by 1/sqrt(features) so
/// ||x||^2 < 1 and plain SGD with lr < 2 never diverges, whatever the width.
inline dataset_ptr make_regression_data(int64_t features, int64_t samples) {
  auto d = std::make_shared<dataset>();
  d->name = "bench-" + std::to_string(features);
  d->task = task_kind::regression;
  d->num_features = features;
  d->num_classes = 0;
  std::mt19937_64 rng(7);
  const float a = 1.0f / std::sqrt(static_cast<float>(features));
  std::uniform_real_distribution<float> u(-a, a);
  d->x.resize(static_cast<size_t>(features * samples));
  for (auto& v : d->x)
    v = u(rng);
  d->y.assign(static_cast<size_t>(samples), 0.5f);
  return d;
}

/// Keeps the compiler from discarding a computed value.
template <class T>
inline void keep(const T& value) {
  asm volatile("" : : "g"(&value) : "memory");
}

} // namespace chorus::bench
