#include "engines/compressors.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#if defined(__BMI2__)
#include <immintrin.h>
#endif
#include <functional>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <utility>

#include "messages/checked.hpp"

namespace chorus {

namespace {

constexpr uint8_t magic0 = 'C';
constexpr uint8_t magic1 = 'Z';
constexpr uint8_t version = 1;

// splitmix64: a small, fully specified generator, so a seed draws the same
// numbers on every platform (randk's decoder redraws the encoder's indices).
struct rng {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, 1).
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
};

// A payload being written: bytes inside a buffer of ceil(bytes/4) floats,
// zero-filled so the padding is deterministic.
struct writer {
  mutable_buffer out;
  unsigned char* p;
  explicit writer(size_t bytes)
      : out(mutable_buffer::filled((bytes + 3) / 4, 0.0f)),
        p(reinterpret_cast<unsigned char*>(out.data())) {}
  template <class T>
  void put(size_t at, T x) { std::memcpy(p + at, &x, sizeof(T)); }
  void header(codec_id c, uint32_t param, uint64_t d, uint64_t seed) {
    p[0] = magic0;
    p[1] = magic1;
    p[2] = version;
    p[3] = static_cast<uint8_t>(c);
    put(4, param);
    put(8, d);
    put(16, seed);
  }
  buffer done() && { return std::move(out).freeze(); }
};

const unsigned char* bytes_of(const buffer& b) {
  return reinterpret_cast<const unsigned char*>(b.data());
}

template <class T>
T get(const unsigned char* p, size_t at) {
  T x;
  std::memcpy(&x, p + at, sizeof(T));
  return x;
}

// Bits per QSGD level: b = ceil(log2(S + 1)).
unsigned level_bits(uint32_t s) {
  unsigned b = 0;
  while ((uint64_t{1} << b) < uint64_t{s} + 1)
    ++b;
  return b;
}

size_t qsgd_bytes(size_t d, uint32_t s) {
  return payload_header_bytes + 4 + (d * (1 + level_bits(s)) + 7) / 8;
}
size_t sign_bytes(size_t d) { return payload_header_bytes + 4 + (d + 7) / 8; }
size_t topk_bytes(size_t k) { return payload_header_bytes + 8 * k; }
size_t randk_bytes(size_t k) { return payload_header_bytes + 4 * k; }
size_t none_bytes(size_t d) { return payload_header_bytes + 4 * d; }

void require_host(cview v, const char* who) {
  if (v.kind != memory_kind::host)
    throw std::invalid_argument(std::string(who) + ": encode takes host memory");
}

void require_u32(size_t d, const char* who) {
  if (d > std::numeric_limits<uint32_t>::max())
    throw std::invalid_argument(std::string(who) + ": d = " + std::to_string(d)
                                + " does not fit its 32-bit indices");
}

// randk's indices: Knuth's selection sampling (Algorithm S), which visits
// 0..d-1 once and keeps index i with probability (k - kept) / (d - i): every
// k-subset is equally likely, so each index is kept with probability k/d.
// Increasing by construction; O(d) time, O(k) memory.
std::vector<uint32_t> draw_indices(size_t d, size_t k, uint64_t seed) {
  std::vector<uint32_t> idx;
  idx.reserve(k);
  rng r{seed};
  for (size_t i = 0; i < d && idx.size() < k; ++i)
    if (r.uniform() * static_cast<double>(d - i) < static_cast<double>(k - idx.size()))
      idx.push_back(static_cast<uint32_t>(i));
  return idx;
}

// -- encoders ----------------------------------------------------------------

buffer encode_none(cview v) {
  require_host(v, "none");
  writer w(none_bytes(v.size));
  w.header(codec_id::none, 0, v.size, 0);
  if (v.size > 0)
    std::memcpy(w.p + payload_header_bytes, v.data, 4 * v.size);
  return std::move(w).done();
}

// QSGD's uniforms: 32 interleaved xorshift128 streams (Marsaglia 2003,
// "Xorshift RNGs", J. Stat. Softw. 8(14): t = x ^ (x << 11), x, y, z <- y,
// z, w, w <- (w ^ (w >> 19)) ^ (t ^ (t >> 8)); period 2^128 - 1). Entry j of
// the vector takes the next output of stream j mod 32, and its uniform is
// the output's top 24 bits. The streams' states are drawn from the seed by
// splitmix64, so a seed gives the same payload on every platform and vector
// width. Shifts and xors only: the counter-based murmur3 mix it replaced
// (three 32-bit multiplies an entry) took 40% of the qsgd:4 encode of 16M
// floats (bench/compressors; the payload bytes differ from that version's).
constexpr size_t qsgd_lanes = 32;
struct qsgd_streams {
  alignas(64) uint32_t x[qsgd_lanes], y[qsgd_lanes], z[qsgd_lanes], w[qsgd_lanes];
  explicit qsgd_streams(uint64_t seed) {
    rng r{seed};
    for (size_t l = 0; l < qsgd_lanes; ++l) {
      const uint64_t a = r.next(), b = r.next();
      x[l] = static_cast<uint32_t>(a);
      y[l] = static_cast<uint32_t>(a >> 32);
      z[l] = static_cast<uint32_t>(b);
      w[l] = static_cast<uint32_t>(b >> 32);
      if ((a | b) == 0)
        w[l] = 1;  // the all-zero state is a fixed point
    }
  }
  // The next output of stream l.
  uint32_t next(size_t l) {
    const uint32_t t = x[l] ^ (x[l] << 11);
    x[l] = y[l];
    y[l] = z[l];
    z[l] = w[l];
    w[l] = (w[l] ^ (w[l] >> 19)) ^ (t ^ (t >> 8));
    return w[l];
  }
};

// QSGD's bit packing, W = 1 + b bits per entry, 32 entries (exactly W
// 32-bit words) per group, LSB first. With W a template parameter and the
// group unrolled, every shift and word boundary is a constant. For W = 2,
// 4 and 8 (S = 1, 4..7, 64..127) no entry straddles a byte, and a loop over
// bytes, which the compiler vectorizes, writes the same bits (qsgd:4: the
// encode's packing and the decode's unpacking took about a third of the
// round trip before, bench/compressors under perf).
#if defined(__BMI2__)
// Eight W-bit fields, one in the low bits of each byte: BMI2's pext/pdep
// move them to and from W * 8 contiguous bits, LSB first, the payload's
// order (for W < 8 that does not divide 8: 3, 5, 6, 7 bits, S = 4..127
// outside 4..7; W = 2, 4 take the byte loops below).
template <unsigned W>
constexpr uint64_t byte_fields = 0x0101010101010101ull * ((uint64_t{1} << W) - 1);

// The N < 8 bytes at p as the low bytes of a word (little-endian, as x86 is),
// read in registers: a memcpy of N bytes into a zeroed word went through the
// stack and stalled the 8-byte reload (a third of the decode).
template <unsigned N>
uint64_t low_bytes(const unsigned char* p) {
  uint64_t x = 0;
  unsigned at = 0;
  if constexpr ((N & 4) != 0) {
    uint32_t a;
    std::memcpy(&a, p, 4);
    x = a;
    at = 4;
  }
  if constexpr ((N & 2) != 0) {
    uint16_t b;
    std::memcpy(&b, p + at, 2);
    x |= uint64_t{b} << (8 * at);
    at += 2;
  }
  if constexpr ((N & 1) != 0)
    x |= uint64_t{p[at]} << (8 * at);
  return x;
}
#endif

template <unsigned W>
void pack_groups(const uint32_t* e, size_t groups, unsigned char* out) {
#if defined(__BMI2__)
  if constexpr (W < 8 && 8 % W != 0) {
    for (size_t g = 0; g < groups; ++g, e += 32, out += 4 * W) {
      unsigned char narrow[32];  // the entries as bytes: a loop the compiler vectorizes
      for (unsigned t = 0; t < 32; ++t)
        narrow[t] = static_cast<unsigned char>(e[t]);
      for (unsigned q = 0; q < 4; ++q) {
        uint64_t x;
        std::memcpy(&x, narrow + 8 * q, 8);
        x = _pext_u64(x, byte_fields<W>);
        std::memcpy(out + W * q, &x, W);  // little-endian: the low W bytes
      }
    }
    return;
  }
#endif
  if constexpr (8 % W == 0) {
    constexpr unsigned per_byte = 8 / W;
    const size_t bytes = groups * 4 * W;
    for (size_t i = 0; i < bytes; ++i) {
      uint32_t x = 0;
      for (unsigned q = 0; q < per_byte; ++q)
        x |= e[per_byte * i + q] << (q * W);
      out[i] = static_cast<unsigned char>(x);
    }
    return;
  }
  for (size_t g = 0; g < groups; ++g, e += 32, out += 4 * W) {
    uint64_t acc = 0;
    unsigned have = 0, word = 0;
#pragma GCC unroll 32
    for (unsigned t = 0; t < 32; ++t) {
      acc |= uint64_t{e[t]} << have;
      have += W;
      if (have >= 32) {
        const auto x = static_cast<uint32_t>(acc);
        std::memcpy(out + 4 * word++, &x, 4);
        acc >>= 32;
        have -= 32;
      }
    }
  }
}

template <unsigned W>
void unpack_groups(const unsigned char* in, size_t groups, uint32_t* e) {
  constexpr uint32_t mask = (uint32_t{1} << W) - 1;
#if defined(__BMI2__) && defined(__AVX2__)
  if constexpr (W < 8 && 8 % W != 0) {
    // Each 8 bytes widen to 8 words in one AVX2 instruction (through a
    // byte array, the wide reloads of four 8-byte stores stalled).
    for (size_t g = 0; g < groups; ++g, in += 4 * W)
      for (unsigned q = 0; q < 4; ++q, e += 8) {
        const uint64_t x = _pdep_u64(low_bytes<W>(in + W * q), byte_fields<W>);
        const __m256i words = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(static_cast<long long>(x)));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(e), words);
      }
    return;
  }
