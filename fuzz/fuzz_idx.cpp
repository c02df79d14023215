// Fuzz target: the IDX reader (data/idx.cpp), images and labels. The first
// byte picks the reader, the rest is the file (plain, or gzip when it starts
// with gzip's magic: zlib reads both). Any input must end as floats or a
// data_error naming the file.
#include <cstddef>
#include <cstdint>

#include "data/dataset.hpp"
#include "fuzz/fuzz_util.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1)
    return 0;
  bool images = (data[0] & 1) == 0;
  auto path = chorus::fuzz::scratch_file(data + 1, size - 1, ".idx");
  try {
    int64_t count = 0, rows = 0, cols = 0;
    auto xs = images ? chorus::read_idx_images(path, &count, &rows, &cols)
                     : chorus::read_idx_labels(path, &count);
    // What comes back must be as large as the header says.
    uint64_t expect = static_cast<uint64_t>(count) *
                      (images ? static_cast<uint64_t>(rows) * static_cast<uint64_t>(cols) : 1);
    if (xs.size() != expect)
      __builtin_trap();
  } catch (const chorus::data_error&) {
  }
  return 0;
}
