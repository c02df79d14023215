// What tests/messages/data_plane_test.cpp and its peer process
// (data_plane_peer.cpp) share: the peer's interface and the payloads.
#pragma once

#include <caf/all.hpp>

#include <cstdint>
#include <cstring>

#include "messages/buffer.hpp"

namespace chorus::test {

using hash_atom = caf::atom_constant<caf::atom("hash")>;
using give_atom = caf::atom_constant<caf::atom("give")>;
using die_atom = caf::atom_constant<caf::atom("die")>;
using offer_atom = caf::atom_constant<caf::atom("offer")>;
using keep_atom = caf::atom_constant<caf::atom("keep")>;
using lent_atom = caf::atom_constant<caf::atom("lent")>;

/// The peer: hashes a buffer it receives (floats, FNV-1a of the bytes);
/// gives a patterned buffer of n floats (seeded); with die_atom, gives it
/// and kills itself (SIGKILL) a few milliseconds later; with offer_atom,
/// offers one through the data plane and gives its descriptor. keep + a
/// buffer: holds it until the process ends (its size the reply). lent: how
/// many of its offers a peer reads in place now (data_plane::stats().lent).
using data_plane_peer = caf::typed_actor<
  caf::replies_to<hash_atom, buffer>::with<uint64_t, uint64_t>,
  caf::replies_to<give_atom, uint64_t, int32_t>::with<buffer>,
  caf::replies_to<give_atom, uint64_t, int32_t, die_atom>::with<buffer>,
  caf::replies_to<give_atom, uint64_t, int32_t, offer_atom>::with<std::string>,
  caf::replies_to<keep_atom, buffer>::with<uint64_t>,
  caf::replies_to<lent_atom>::with<uint64_t>>;

/// FNV-1a over the bytes of `b`: equal hashes for bit-identical floats.
inline uint64_t bytes_hash(const buffer& b) {
  uint64_t h = 1469598103934665603ull;
  const auto* p = reinterpret_cast<const unsigned char*>(b.data());
  for (size_t i = 0; i < b.size() * sizeof(float); ++i)
    h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

/// The floats of pattern(n, seed), one after the other.
class pattern_floats {
public:
  explicit pattern_floats(int32_t seed) : x_(static_cast<uint32_t>(seed) * 2654435761u + 1) {}
  // Made from bits, not arithmetic: this header is compiled into two
  // programs, and `float(x) * 1e-3f - 8000.0f` is one FMA at -O3 with FMA
  // enabled but a multiply and a subtract at -O0 (other bits in the last
  // place). With the tests at -O0 and data_plane_peer at -O3 that made the
  // two sides disagree on what was sent. Sign, exponent 2^-3..2^4, 23
  // mantissa bits from the generator: finite, never NaN, never denormal.
  float next() {
    x_ = x_ * 1664525u + 1013904223u;
    const uint32_t bits = (x_ & 0x807fffffu) | ((124u + ((x_ >> 23) & 7u)) << 23);
    float f;
    std::memcpy(&f, &bits, sizeof(f));
    return f;
  }

private:
  uint32_t x_;
};

/// n floats from `seed`, every bit pattern position-dependent (NaN-free).
inline buffer pattern(uint64_t n, int32_t seed) {
  mutable_buffer m(static_cast<size_t>(n));
  pattern_floats gen(seed);
  for (size_t i = 0; i < m.size(); ++i)
    m[i] = gen.next();
  return std::move(m).freeze();
}

/// True if `b` is bit for bit pattern(n, seed) (without making that one).
inline bool is_pattern(const buffer& b, uint64_t n, int32_t seed) {
  if (b.size() != n)
    return false;
  pattern_floats gen(seed);
  for (size_t i = 0; i < n; ++i) {
    const float want = gen.next();
    if (std::memcmp(&want, b.data() + i, sizeof(float)) != 0)
      return false;
  }
  return true;
}

} // namespace chorus::test
