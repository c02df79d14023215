// The compressors and error feedback of engines/compressors.hpp: every
// registry entry through the same contract (sizes, decode, serialization at
// the advertised size), then each codec's own promise (unbiased, variance,
// the k largest, the sign's scale), corrupt payloads, and the feedback
// memories.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <caf/binary_deserializer.hpp>
#include <caf/binary_serializer.hpp>
#include <gtest/gtest.h>

#include "algorithms/compressed_link.hpp"
#include "engines/compressors.hpp"
#include "tests/test_util.hpp"

namespace chorus {
namespace {

std::vector<float> random_vector(size_t d, uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(d);
  for (auto& x : v)
    x = dist(gen);
  return v;
}

double norm2(const std::vector<float>& v) {
  double s = 0;
  for (float x : v)
    s += double(x) * x;
  return s;
}

const std::vector<std::string> specs = {"none",      "qsgd:1",     "qsgd:4",  "qsgd:255",
                                        "topk:0.1",  "topk:1",     "randk:0.25", "sign"};

TEST(compressors, every_registry_entry_is_built_by_name_and_unknown_names_list_them) {
  for (auto& c : compressor_registry()) {
    std::string spec = c.usage;
    if (auto colon = spec.find(':'); colon != std::string::npos)
      spec = spec.substr(0, colon) + (c.name == "qsgd" ? ":4" : ":0.5");
    auto comp = make_compressor(spec);
    EXPECT_EQ(comp.name(), spec);
    EXPECT_EQ(comp.unbiased(), c.unbiased) << spec;
  }
  try {
    make_compressor("zip");
    FAIL() << "an unknown compressor was accepted";
  } catch (const std::invalid_argument& e) {
    for (auto& c : compressor_registry())
      EXPECT_NE(std::string(e.what()).find(c.usage), std::string::npos) << e.what();
  }
  for (auto bad : {"qsgd", "qsgd:0", "qsgd:70000", "qsgd:x", "topk", "topk:0", "topk:1.5",
                   "randk:-1", "sign:3", "none:1"})
    EXPECT_THROW(make_compressor(bad), std::invalid_argument) << bad;
}

// Sizes 0, 1 and 1000, every codec: the payload holds exactly the
// advertised bytes (rounded to 4), decodes to d floats, and crosses CAF's
// binary serializer at its wire size and unchanged.
TEST(compressors, every_codec_round_trips_through_serialization_at_the_advertised_size) {
  test::test_system ts;
  for (auto& spec : specs) {
    auto c = make_compressor(spec);
    for (size_t d : {size_t{0}, size_t{1}, size_t{1000}}) {
      auto v = random_vector(d, 7 + d);
      auto payload = c.encode(buffer::from(v), 42);
      const size_t advertised = c.encoded_bytes(d);
      EXPECT_EQ(payload.size(), (advertised + 3) / 4) << spec << " d=" << d;
      std::vector<char> bytes;
      caf::binary_serializer sink{ts.sys, bytes};
      ASSERT_FALSE(sink(payload));
      EXPECT_EQ(bytes.size(), payload.wire_bytes()) << spec;
      EXPECT_EQ(bytes.size(), sizeof(uint64_t) + 4 * ((advertised + 3) / 4)) << spec;
      buffer back;
      caf::binary_deserializer source{ts.sys, bytes};
      ASSERT_FALSE(source(back));
      auto x = decode(payload, d).to_vector();
      auto y = decode(back, d).to_vector();
      ASSERT_EQ(x.size(), d) << spec;
      if (d > 0)  // memcmp of two empty vectors' null pointers is undefined
        EXPECT_EQ(0, std::memcmp(x.data(), y.data(), 4 * d)) << spec;
      if (spec == "none" || spec == "topk:1")
        EXPECT_EQ(x, v) << spec;  // lossless
    }
  }
  // The sizes are what the header comment promises: qsgd:4 is 1 + 3 bits
  // per entry, sign 1 bit, topk 8 bytes per kept entry, randk 4.
  EXPECT_EQ(make_compressor("qsgd:4").encoded_bytes(1000), 24u + 4 + 500);
  EXPECT_EQ(make_compressor("qsgd:1").encoded_bytes(1000), 24u + 4 + 250);
  EXPECT_EQ(make_compressor("sign").encoded_bytes(1000), 24u + 4 + 125);
  EXPECT_EQ(make_compressor("topk:0.1").encoded_bytes(1000), 24u + 800);
  EXPECT_EQ(make_compressor("randk:0.1").encoded_bytes(1000), 24u + 400);
}

TEST(compressors, a_gradient_marked_encoded_keeps_its_mark_across_serialization) {
  test::test_system ts;
  gradient g{3, 9, make_compressor("qsgd:4").encode(buffer::from(random_vector(100, 1)), 5),
             0.5f, 8, true};
  std::vector<char> bytes;
  caf::binary_serializer sink{ts.sys, bytes};
  ASSERT_FALSE(sink(g));
  gradient back;
  caf::binary_deserializer source{ts.sys, bytes};
  ASSERT_FALSE(source(back));
  EXPECT_TRUE(back.encoded);
  EXPECT_EQ(back.values.to_vector(), g.values.to_vector());
}

// Mean of N seeded decodes against v, coordinate by coordinate, within
// 5 standard errors of the codec's own per-coordinate variance bound.
// Returns the number of coordinates outside.
size_t coordinates_outside_bound(const compressor& c, const std::vector<float>& v, int n,
                                 const std::vector<double>& var_bound) {
  std::vector<double> mean(v.size(), 0.0);
  for (int t = 0; t < n; ++t) {
    auto x = decode(c.encode(buffer::from(v), 1000 + t), v.size());
    for (size_t i = 0; i < v.size(); ++i)
      mean[i] += x[i] / n;
  }
  size_t outside = 0;
  for (size_t i = 0; i < v.size(); ++i) {
    double tol = 5 * std::sqrt(var_bound[i] / n) + 1e-5 * (std::fabs(v[i]) + 1e-3);
    outside += std::fabs(mean[i] - v[i]) > tol;
  }
  return outside;
}

TEST(compressors, qsgd_is_unbiased_and_its_variance_is_within_its_bound) {
  const size_t d = 256;
  auto v = random_vector(d, 3);
  const double nv = norm2(v);
  for (uint32_t s : {1u, 4u, 16u}) {
    auto c = make_compressor("qsgd:" + std::to_string(s));
    // Var of entry i: (||v||/S)^2 p_i (1 - p_i) <= (||v||/S)^2 / 4.
    std::vector<double> var(d, nv / (double(s) * s) / 4);
    EXPECT_EQ(coordinates_outside_bound(c, v, 4000, var), 0u) << "S=" << s;
    // The total variance: measured, against the exact value and the bound.
    double exact = 0;
    for (float x : v) {
      double r = std::fabs(x) / std::sqrt(nv) * s;
      double p = r - std::floor(r);
      exact += nv / (double(s) * s) * p * (1 - p);
    }
    const int n = 2000;
    double measured = 0;
    for (int t = 0; t < n; ++t) {
      auto x = decode(c.encode(buffer::from(v), 77 + t), d);
      for (size_t i = 0; i < d; ++i)
        measured += (double(x[i]) - v[i]) * (double(x[i]) - v[i]) / n;
    }
    const double bound = std::min(d / double(s * s), std::sqrt(double(d)) / s) * nv;
    EXPECT_LE(measured, bound) << "S=" << s;
    EXPECT_NEAR(measured, exact, 0.1 * exact) << "S=" << s;
  }
  // The check can fail: the scaled sign is biased and misses many coordinates.
  EXPECT_GT(coordinates_outside_bound(make_compressor("sign"), v, 200,
                                      std::vector<double>(d, 1e-4)),
            d / 2);
}

// QSGD's uniforms come from 32 interleaved streams (engines/compressors.cpp,
// qsgd_streams): the same seed gives the same payload, another seed another
// one, and the roundings of neighbouring entries (the next stream) and of
// entries 32 apart (the same stream's next output) are uncorrelated. A
// length past several 256-entry blocks, with a partial last round (1000 =
// 31 x 32 + 8). Fails if the streams were seeded alike (correlation 1).
TEST(compressors, qsgd_is_deterministic_per_seed_and_its_roundings_are_uncorrelated) {
  const size_t d = 1000;
  const uint32_t s = 16;
  const std::vector<float> v(d, 0.25f);  // r_i = 16/sqrt(1000) = 0.506 for every i
  const double r = s / std::sqrt(double(d)), p = r - std::floor(r);
  auto c = make_compressor("qsgd:" + std::to_string(s));
  EXPECT_EQ(c.encode(buffer::from(v), 5).to_vector(), c.encode(buffer::from(v), 5).to_vector());
  EXPECT_NE(c.encode(buffer::from(v), 5).to_vector(), c.encode(buffer::from(v), 6).to_vector());
  const int seeds = 400;
  double ups = 0, lag1 = 0, lag32 = 0;
  for (int t = 0; t < seeds; ++t) {
    auto x = decode(c.encode(buffer::from(v), 1000 + t), d).to_vector();
    std::vector<double> z(d);  // (up_i - p) / sqrt(p (1 - p)): mean 0, variance 1
    for (size_t i = 0; i < d; ++i) {
      const double up = x[i] > 0 ? 1 : 0;
      ups += up;
      z[i] = (up - p) / std::sqrt(p * (1 - p));
    }
    for (size_t i = 0; i + 32 < d; ++i) {
      lag1 += z[i] * z[i + 1];
      lag32 += z[i] * z[i + 32];
    }
  }
  const double pairs = double(seeds) * (d - 32);
  // Each mean is over 387k products of variance 1: std 0.0016.
  EXPECT_NEAR(lag1 / pairs, 0.0, 0.01);
  EXPECT_NEAR(lag32 / pairs, 0.0, 0.01);
  EXPECT_NEAR(ups / (double(seeds) * d), p, 0.01);  // std 0.0008
}

TEST(compressors, randk_is_unbiased_keeps_k_entries_and_scales_them_by_d_over_k) {
  const size_t d = 200;
  auto v = random_vector(d, 4);
  auto c = make_compressor("randk:0.1");
  const size_t k = kept_entries(0.1, d);
  ASSERT_EQ(k, 20u);
  // Var of entry i: v_i^2 (d/k - 1).
  std::vector<double> var(d);
  for (size_t i = 0; i < d; ++i)
    var[i] = double(v[i]) * v[i] * (double(d) / k - 1);
  EXPECT_EQ(coordinates_outside_bound(c, v, 6000, var), 0u);
  auto x = decode(c.encode(buffer::from(v), 9), d);
  size_t kept = 0;
  for (size_t i = 0; i < d; ++i)
    if (x[i] != 0) {
      ++kept;
      EXPECT_FLOAT_EQ(x[i], v[i] * float(d) / float(k));
    }
  EXPECT_EQ(kept, k);
  // Another seed, other indices; the same seed, the same payload.
  EXPECT_NE(decode(c.encode(buffer::from(v), 10), d).to_vector(), x.to_vector());
  EXPECT_EQ(c.encode(buffer::from(v), 9).to_vector(), c.encode(buffer::from(v), 9).to_vector());
}

TEST(compressors, topk_keeps_exactly_the_k_largest_magnitudes_and_ties_go_to_the_lower_index) {
  const size_t d = 1000;
  auto v = random_vector(d, 5);
  for (double f : {0.001, 0.01, 0.1, 0.5}) {
    const size_t k = kept_entries(f, d);
    auto x = decode(make_compressor("topk:" + std::to_string(f)).encode(buffer::from(v), 0), d);
    std::vector<size_t> order(d);
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(),
              [&](size_t a, size_t b) { return std::fabs(v[a]) > std::fabs(v[b]); });
    std::vector<bool> top(d, false);
    for (size_t j = 0; j < k; ++j)
      top[order[j]] = true;
    for (size_t i = 0; i < d; ++i)
      EXPECT_EQ(x[i], top[i] ? v[i] : 0.0f) << "f=" << f << " i=" << i;
  }
  // Ties: eight entries of equal magnitude, keep 3: indices 0, 1, 2.
  std::vector<float> tie = {-1, 1, 1, -1, 1, 1, -1, 1};
  auto x = decode(make_compressor("topk:0.375").encode(buffer::from(tie), 0), 8).to_vector();
  EXPECT_EQ(x, (std::vector<float>{-1, 1, 1, 0, 0, 0, 0, 0}));
}

// Every level width W = 1 + ceil(log2(S+1)) (2..17 bits: each has its own
// packing code) and lengths around the 32-entry groups and 256-entry
// blocks: each decoded entry is sign(v_i) ||v|| l / S with l = floor(r_i)
// or floor(r_i) + 1, r_i = S |v_i| / ||v||.
TEST(compressors, qsgd_levels_round_trip_at_every_width_and_length) {
  for (uint32_t s : {1u, 2u, 3u, 4u, 7u, 8u, 15u, 16u, 100u, 255u, 256u, 4095u, 65535u})
    for (size_t d : {1u, 31u, 32u, 33u, 255u, 256u, 257u, 1000u}) {
      auto v = random_vector(d, 3 * d + s);
      auto x = decode(make_compressor("qsgd:" + std::to_string(s)).encode(buffer::from(v), 77), d)
                 .to_vector();
      double sq = 0;
      for (float e : v)
        sq += double(e) * e;
      const double norm = std::sqrt(sq), unit = norm / s;
      size_t bad = 0;
      for (size_t i = 0; i < d; ++i) {
        const double r = s * std::fabs(v[i]) / norm, l = std::fabs(x[i]) / unit;
        // r_i and the decode are single precision: allow their rounding.
        const double tol = 1e-3 + 1e-6 * s;
        const bool level_ok = std::fabs(l - std::round(l)) < tol
                              && std::round(l) >= std::floor(r - tol)
                              && std::round(l) <= std::floor(r + tol) + 1;
        const bool sign_ok = x[i] == 0 || (x[i] < 0) == (v[i] < 0);
        bad += level_ok && sign_ok ? 0 : 1;
      }
      EXPECT_EQ(bad, 0u) << "qsgd:" << s << " d=" << d;
    }
}

// The top-k choice by its definition: sort by (|v_i| desc, i asc), NaN as
// the largest magnitude; keep the first k.
std::vector<float> topk_by_sorting(const std::vector<float>& v, size_t k) {
  auto mag = [&](size_t i) {
    float a = std::fabs(v[i]);
    return std::isnan(a) ? INFINITY : a;
  };
  std::vector<size_t> order(v.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return mag(a) > mag(b) || (mag(a) == mag(b) && a < b);
  });
  std::vector<float> x(v.size(), 0.0f);
  for (size_t j = 0; j < k; ++j)
    x[order[j]] = v[order[j]];
  return x;
}