#endif
  if constexpr (8 % W == 0) {
    constexpr unsigned per_byte = 8 / W;
    const size_t bytes = groups * 4 * W;
    for (size_t i = 0; i < bytes; ++i)
      for (unsigned q = 0; q < per_byte; ++q)
        e[per_byte * i + q] = (uint32_t{in[i]} >> (q * W)) & mask;
    return;
  }
  for (size_t g = 0; g < groups; ++g, e += 32, in += 4 * W) {
    uint64_t acc = 0;
    unsigned have = 0, word = 0;
#pragma GCC unroll 32
    for (unsigned t = 0; t < 32; ++t) {
      if (have < W) {
        uint32_t x;
        std::memcpy(&x, in + 4 * word++, 4);
        acc |= uint64_t{x} << have;
        have += 32;
      }
      e[t] = static_cast<uint32_t>(acc) & mask;
      acc >>= W;
      have -= W;
    }
  }
}

using pack_fn = void (*)(const uint32_t*, size_t, unsigned char*);
using unpack_fn = void (*)(const unsigned char*, size_t, uint32_t*);

// W = 1 + ceil(log2(S + 1)) is 2..17 for S in 1..65535.
template <size_t... I>
constexpr std::array<pack_fn, sizeof...(I)> pack_table(std::index_sequence<I...>) {
  return {{(I < 2 ? nullptr : &pack_groups<(I < 2 ? 2 : unsigned(I))>)...}};
}
template <size_t... I>
constexpr std::array<unpack_fn, sizeof...(I)> unpack_table(std::index_sequence<I...>) {
  return {{(I < 2 ? nullptr : &unpack_groups<(I < 2 ? 2 : unsigned(I))>)...}};
}
constexpr auto packers = pack_table(std::make_index_sequence<18>{});
constexpr auto unpackers = unpack_table(std::make_index_sequence<18>{});

