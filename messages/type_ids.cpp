#include "messages/type_ids.hpp"

#include <string>
#include <utility>

namespace chorus {

#ifndef CHORUS_VERSION
#define CHORUS_VERSION "unknown"
#endif

const char* const version = CHORUS_VERSION;

namespace {

template <size_t... Is>
uint64_t hash_names(std::index_sequence<Is...>) {
  // FNV-1a over "name;name;..." in ID order.
  uint64_t h = 1469598103934665603ull;
  auto add = [&h](const char* name) {
    for (const char* c = name; *c; ++c)
      h = (h ^ static_cast<unsigned char>(*c)) * 1099511628211ull;
    h = (h ^ ';') * 1099511628211ull;
  };
  (add(caf::type_name_by_id<caf::id_block::chorus::begin + Is>::value), ...);
  return h;
}

} // namespace

uint64_t type_table_hash() {
  constexpr size_t n = caf::id_block::chorus::end - caf::id_block::chorus::begin;
  return hash_names(std::make_index_sequence<n>{});
}

} // namespace chorus
