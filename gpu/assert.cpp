#include "gpu/assert.hpp"

namespace chorus {

void fail_invariant(const char* file, int line, const char* cond, const std::string& msg) {
  throw invariant_error(std::string(file) + ":" + std::to_string(line) + ": " + msg
                        + " (violated: " + cond + ")");
}

} // namespace chorus
