// Broken invariants fail fast: CHORUS_ASSERT(cond, msg) throws
// chorus::invariant_error naming the file and line. Protocol failures are
// caf::error values (messages/errors.hpp), not assertions.
#pragma once

#include <stdexcept>
#include <string>

namespace chorus {

/// A broken internal invariant or a misuse of an API.
struct invariant_error : std::logic_error {
  using std::logic_error::logic_error;
};

[[noreturn]] void fail_invariant(const char* file, int line, const char* cond,
                                 const std::string& msg);

} // namespace chorus

#define CHORUS_ASSERT(cond, msg)                                               \
  do {                                                                         \
    if (!(cond))                                                               \
      ::chorus::fail_invariant(__FILE__, __LINE__, #cond, (msg));              \
  } while (false)
