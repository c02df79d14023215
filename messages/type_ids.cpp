#include "messages/type_ids.hpp"

#include <string>
#include <vector>

#include <caf/binary_serializer.hpp>
#include <utility>

namespace chorus {

#ifndef CHORUS_VERSION
#define CHORUS_VERSION "unknown"
#endif

const char* const version = CHORUS_VERSION;

namespace {

// FNV-1a, folded into h.
void fold(uint64_t& h, const char* data, size_t n) {
  for (size_t i = 0; i < n; ++i)
    h = (h ^ static_cast<unsigned char>(data[i])) * 1099511628211ull;
}

// A type's name and the bytes of its default value as CAF serializes it:
// a field added, removed or retyped changes the bytes (a name alone would
// not), so two builds whose messages differ in layout disagree here.
template <size_t I>
void fold_type(uint64_t& h) {
  using type = typename caf::type_by_id<caf::id_block::chorus::begin + I>::type;
  const char* name = caf::type_name_by_id<caf::id_block::chorus::begin + I>::value;
  fold(h, name, std::char_traits<char>::length(name));
  std::vector<char> bytes;
  caf::binary_serializer sink{nullptr, bytes};
  type value{};
  if (sink(value))
    bytes.assign({'?'});  // cannot happen for a default value; still hashed
  fold(h, bytes.data(), bytes.size());
  fold(h, ";", 1);
}

template <size_t... Is>
uint64_t hash_types(std::index_sequence<Is...>) {
  uint64_t h = 1469598103934665603ull;
  (fold_type<Is>(h), ...);
  return h;
}

} // namespace

uint64_t type_table_hash() {
  constexpr size_t n = caf::id_block::chorus::end - caf::id_block::chorus::begin;
  return hash_types(std::make_index_sequence<n>{});
}

} // namespace chorus
