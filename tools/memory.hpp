// Memory a run needs, checked before it is allocated. A model spec such as
// mlp:1048576,1048576 asks for terabytes; without this check the user meets
// std::bad_alloc (or a machine swapping itself to a halt) instead of a
// sentence that says what needed how much.
#pragma once

#include <cstdint>
#include <string>

#include "data/dataset.hpp"
#include "tools/experiment.hpp"

namespace chorus {

/// Bytes this process may still allocate: the machine's RAM, or what is
/// left under an address-space limit (ulimit -v, RLIMIT_AS) if smaller.
double memory_available();

/// "4.4 TB", "512.0 MB", "12 bytes": decimal units, one decimal.
std::string byte_size(double bytes);

/// Throws std::runtime_error when the copies of the weights that a run of
/// `cfg` holds at least (the initial weights and, on CPU workers, one
/// gradient or local model per worker) of a model with `params` parameters
/// exceed memory_available(). The message names the model, the parameter
/// count, the bytes per copy and in all, and the memory there is.
void check_model_memory(const experiment_config& cfg, int64_t params);

/// What to tell the user when std::bad_alloc escaped a run of `cfg` on
/// `data` anyway: the model, its size, and what to try.
std::string out_of_memory_message(const experiment_config& cfg, const train_test& data);

} // namespace chorus
