// NumPy .npy files: the writer Chorus uses for model.npy (flat float32),
// and a reader for the arrays a researcher brings (npy:X.npy,y.npy).
// Format (numpy.lib.format): "\x93NUMPY", major and minor version, the
// header length (uint16 little-endian in v1, uint32 in v2 and v3), then an
// ASCII Python dict literal {'descr': '<f4', 'fortran_order': False,
// 'shape': (n, d), } padded with spaces and a newline, then the data.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "messages/buffer.hpp"

namespace chorus {

/// Writes `values` to `path` as a 1-D float32 .npy; throws std::runtime_error
/// naming the path on failure.
void write_npy(const std::string& path, cview values);

/// Reads a 1-D float32 .npy written by write_npy; throws std::runtime_error
/// naming the path if it is missing or not such a file.
std::vector<float> read_npy(const std::string& path);

/// An array read from a .npy file, its values converted to float.
struct npy_array {
  std::vector<int64_t> shape;  ///< () for a scalar
  std::vector<float> values;   ///< C order, prod(shape) of them
  bool integer = false;        ///< the stored type was an integer type
  std::string descr;           ///< the stored type, e.g. "<f8", "|u1"
};

/// Parses the bytes of a .npy file (versions 1.0, 2.0, 3.0): little-endian
/// (or byte-order-free) float32, float64, int32, int64, uint8, C order.
/// Throws std::invalid_argument, naming `name`, for anything else: bad
/// magic, an unknown version, a malformed header, another dtype,
/// fortran_order True, an implausible shape, truncated data (trailing bytes
/// are refused too), or a value that is not finite.
npy_array parse_npy(const std::string& bytes, const std::string& name);

/// Reads `path` (at most `max_bytes`) and parses it; throws
/// std::invalid_argument naming the path.
npy_array read_npy_array(const std::string& path, uint64_t max_bytes = uint64_t{1} << 34);

} // namespace chorus
