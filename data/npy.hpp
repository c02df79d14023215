// Writes a flat float32 array as a NumPy .npy file (format 1.0), readable by
// numpy.load. Only what Chorus writes: one dimension, little-endian float32.
#pragma once

#include <string>

#include "messages/buffer.hpp"

namespace chorus {

/// Writes `values` to `path` as a 1-D float32 .npy; throws std::runtime_error
/// naming the path on failure.
void write_npy(const std::string& path, cview values);

/// Reads a 1-D float32 .npy written by write_npy; throws std::runtime_error
/// naming the path if it is missing or not such a file.
std::vector<float> read_npy(const std::string& path);

} // namespace chorus
