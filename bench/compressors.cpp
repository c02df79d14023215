// Encode + decode throughput of every compressor (engines/compressors.hpp)
// on one vector of 16M floats, against a memory-streaming loop in the same
// binary: y_i = a x_i over the same 16M floats (one read and one write of
// the vector, the least any encode + decode pair moves: the encoder reads
// v once, the decoder writes d floats once). The target: qsgd and
// topk at >= 0.3 of the streaming loop.
//
// Run: build/bench/compressors [SPEC...]   (CHORUS_BENCH_QUICK=1: 1M floats;
//      SPECs replace the default list, e.g. qsgd:4 to profile one)
// Prints one JSON line per compressor:
//   {"bench":"compressors","codec":"qsgd:4","d":16777216,
//    "encode_gbs":...,"decode_gbs":...,"roundtrip_gbs":...,
//    "stream_gbs":...,"ratio":...,"payload_bytes":...}
// where *_gbs is d * 4 bytes (the input vector) over the median time, and
// ratio = roundtrip_gbs / stream_gbs (the streaming loop timed in the same
// repetition loop, right before). Timings on a shared machine: compare the
// ratios, not the GB/s.
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "bench/bench_util.hpp"
#include "engines/compressors.hpp"

using namespace chorus;

namespace {

// y = a x, written so the compiler vectorizes it: the reference pass.
void stream_scale(const float* x, float* y, size_t n, float a) {
  for (size_t i = 0; i < n; ++i)
    y[i] = a * x[i];
}

} // namespace

int main(int argc, char** argv) {
  const size_t d = bench::quick() ? (size_t{1} << 20) : (size_t{1} << 24);
  const int reps = bench::quick() ? 2 : 5;
  bench::note("compressors: d = " + std::to_string(d) + ", " + std::to_string(reps)
              + " repetitions each");
  std::vector<float> v(d);
  std::mt19937_64 rng(11);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (auto& x : v)
    x = normal(rng);
  const buffer input = buffer::from(v);
  std::vector<float> y(d);
  stream_scale(v.data(), y.data(), d, 0.5f);  // touch y once
  const double gb = static_cast<double>(d) * 4 / 1e9;
  // Specs on the command line replace the default list (for profiling one).
  std::vector<std::string> specs = {"none", "qsgd:4", "qsgd:16", "topk:0.01", "randk:0.01", "sign"};
  if (argc > 1)
    specs.assign(argv + 1, argv + argc);
  for (const auto& spec : specs) {  // every spec checked before any is timed
    try {
      (void)make_compressor(spec);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "usage: compressors [SPEC...] (default: none qsgd:4 qsgd:16 topk:0.01 randk:0.01 sign; CHORUS_BENCH_QUICK=1 "
                           "for 1M floats)\n  %s\n", e.what());
      return 2;
    }
  }
  for (const auto& spec : specs) {
    auto c = make_compressor(spec);
    std::vector<double> stream, enc, dec;
    size_t payload_bytes = 0;
    for (int r = 0; r < reps; ++r) {
      bench::timer t;
      stream_scale(v.data(), y.data(), d, 0.5f + float(r));
      bench::keep(y[d / 2]);
      stream.push_back(t.seconds());
      t.reset();
      buffer payload = c.encode(input, 42 + uint64_t(r));
      enc.push_back(t.seconds());
      payload_bytes = payload.size() * 4;
      t.reset();
      buffer out = decode(payload, d);
      dec.push_back(t.seconds());
      bench::keep(out[d / 2]);
    }
    const double s = bench::median(stream), e = bench::median(enc), de = bench::median(dec);
    std::vector<double> both(enc.size());
    for (size_t i = 0; i < enc.size(); ++i)
      both[i] = enc[i] + dec[i];
    const double rt = bench::median(both);
    auto line = bench::line("compressors");
    line.add("codec", spec)
      .add("d", static_cast<int64_t>(d))
      .add("encode_gbs", gb / e)
      .add("decode_gbs", gb / de)
      .add("roundtrip_gbs", gb / rt)
      .add("stream_gbs", gb / s)
      .add("ratio", s / rt)
      .add("payload_bytes", static_cast<int64_t>(payload_bytes));
    bench::print(line);
  }
  return 0;
}
