// Readers for a protocol's own options (run_plan::options, e.g. tau,
// lambda, async), shared by every protocol so each checks its values the
// same way: a bad value throws std::invalid_argument naming the key, before
// any actor exists.
#pragma once

#include <cstdint>
#include <string>

#include "actors/run_tracker.hpp"

namespace chorus {

/// options[key] as a bool ("0" or "1"); throws std::invalid_argument otherwise.
bool option_flag(const run_plan& plan, const std::string& key);

/// options[key] as a whole number >= `lowest`; throws std::invalid_argument
/// naming the key otherwise.
int64_t option_count(const run_plan& plan, const std::string& key, int64_t lowest);

/// options[key] as a number >= 0; throws std::invalid_argument naming the
/// key otherwise.
float option_weight(const run_plan& plan, const std::string& key);

} // namespace chorus