// Large vectors take the sampled-bound path of encode_topk: the same
// choice as sorting, with many ties, NaNs, and a vector whose strided
// sample misleads the bound (every sampled entry large, too few of them).
TEST(compressors, topk_on_large_vectors_matches_sorting_with_ties_nans_and_a_misleading_sample) {
  const size_t d = size_t{1} << 20;
  auto same = [&](const std::vector<float>& v, double f, const char* what) {
    const size_t k = kept_entries(f, d);
    auto x = decode(make_compressor("topk:" + std::to_string(f)).encode(buffer::from(v), 0), d)
               .to_vector();
    auto want = topk_by_sorting(v, k);
    size_t differ = 0;
    for (size_t i = 0; i < d; ++i)
      differ += std::memcmp(&x[i], &want[i], 4) != 0 ? 1 : 0;
    EXPECT_EQ(differ, 0u) << what << " f=" << f;
  };
  auto v = random_vector(d, 21);
  same(v, 0.01, "random");
  same(v, 0.2, "random");
  // Magnitudes from eight values only: the threshold falls inside a tie.
  std::vector<float> ties(d);
  for (size_t i = 0; i < d; ++i)
    ties[i] = float((i * 2654435761u) % 8) * ((i & 1) ? -1.0f : 1.0f);
  ties[12345] = NAN;
  same(ties, 0.01, "ties");
  same(ties, 0.3, "ties");
  // The strided sample (every d/8192-th entry) sees only large entries.
  std::vector<float> tricky(d, 1.0f);
  for (size_t i = 0; i < d; i += d / 8192)
    tricky[i] = 2.0f + float(i) * 1e-9f;
  same(tricky, 0.1, "misleading sample");
}

