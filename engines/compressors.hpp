// Gradient compressors and error feedback as values: none, qsgd:S, topk:F,
// randk:F and sign, each an encode into a compact, self-describing payload
// and one decode for all of them. One explicit table (compressor_registry)
// names them; make_compressor builds one from a spec such as "qsgd:4".
//
// Why engines/: compression sits on the link between a worker and the
// engine that gathers its replies (the round server decodes replies marked
// encoded). algorithms/ and tools/ see this header too.
//
// What it is not: an actor, a protocol, or a link model (a byte costs no time
// here). It keeps no state between calls; the error-feedback memories are
// the two small classes at the end (one per link end).
//
// The payload is a chorus::buffer used as a byte container: its floats hold
// the packed bytes, so its wire size (buffer::wire_bytes) is the real encoded
// size rounded up to 4 bytes, plus the buffer's 8-byte length. Host byte
// order, as for every buffer. Layout (offsets in bytes):
//
//    0  u8  'C'           magic
//    1  u8  'Z'
//    2  u8  1             format version
//    3  u8  codec         0 none, 1 qsgd, 2 topk, 3 randk, 4 sign
//    4  u32 param         qsgd: S (levels); topk, randk: k (entries kept); else 0
//    8  u64 d             the dimension of the encoded vector
//   16  u64 seed          randk: the seed its indices are drawn from; else 0
//   24  body:
//       none   d f32 values                                      32 bits/entry
//       qsgd   f32 ||v||_2, then per entry 1 sign bit (1 = negative) and the
//              level l in 0..S in b = ceil(log2(S+1)) bits, packed LSB first
//              with no padding between entries                  1 + b bits/entry
//       topk   k u32 indices (strictly increasing), then k f32 values
//                                                              64 bits/kept entry
//       randk  k f32 values v_j at the k indices drawn from the seed (the
//              decoder draws the same ones); decode scales them by d/k
//                                                              32 bits/kept entry
//       sign   f32 scale ||v||_1/d, then d sign bits (1 = negative), LSB first
//                                                                1 bit/entry
// then zero padding to a multiple of 4 bytes.
//
// Decoding checks everything before it allocates: the magic, version, codec,
// that d equals the dimension the receiver expects, the parameters, the
// exact payload length, each level <= S, each index < d and increasing, and a
// finite norm/scale. A payload that fails throws std::invalid_argument; no
// payload can make decode allocate more than the expected d floats.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "messages/buffer.hpp"

namespace chorus {

/// The codec id in a payload's header.
enum class codec_id : uint8_t { none = 0, qsgd = 1, topk = 2, randk = 3, sign = 4 };

/// A payload's header, as read back by read_header.
struct payload_header {
  codec_id codec = codec_id::none;
  uint32_t param = 0;  ///< qsgd: S; topk, randk: k; else 0
  uint64_t dim = 0;    ///< d
  uint64_t seed = 0;   ///< randk's seed; else 0
};

/// Size of the header in bytes.
inline constexpr size_t payload_header_bytes = 24;

/// A compressor as a value. Copy it freely; it keeps no state between calls.
class compressor {
public:
  using encode_fn = std::function<buffer(cview v, uint64_t seed)>;
  using size_fn = std::function<size_t(size_t d)>;

  compressor() = default;
  compressor(std::string name, bool unbiased, encode_fn encode, size_fn bytes);

  /// The spec it was built from ("qsgd:4").
  const std::string& name() const { return name_; }
  /// E[decode(encode(v))] = v over the seed (none, qsgd, randk); top-k and
  /// sign are biased and need error feedback (or --allow-biased).
  bool unbiased() const { return unbiased_; }
  /// The payload for host vector `v`; `seed` drives the randomized codecs
  /// (the same seed gives the same payload). Throws std::invalid_argument
  /// for a vector too long for the format (d >= 2^32 for topk/randk).
  buffer encode(cview v, uint64_t seed) const { return encode_(v, seed); }
  /// The payload's size in bytes for dimension d: header + body, before the
  /// padding to 4 bytes (the buffer holds ceil(bytes/4) floats).
  size_t encoded_bytes(size_t d) const { return bytes_(d); }

private:
  std::string name_;
  bool unbiased_ = true;
  encode_fn encode_;
  size_fn bytes_;
};

/// One registry entry.
struct compressor_info {
  std::string name;   ///< what a spec starts with
  std::string usage;  ///< the spec with its parameters, e.g. "qsgd:S"
  std::string help;   ///< one line: the codec and its size per entry
  bool unbiased;      ///< false: needs error feedback or --allow-biased
};

/// Every compressor, in the order `chorus list` prints them.
const std::vector<compressor_info>& compressor_registry();

/// The compressor `spec`. Throws std::invalid_argument on an unknown name
/// (listing the valid ones) or a bad parameter (qsgd: 1 <= S <= 2^16 - 1;
/// topk, randk: 0 < F <= 1).
compressor make_compressor(const std::string& spec);

/// The header of `payload`; throws std::invalid_argument if it is too short
/// or its magic, version or codec is wrong.
payload_header read_header(const buffer& payload);

/// The d = `dim` floats `payload` encodes (any codec: the header says
/// which). Throws std::invalid_argument, naming what is wrong, for a payload
/// that is not a valid encoding of a vector of length `dim`.
buffer decode(const buffer& payload, size_t dim);

/// Entries topk:F and randk:F keep of d: ceil(F d), at least 1 when d > 0.
size_t kept_entries(double fraction, size_t d);

// -- error feedback ----------------------------------------------------------

/// The error-feedback forms (--error-feedback).
enum class feedback_kind : uint8_t {
  none = 0,  ///< send C(g)
  ef = 1,    ///< Seide 2014 / Karimireddy 2019: p = g + e; send C(p); e = p - D(C(p))
  ef21 = 2,  ///< Richtarik et al. 2021: send c = C(g - h); both ends h += D(c); use h
};

/// One registry entry.
struct feedback_info {
  std::string name;
  std::string help;
};

/// none, ef, ef21, in the order `chorus list` prints them.
const std::vector<feedback_info>& feedback_registry();

/// The form called `name`; throws std::invalid_argument listing the valid ones.
feedback_kind make_feedback(const std::string& name);

/// The sender's end of one compressed link, with its memory (ef: the error
/// e; ef21: its estimate h). One per sender; not thread-safe.
class feedback_encoder {
public:
  feedback_encoder(compressor c, feedback_kind kind);
  /// The payload to send for gradient `g` (host memory).
  buffer encode(cview g, uint64_t seed);
  /// ef: the error memory e; ef21: the estimate h; none: empty.
  const std::vector<float>& memory() const { return memory_; }

private:
  compressor c_;
  feedback_kind kind_;
  std::vector<float> memory_;
};

/// The receiver's end of one compressed link: decodes, and for ef21 keeps
/// its own copy of the sender's estimate h and returns it. One per sender.
class feedback_decoder {
public:
  explicit feedback_decoder(feedback_kind kind) : kind_(kind) {}
  /// The gradient `payload` stands for (d = `dim`). Throws
  /// std::invalid_argument for a corrupt payload (the memory is unchanged).
  buffer decode(const buffer& payload, size_t dim);

private:
  feedback_kind kind_;
  std::vector<float> memory_;
};

} // namespace chorus
