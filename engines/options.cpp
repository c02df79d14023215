// The option readers (options.hpp).
#include "engines/options.hpp"

#include <cmath>
#include <stdexcept>

namespace chorus {

bool option_flag(const run_plan& plan, const std::string& key) {
  double v = plan.number(key);
  if (v != 0 && v != 1)
    throw std::invalid_argument("option " + key + " must be 0 or 1 (got "
                                + plan.options.at(key) + ")");
  return v == 1;
}

int64_t option_count(const run_plan& plan, const std::string& key, int64_t lowest) {
  double v = plan.number(key);
  if (v != std::floor(v) || v < static_cast<double>(lowest) || v > 1e15)
    throw std::invalid_argument("option " + key + " must be a whole number >= "
                                + std::to_string(lowest) + " (got " + plan.options.at(key) + ")");
  return static_cast<int64_t>(v);
}

float option_weight(const run_plan& plan, const std::string& key) {
  double v = plan.number(key);
  if (v < 0)
    throw std::invalid_argument("option " + key + " must be >= 0 (got " + plan.options.at(key) + ")");
  return static_cast<float>(v);
}

} // namespace chorus