TEST(compressors, sign_sends_the_sign_scaled_by_the_mean_magnitude) {
  std::vector<float> v = {3, -1, 0, -4, 2};
  const float scale = (3 + 1 + 0 + 4 + 2) / 5.0f;
  auto x = decode(make_compressor("sign").encode(buffer::from(v), 0), 5).to_vector();
  EXPECT_EQ(x, (std::vector<float>{scale, -scale, scale, -scale, scale}));
  // ||D(C(v))||_1 = ||v||_1.
  auto w = random_vector(999, 6);
  auto y = decode(make_compressor("sign").encode(buffer::from(w), 0), 999);
  double l1v = 0, l1y = 0;
  for (size_t i = 0; i < w.size(); ++i)
    l1v += std::fabs(w[i]), l1y += std::fabs(y[i]);
  EXPECT_NEAR(l1y, l1v, 1e-4 * l1v);
}

// A payload's bytes, changed by `edit`, as a buffer.
buffer edited(const buffer& payload, const std::function<void(unsigned char*)>& edit,
              long extra_floats = 0) {
  std::vector<float> f = payload.to_vector();
  f.resize(static_cast<size_t>(long(f.size()) + extra_floats), 0.0f);
  edit(reinterpret_cast<unsigned char*>(f.data()));
  return buffer::from(f);
}

