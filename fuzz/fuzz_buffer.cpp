// Fuzz target: deserializing the payloads a remote peer sends
// (messages/payloads.hpp, messages/buffer.cpp) through CAF's
// binary_deserializer, as the middleman does for every incoming message.
// The first byte picks the payload type. Any input must end as a value or a
// caf::error; it must never crash or allocate more than the bytes can hold.
#include <cstddef>
#include <cstdint>

#include <caf/binary_deserializer.hpp>

#include "messages/payloads.hpp"

namespace {

template <class T>
void load(const uint8_t* data, size_t size) {
  T value;
  caf::binary_deserializer source{nullptr, reinterpret_cast<const char*>(data), size};
  (void)source(value);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1)
    return 0;
  const uint8_t* rest = data + 1;
  size_t n = size - 1;
  switch (data[0] % 8) {
    case 0: load<chorus::weights>(rest, n); break;
    case 1: load<chorus::gradient>(rest, n); break;
    case 2: load<chorus::local_plan>(rest, n); break;
    case 3: load<chorus::local_result>(rest, n); break;
    case 4: load<chorus::metrics_row>(rest, n); break;
    case 5: load<chorus::peer_state>(rest, n); break;
    case 6: load<chorus::run_summary>(rest, n); break;
    default: load<chorus::reduce_share>(rest, n); break;
  }
  return 0;
}
