// The rendezvous token of an NCCL communicator as a plain payload: 128
// opaque bytes that travel in a CAF message from the party that made them
// to every rank (actors/nccl_group.hpp). Making one and joining with it are
// the gpu layer's (gpu/nccl_comm.hpp); this header knows no NCCL or CUDA.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>

#include <caf/deserializer.hpp>
#include <caf/meta/type_name.hpp>
#include <caf/serializer.hpp>

namespace chorus {

/// The rendezvous token of an NCCL communicator: ncclUniqueId's 128 bytes,
/// opaque. Made once by make_nccl_id(), sent to every rank, passed to each
/// rank's nccl_comm. A plain payload: it serializes as its raw bytes.
struct nccl_unique_id {
  static constexpr size_t size = 128;
  std::array<uint8_t, size> bytes{};

  friend bool operator==(const nccl_unique_id& a, const nccl_unique_id& b) {
    return a.bytes == b.bytes;
  }
  friend bool operator!=(const nccl_unique_id& a, const nccl_unique_id& b) { return !(a == b); }
};

/// CAF inspection: the 128 raw bytes for (de)serializers; for to_string a
/// short fingerprint (the id admits anyone holding it to the communicator,
/// so logs get no more than its first bytes).
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, nccl_unique_id& x) {
  if constexpr (std::is_base_of<caf::serializer, Inspector>::value
                || std::is_base_of<caf::deserializer, Inspector>::value) {
    return f.apply_raw(nccl_unique_id::size, x.bytes.data());
  } else {
    constexpr const char* hex = "0123456789abcdef";
    std::string summary;
    for (size_t i = 0; i < 4; ++i)
      summary += {hex[x.bytes[i] >> 4], hex[x.bytes[i] & 15]};
    summary += "...";
    return f(caf::meta::type_name("nccl_unique_id"), summary);
  }
}

} // namespace chorus