TEST(compressors, corrupt_payloads_are_refused_without_a_crash_or_a_large_allocation) {
  const size_t d = 100;
  auto v = random_vector(d, 8);
  auto none = [](unsigned char*) {};
  auto qsgd = make_compressor("qsgd:4").encode(buffer::from(v), 1);
  auto topk = make_compressor("topk:0.1").encode(buffer::from(v), 1);
  auto randk = make_compressor("randk:0.1").encode(buffer::from(v), 1);
  EXPECT_NO_THROW(decode(qsgd, d));
  EXPECT_THROW(decode(buffer{}, d), std::invalid_argument);
  EXPECT_THROW(decode(buffer::from(v), d), std::invalid_argument);  // raw floats: no magic
  EXPECT_THROW(decode(qsgd, d + 1), std::invalid_argument);        // not the expected d
  EXPECT_THROW(decode(edited(qsgd, none, -1), d), std::invalid_argument);  // truncated
  EXPECT_THROW(decode(edited(qsgd, none, 1), d), std::invalid_argument);   // trailing bytes
  EXPECT_THROW(decode(edited(qsgd, [](unsigned char* p) { p[0] = 'X'; }), d),
               std::invalid_argument);
  EXPECT_THROW(decode(edited(qsgd, [](unsigned char* p) { p[2] = 9; }), d), std::invalid_argument);
  EXPECT_THROW(decode(edited(qsgd, [](unsigned char* p) { p[3] = 17; }), d), std::invalid_argument);
  // qsgd:4 writes 3 level bits; level 7 > S = 4.
  EXPECT_THROW(decode(edited(qsgd, [](unsigned char* p) { p[28] = 0xff; }), d),
               std::invalid_argument);
  // A NaN norm.
  EXPECT_THROW(decode(edited(qsgd, [](unsigned char* p) {
                 float nan = std::nanf("");
                 std::memcpy(p + 24, &nan, 4);
               }), d),
               std::invalid_argument);
  // topk: an index past d, and two indices out of order.
  EXPECT_THROW(decode(edited(topk, [](unsigned char* p) {
                 uint32_t i = 5000;
                 std::memcpy(p + 24, &i, 4);
               }), d),
               std::invalid_argument);
  EXPECT_THROW(decode(edited(topk, [](unsigned char* p) {
                 uint32_t i;
                 std::memcpy(&i, p + 28, 4);
                 std::memcpy(p + 24, &i, 4);
               }), d),
               std::invalid_argument);
  // k larger than d.
  EXPECT_THROW(decode(edited(randk, [](unsigned char* p) {
                 uint32_t k = 1000;
                 std::memcpy(p + 4, &k, 4);
               }), d),
               std::invalid_argument);
  // A header claiming d = 2^60: refused against the expected d before any
  // allocation.
  auto huge = edited(randk, [](unsigned char* p) {
    uint64_t big = uint64_t{1} << 60;
    std::memcpy(p + 8, &big, 8);
  });
  const auto before = buffer_stats::floats_allocated();
  EXPECT_THROW(decode(huge, d), std::invalid_argument);
  EXPECT_EQ(buffer_stats::floats_allocated(), before);
  // Random byte flips anywhere: a clean error or d floats, never a crash.
  std::mt19937 gen(1);
  for (auto& spec : specs) {
    auto p = make_compressor(spec).encode(buffer::from(v), 3);
    for (int t = 0; t < 300; ++t) {
      auto bad = edited(p, [&](unsigned char* b) {
        size_t at = gen() % (p.size() * 4);
        b[at] ^= static_cast<unsigned char>(1 + gen() % 255);
      });
      try {
        EXPECT_EQ(decode(bad, d).size(), d);
      } catch (const std::invalid_argument&) {
      }
    }
  }
}