// Where the CPU has AVX-512, GCC still vectorizes with 256-bit registers
// unless told otherwise (-mprefer-vector-width); the qsgd entry loop below
// (and encode_qsgd, into which it is inlined)
// was arithmetic-bound (three 32-bit multiplies an entry for its uniform, before
// qsgd_streams), and 512-bit registers took the qsgd:4 encode of 16M floats
// from 72 to 47 ms.
#if defined(__GNUC__) && !defined(__clang__) && defined(__AVX512F__)
#define CHORUS_WIDE_VECTORS __attribute__((target("prefer-vector-width=512")))
#else
#define CHORUS_WIDE_VECTORS
#endif

// The (sign, level) word of one entry x with uniform bits `bits` (24 used).
inline uint32_t qsgd_entry(float x, float scale, float top, uint32_t bits) {
  uint32_t raw;
  std::memcpy(&raw, &x, 4);
  const float a = std::min(std::fabs(x) * scale, top);  // 0 <= a <= S
  const int32_t l = static_cast<int32_t>(a);            // floor: a >= 0
  const float u = static_cast<float>(static_cast<int32_t>(bits >> 8)) * 0x1.0p-24f;
  const int32_t up = u < a - static_cast<float>(l);
  return (raw >> 31) | (static_cast<uint32_t>(l + up) << 1);
}

// The (sign, level) words of n entries from x, the first of them at a
// multiple of qsgd_lanes in the vector, for a finite scale S/||v|| (so
// every entry is finite). Whole rounds of the 32 streams go through a loop
// the compiler vectorizes; only the vector's last, partial round is scalar.
CHORUS_WIDE_VECTORS void qsgd_entries(const float* __restrict x, size_t n, float scale,
                                      float top, qsgd_streams& r, uint32_t* __restrict entry) {
  size_t j = 0;
  for (; j + qsgd_lanes <= n; j += qsgd_lanes)
    for (size_t l = 0; l < qsgd_lanes; ++l)
      entry[j + l] = qsgd_entry(x[j + l], scale, top, r.next(l));
  for (size_t l = 0; j + l < n; ++l)
    entry[j + l] = qsgd_entry(x[j + l], scale, top, r.next(l));
}