TEST(error_feedback, ef_keeps_what_was_not_sent_and_loses_nothing_over_time) {
  const size_t d = 64;
  feedback_encoder enc(make_compressor("topk:0.1"), feedback_kind::ef);
  feedback_decoder dec(feedback_kind::ef);
  std::vector<double> sum_g(d, 0), sum_sent(d, 0);
  for (int t = 0; t < 20; ++t) {
    auto g = random_vector(d, 100 + t);
    auto e_before = enc.memory().empty() ? std::vector<float>(d, 0.0f) : enc.memory();
    auto payload = enc.encode(buffer::from(g), t);
    auto sent = dec.decode(payload, d);
    for (size_t i = 0; i < d; ++i) {
      // e_{t+1} = g_t + e_t - D(C(g_t + e_t)).
      EXPECT_NEAR(enc.memory()[i], g[i] + e_before[i] - sent[i], 1e-5);
      sum_g[i] += g[i];
      sum_sent[i] += sent[i];
    }
  }
  // Telescoping: sum_t D(C(p_t)) = sum_t g_t - e_T.
  for (size_t i = 0; i < d; ++i)
    EXPECT_NEAR(sum_sent[i], sum_g[i] - enc.memory()[i], 1e-3);
  // Without feedback nothing is remembered.
  feedback_encoder plain(make_compressor("topk:0.1"), feedback_kind::none);
  plain.encode(buffer::from(random_vector(d, 1)), 0);
  EXPECT_TRUE(plain.memory().empty());
  EXPECT_THROW(make_feedback("ef3"), std::invalid_argument);
}

TEST(error_feedback, ef21_receiver_tracks_the_senders_estimate_which_tracks_the_gradient) {
  const size_t d = 64;
  feedback_encoder enc(make_compressor("topk:0.25"), feedback_kind::ef21);
  feedback_decoder dec(feedback_kind::ef21);
  auto g = random_vector(d, 11);  // a fixed gradient: h must converge to it
  double first = -1, last = 0;
  for (int t = 0; t < 40; ++t) {
    auto h = dec.decode(enc.encode(buffer::from(g), t), d);
    double err = 0;
    for (size_t i = 0; i < d; ++i) {
      EXPECT_EQ(h[i], enc.memory()[i]);  // both ends hold the same h
      err += (double(h[i]) - g[i]) * (double(h[i]) - g[i]);
    }
    if (first < 0)
      first = err;
    last = err;
  }
  EXPECT_LT(last, 1e-8 * first + 1e-10);
}

TEST(uplink_compression, biased_compressors_need_feedback_or_allow_biased) {
  run_plan plan;
  plan.options = {{"compress", "topk:0.1"}, {"error_feedback", "none"}};
  try {
    read_uplink_compression(plan);
    FAIL() << "topk without feedback was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("--allow-biased"), std::string::npos) << e.what();
  }
  plan.options["allow_biased"] = "1";
  auto c = read_uplink_compression(plan);
  EXPECT_NE(c.warning.find("biased"), std::string::npos);
  plan.options = {{"compress", "sign"}, {"error_feedback", "ef"}};
  EXPECT_TRUE(read_uplink_compression(plan).warning.empty());
  plan.options = {{"compress", "qsgd:4"}, {"error_feedback", "none"}};
  EXPECT_TRUE(read_uplink_compression(plan).active);
  plan.options = {{"compress", "none"}, {"error_feedback", "ef"}};
  EXPECT_THROW(read_uplink_compression(plan), std::invalid_argument);
}

} // namespace
} // namespace chorus