// QSGD (Alistarh et al. 2017): with r_i = S |v_i| / ||v||_2 and l = floor(r_i),
// send level l + 1 with probability r_i - l, else l; decode sign_i ||v|| l / S.
// E[level] = r_i, so the decode is unbiased, and its variance is
// ||v||^2/S^2 sum_i p_i (1 - p_i) <= min(d/S^2, sqrt(d)/S) ||v||^2.
//
// Speed (bench/compressors): blocks of 256 entries, first their (sign,
// level) words in a loop the compiler vectorizes (r_i in float, the
// uniform from qsgd_streams), then the bit packing, 32 bits at a time.
CHORUS_WIDE_VECTORS buffer encode_qsgd(cview v, uint32_t s, uint64_t seed) {
  require_host(v, "qsgd");
  const size_t d = v.size;
  const unsigned b = level_bits(s);
  writer w(qsgd_bytes(d, s));
  w.header(codec_id::qsgd, s, d, 0);
  // ||v||^2 in double, eight independent sums (the loop is a memory pass).
  double sq8[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  size_t i = 0;
  for (; i + 8 <= d; i += 8)
    for (size_t j = 0; j < 8; ++j)
      sq8[j] += double(v[i + j]) * v[i + j];
  for (; i < d; ++i)
    sq8[0] += double(v[i]) * v[i];
  const double sq = ((sq8[0] + sq8[1]) + (sq8[2] + sq8[3])) + ((sq8[4] + sq8[5]) + (sq8[6] + sq8[7]));
  const float norm = static_cast<float>(std::sqrt(sq));
  w.put(payload_header_bytes, norm);
  unsigned char* out = w.p + payload_header_bytes + 4;
  // Everything encodes as level 0 when the norm is 0 or not finite (v holds
  // a NaN or an infinity): scale 0. With a finite norm every entry is finite,
  // so the loop needs no NaN case.
  // (A norm below ~1e-34, whose scale overflows a float, encodes as 0 too.)
  const float scale = norm > 0 && std::isfinite(norm) ? static_cast<float>(double(s) / double(norm))
                                                      : 0.0f;
  const bool scaled = scale > 0 && std::isfinite(scale);
  const float top = static_cast<float>(s);
  qsgd_streams streams(seed);
  constexpr size_t block = 256;  // a multiple of qsgd_lanes
  uint32_t entry[block];
  const float* x = v.data;
  uint64_t acc = 0;  // packed bits not yet written, LSB first
  unsigned have = 0;
  size_t pos = 0;
  for (size_t base = 0; base < d; base += block) {
    const size_t m = std::min(block, d - base);
    if (scaled)
      qsgd_entries(x + base, m, scale, top, streams, entry);
    else
      for (size_t j = 0; j < m; ++j) {
        uint32_t bits;
        std::memcpy(&bits, &x[base + j], 4);
        entry[j] = bits >> 31;  // level 0
      }
    // Whole groups of 32 entries end on a word boundary, so only the last
    // block's tail goes through the general loop (from have = 0).
    const size_t groups = m / 32;
    packers[1 + b](entry, groups, out + pos);
    pos += groups * 4 * (1 + b);
    for (size_t j = groups * 32; j < m; ++j) {
      acc |= uint64_t{entry[j]} << have;
      have += 1 + b;
      if (have >= 32) {
        const auto word = static_cast<uint32_t>(acc);
        std::memcpy(out + pos, &word, 4);
        pos += 4;
        acc >>= 32;
        have -= 32;
      }
    }
  }
  while (have > 0) {
    out[pos++] = static_cast<unsigned char>(acc & 0xff);
    acc >>= 8;
    have = have > 8 ? have - 8 : 0;
  }
  return std::move(w).done();
}

// The key that orders |x| as top-k does: the bits of |x| (monotone for
// non-negative floats), with every NaN mapped to +infinity.
inline uint32_t magnitude_key(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  u &= 0x7fffffffu;
  return u > 0x7f800000u ? 0x7f800000u : u;
}

// Top-k: the k entries of largest |v_i|. Ties are broken toward the lower
// index, so the choice is deterministic; a NaN counts as the largest (it
// is sent, and the aggregator's screen sets the vector aside).
//
// One pass over v (bench/compressors): a strided sample of the keys gives a
// lower bound t on the k-th largest key with room to spare; the pass keeps
// the indices with key >= t (in index order, about 2k of them); if fewer
// than k pass (the sample misled), every index is a candidate. Among the
// candidates nth_element finds the exact k-th largest key T, and a last
// walk over the candidates, in index order, keeps every key > T and the
// first (lowest-index) keys == T until k are kept: the indices come out
// increasing, as the format requires.
buffer encode_topk(cview v, double fraction) {
  require_host(v, "topk");
  const size_t d = v.size;
  require_u32(d, "topk");
  const size_t k = kept_entries(fraction, d);
  writer w(topk_bytes(k));
  w.header(codec_id::topk, static_cast<uint32_t>(k), d, 0);
  if (k == 0)
    return std::move(w).done();
  uint32_t bound = 0;  // 0: every index is a candidate
  if (k < d / 4) {
    const size_t stride = std::max<size_t>(1, d / 8192);
    std::vector<uint32_t> sample;
    sample.reserve(d / stride + 1);
    for (size_t i = 0; i < d; i += stride)
      sample.push_back(magnitude_key(v[i]));
    // The expected rank of the k-th largest in the sample is k/d of it;
    // twice that plus 64 leaves a margin of many standard deviations.
    const size_t r = std::min(sample.size(), 2 * (k * sample.size() / d + 1) + 64);
    std::nth_element(sample.begin(), sample.begin() + static_cast<std::ptrdiff_t>(r - 1),
                     sample.end(), std::greater<uint32_t>());
    bound = sample[r - 1];
  }
  // The candidates' indices and values, in index order.
  std::vector<uint32_t> cand;
  std::vector<float> cand_val;
  cand.reserve(std::min(d, 4 * k + 1024));
  cand_val.reserve(std::min(d, 4 * k + 1024));
  auto take = [&](size_t i) {
    cand.push_back(static_cast<uint32_t>(i));
    cand_val.push_back(v[i]);
  };
  // Blocks of 1024: first a byte flag per entry and their count, in a loop
  // the compiler vectorizes (compared as integers: a NaN's magnitude bits
  // exceed every bound, as magnitude_key's +infinity does); then, for a
  // block with a candidate, the flags 8 at a time (one load tests 8). A per-entry test with a
  // branch ran at a third of the memory's speed (bench/compressors).
  constexpr size_t block = 1024;
  alignas(64) uint8_t flag[block];
  for (size_t base = 0; base < d; base += block) {
    const size_t m = std::min(block, d - base);
    const float* x = v.data + base;
    unsigned count = 0;
    for (size_t j = 0; j < m; ++j) {
      uint32_t u;
      std::memcpy(&u, &x[j], 4);
      const uint8_t f = (u & 0x7fffffffu) >= bound ? 1 : 0;
      flag[j] = f;
      count += f;
    }
    if (count == 0)
      continue;
    size_t j = 0;
    for (; j + 8 <= m; j += 8) {
      uint64_t w;
      std::memcpy(&w, flag + j, 8);
      if (w != 0)
        for (size_t t = 0; t < 8; ++t)
          if (flag[j + t] != 0)
            take(base + j + t);
    }
    for (; j < m; ++j)
      if (flag[j] != 0)
        take(base + j);
  }
  if (cand.size() < k) {  // the bound was too high: take every index
    cand.clear();
    cand_val.clear();
    for (size_t j = 0; j < d; ++j)
      take(j);
  }
  std::vector<uint32_t> order(cand.size());
  for (size_t j = 0; j < cand.size(); ++j)
    order[j] = magnitude_key(cand_val[j]);
  std::nth_element(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(k - 1), order.end(),
                   std::greater<uint32_t>());
  const uint32_t threshold = order[k - 1];
  size_t ties = 0;  // keys == threshold among the k largest
  for (size_t j = 0; j < k; ++j)
    ties += order[j] == threshold ? 1 : 0;
  unsigned char* idx_out = w.p + payload_header_bytes;
  unsigned char* val_out = idx_out + 4 * k;
  size_t kept = 0;
  for (size_t j = 0; j < cand.size() && kept < k; ++j) {
    const uint32_t key = magnitude_key(cand_val[j]);
    if (key > threshold || (key == threshold && ties > 0)) {
      if (key == threshold)
        --ties;
      std::memcpy(idx_out + 4 * kept, &cand[j], 4);
      std::memcpy(val_out + 4 * kept, &cand_val[j], 4);
      ++kept;
    }
  }
  return std::move(w).done();
}

// Rand-k: k indices drawn uniformly without replacement from the seed; only
// the values travel. The decoder scales them by d/k, so E[decode] = v.
buffer encode_randk(cview v, double fraction, uint64_t seed) {
  require_host(v, "randk");
  const size_t d = v.size;
  require_u32(d, "randk");
  const size_t k = kept_entries(fraction, d);
  auto idx = draw_indices(d, k, seed);
  writer w(randk_bytes(k));
  w.header(codec_id::randk, static_cast<uint32_t>(k), d, seed);
  for (size_t j = 0; j < k; ++j)
    w.put(payload_header_bytes + 4 * j, v[idx[j]]);
  return std::move(w).done();
}

// Scaled sign: decode ||v||_1/d * sign(v_i); a zero (or -0) entry keeps its
// sign bit, so it decodes as +-scale.
buffer encode_sign(cview v) {
  require_host(v, "sign");
  const size_t d = v.size;
  writer w(sign_bytes(d));
  w.header(codec_id::sign, 0, d, 0);
  // ||v||_1 in double, eight independent sums; then the sign bits a byte
  // (eight entries) at a time.
  double l1_8[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  size_t i = 0;
  for (; i + 8 <= d; i += 8)
    for (size_t j = 0; j < 8; ++j)
      l1_8[j] += std::fabs(double(v[i + j]));
  for (; i < d; ++i)
    l1_8[0] += std::fabs(double(v[i]));
  const double l1 = ((l1_8[0] + l1_8[1]) + (l1_8[2] + l1_8[3]))
                    + ((l1_8[4] + l1_8[5]) + (l1_8[6] + l1_8[7]));
  w.put(payload_header_bytes, d > 0 ? static_cast<float>(l1 / double(d)) : 0.0f);
  unsigned char* out = w.p + payload_header_bytes + 4;
  for (size_t q = 0; q < d / 8; ++q) {
    unsigned c = 0;
    for (unsigned t = 0; t < 8; ++t) {
      uint32_t bits;
      std::memcpy(&bits, &v[8 * q + t], 4);
      c |= (bits >> 31) << t;
    }
    out[q] = static_cast<unsigned char>(c);
  }
  for (size_t r = d / 8 * 8; r < d; ++r)
    if (std::signbit(v[r]))
      out[r / 8] |= static_cast<unsigned char>(1u << (r % 8));
  return std::move(w).done();
}

// -- parsing -----------------------------------------------------------------

double parse_fraction(const std::string& name, const std::string& arg) {
  auto f = parse_finite(arg);
  if (!f || !(*f > 0 && *f <= 1))
    throw std::invalid_argument(name + ":F needs a fraction 0 < F <= 1, got '" + arg + "'");
  return *f;
}

uint32_t parse_levels(const std::string& arg) {
  size_t used = 0;
  long long s = 0;
  try {
    s = std::stoll(arg, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (arg.empty() || used != arg.size() || s < 1 || s > 65535)
    throw std::invalid_argument("qsgd:S needs a level count 1 <= S <= 65535, got '" + arg + "'");
  return static_cast<uint32_t>(s);
}

[[noreturn]] void corrupt(const std::string& why) {
  throw std::invalid_argument("corrupt compressed payload: " + why);
}

} // namespace

compressor::compressor(std::string name, bool unbiased, encode_fn encode, size_fn bytes)
    : name_(std::move(name)), unbiased_(unbiased), encode_(std::move(encode)),
      bytes_(std::move(bytes)) {}

size_t kept_entries(double fraction, size_t d) {
  if (d == 0)
    return 0;
  auto k = static_cast<size_t>(std::ceil(fraction * static_cast<double>(d)));
  return std::clamp<size_t>(k, 1, d);
}

const std::vector<compressor_info>& compressor_registry() {
  static const std::vector<compressor_info> table = {
    {"none", "none", "no compression: d f32 values (32 bits/entry)", true},
    {"qsgd", "qsgd:S",
     "QSGD: stochastic rounding of |v_i|/||v|| to S levels; norm + (1 + ceil(log2(S+1))) "
     "bits/entry; unbiased",
     true},
    {"topk", "topk:F",
     "top-k: the ceil(F d) largest |v_i| (ties: lower index), u32 index + f32 value each; biased",
     false},
    {"randk", "randk:F",
     "rand-k: ceil(F d) seeded random entries scaled by d/k, f32 value each; unbiased", true},
    {"sign", "sign", "scaled sign: ||v||_1/d * sign(v_i), 1 bit/entry; biased", false},
  };
  return table;
}

compressor make_compressor(const std::string& spec) {
  auto colon = spec.find(':');
  std::string name = spec.substr(0, colon);
  std::string arg = colon == std::string::npos ? "" : spec.substr(colon + 1);
  auto no_arg = [&] {
    if (colon != std::string::npos)
      throw std::invalid_argument(name + " takes no parameter (got '" + spec + "')");
  };
  if (name == "none") {
    no_arg();
    return {spec, true, [](cview v, uint64_t) { return encode_none(v); }, none_bytes};
  }
  if (name == "qsgd") {
    uint32_t s = parse_levels(arg);
    return {spec, true, [s](cview v, uint64_t seed) { return encode_qsgd(v, s, seed); },
            [s](size_t d) { return qsgd_bytes(d, s); }};
  }
  if (name == "topk") {
    double f = parse_fraction(name, arg);
    return {spec, false, [f](cview v, uint64_t) { return encode_topk(v, f); },
            [f](size_t d) { return topk_bytes(kept_entries(f, d)); }};
  }
  if (name == "randk") {
    double f = parse_fraction(name, arg);
    return {spec, true, [f](cview v, uint64_t seed) { return encode_randk(v, f, seed); },
            [f](size_t d) { return randk_bytes(kept_entries(f, d)); }};
  }
  if (name == "sign") {
    no_arg();
    return {spec, false, [](cview v, uint64_t) { return encode_sign(v); }, sign_bytes};
  }
  std::string valid;
  for (auto& c : compressor_registry())
    valid += (valid.empty() ? "" : ", ") + c.usage;
  throw std::invalid_argument("unknown compressor '" + spec + "'; valid compressors: " + valid);
}

payload_header read_header(const buffer& payload) {
  if (payload.kind() != memory_kind::host)
    corrupt("not in host memory");
  if (payload.size() * 4 < payload_header_bytes)
    corrupt(std::to_string(payload.size() * 4) + " bytes, shorter than its header");
  const unsigned char* p = bytes_of(payload);
  if (p[0] != magic0 || p[1] != magic1)
    corrupt("bad magic");
  if (p[2] != version)
    corrupt("format version " + std::to_string(p[2]) + " (this build reads "
            + std::to_string(version) + ")");
  if (p[3] > static_cast<uint8_t>(codec_id::sign))
    corrupt("unknown codec id " + std::to_string(p[3]));
  payload_header h;
  h.codec = static_cast<codec_id>(p[3]);
  h.param = get<uint32_t>(p, 4);
  h.dim = get<uint64_t>(p, 8);
  h.seed = get<uint64_t>(p, 16);
  return h;
}

buffer decode(const buffer& payload, size_t dim) {
  const payload_header h = read_header(payload);
  if (h.dim != dim)
    corrupt("dimension " + std::to_string(h.dim) + ", expected " + std::to_string(dim));
  // Every check below runs before the d floats are allocated.
  size_t bytes = 0;
  switch (h.codec) {
    case codec_id::none:
    case codec_id::sign:
      if (h.param != 0)
        corrupt("parameter " + std::to_string(h.param) + " for a codec without one");
      bytes = h.codec == codec_id::none ? none_bytes(dim) : sign_bytes(dim);
      break;
    case codec_id::qsgd:
      if (h.param < 1 || h.param > 65535)
        corrupt("qsgd with S = " + std::to_string(h.param));
      bytes = qsgd_bytes(dim, h.param);
      break;
    case codec_id::topk:
    case codec_id::randk:
      if (h.param > dim || (dim > 0 && h.param == 0))
        corrupt("k = " + std::to_string(h.param) + " of d = " + std::to_string(dim));
      bytes = h.codec == codec_id::topk ? topk_bytes(h.param) : randk_bytes(h.param);
      break;
  }
  if (payload.size() != (bytes + 3) / 4)
    corrupt(std::to_string(payload.size() * 4) + " bytes where its header implies "
            + std::to_string(bytes));
  const unsigned char* p = bytes_of(payload);
  const unsigned char* body = p + payload_header_bytes;
  // Sparse codecs write k entries into zeros; the others write all d.
  auto out = h.codec == codec_id::topk || h.codec == codec_id::randk
               ? mutable_buffer::filled(dim, 0.0f)
               : mutable_buffer(dim);
  switch (h.codec) {
    case codec_id::none:
      if (dim > 0)
        std::memcpy(out.data(), body, 4 * dim);
      break;
    case codec_id::qsgd: {
      const float norm = get<float>(body, 0);
      if (!std::isfinite(norm) || norm < 0)
        corrupt("qsgd norm " + std::to_string(norm));
      const unsigned b = level_bits(h.param);
      const unsigned char* in = body + 4;
      const float unit = static_cast<float>(double(norm) / h.param);
      const uint32_t mask = (uint32_t{1} << (1 + b)) - 1;
      float* x = out.data();
      uint64_t acc = 0;
      unsigned have = 0;
      size_t pos = 0;
      uint32_t worst = 0;  // the largest level seen, checked once at the end
      constexpr size_t block = 256;
      uint32_t entry[block];
      for (size_t base = 0; base < dim; base += block) {
        const size_t m = std::min(block, dim - base);
        // Refills read 4 bytes at a time: the body starts 4-aligned in the
        // payload and the payload is padded to 4 bytes, so a word that
        // holds needed bits lies inside it.
        const size_t groups = m / 32;  // as in encode_qsgd: word-aligned
        unpackers[1 + b](in + pos, groups, entry);
        pos += groups * 4 * (1 + b);
        for (size_t j = groups * 32; j < m; ++j) {
          if (have < 1 + b) {
            uint32_t word;
            std::memcpy(&word, in + pos, 4);
            pos += 4;
            acc |= uint64_t{word} << have;
            have += 32;
          }
          entry[j] = static_cast<uint32_t>(acc) & mask;
          acc >>= 1 + b;
          have -= 1 + b;
        }
        for (size_t j = 0; j < m; ++j) {
          const uint32_t level = entry[j] >> 1;
          worst = std::max(worst, level);
          const float y = unit * static_cast<float>(static_cast<int32_t>(level));
          x[base + j] = (entry[j] & 1) ? -y : y;
        }
      }
      if (worst > h.param)
        corrupt("qsgd level " + std::to_string(worst) + " > S = " + std::to_string(h.param));
      break;
    }
    case codec_id::topk: {
      const size_t k = h.param;
      int64_t last = -1;
      for (size_t j = 0; j < k; ++j) {
        uint32_t i = get<uint32_t>(body, 4 * j);
        if (i >= dim || int64_t{i} <= last)
          corrupt("top-k index " + std::to_string(i) + " out of range or out of order");
        last = i;
        out[i] = get<float>(body, 4 * k + 4 * j);
      }
      break;
    }
    case codec_id::randk: {
      const size_t k = h.param;
      auto idx = draw_indices(dim, k, h.seed);
      const float scale = k > 0 ? static_cast<float>(double(dim) / double(k)) : 0.0f;
      for (size_t j = 0; j < idx.size(); ++j)
        out[idx[j]] = scale * get<float>(body, 4 * j);
      break;
    }
    case codec_id::sign: {
      const float scale = get<float>(body, 0);
      if (!std::isfinite(scale) || scale < 0)
        corrupt("sign scale " + std::to_string(scale));
      const unsigned char* bits = body + 4;
      float* x = out.data();
      for (size_t q = 0; q < dim / 8; ++q) {
        const unsigned c = bits[q];
        for (unsigned t = 0; t < 8; ++t)
          x[8 * q + t] = (c >> t) & 1 ? -scale : scale;
      }
      for (size_t i = dim / 8 * 8; i < dim; ++i)
        x[i] = (bits[i / 8] >> (i % 8)) & 1 ? -scale : scale;
      break;
    }
  }
  return std::move(out).freeze();
}

// -- error feedback ----------------------------------------------------------

const std::vector<feedback_info>& feedback_registry() {
  static const std::vector<feedback_info> table = {
    {"none", "send C(g)"},
    {"ef", "error feedback (Seide 2014, Karimireddy 2019): p = g + e, send C(p), "
           "e = p - D(C(p)); memory on the sender"},
    {"ef21", "EF21 (Richtarik et al. 2021): send c = C(g - h), both ends h += D(c), the "
             "receiver uses h; each end keeps its own h"},
  };
  return table;
}

feedback_kind make_feedback(const std::string& name) {
  if (name == "none")
    return feedback_kind::none;
  if (name == "ef")
    return feedback_kind::ef;
  if (name == "ef21")
    return feedback_kind::ef21;
  std::string valid;
  for (auto& f : feedback_registry())
    valid += (valid.empty() ? "" : ", ") + f.name;
  throw std::invalid_argument("unknown error feedback '" + name + "'; valid: " + valid);
}

feedback_encoder::feedback_encoder(compressor c, feedback_kind kind)
    : c_(std::move(c)), kind_(kind) {}

buffer feedback_encoder::encode(cview g, uint64_t seed) {
  if (kind_ == feedback_kind::none)
    return c_.encode(g, seed);
  const size_t d = g.size;
  if (memory_.size() != d)
    memory_.assign(d, 0.0f);
  // ef: p = g + e; ef21: p = g - h.
  auto p = mutable_buffer(d);
  const float s = kind_ == feedback_kind::ef ? 1.0f : -1.0f;
  for (size_t i = 0; i < d; ++i)
    p[i] = g[i] + s * memory_[i];
  cview pv = p.span();
  buffer payload = c_.encode(pv, seed);
  buffer sent = decode(payload, d);
  if (kind_ == feedback_kind::ef) {
    for (size_t i = 0; i < d; ++i)
      memory_[i] = p[i] - sent[i];  // e = p - D(C(p))
  } else {
    for (size_t i = 0; i < d; ++i)
      memory_[i] += sent[i];        // h += D(c)
  }
  return payload;
}

buffer feedback_decoder::decode(const buffer& payload, size_t dim) {
  buffer x = chorus::decode(payload, dim);
  if (kind_ != feedback_kind::ef21)
    return x;
  if (memory_.size() != dim)
    memory_.assign(dim, 0.0f);
  for (size_t i = 0; i < dim; ++i)
    memory_[i] += x[i];
  return buffer::from(memory_);
}

} // namespace chorus
