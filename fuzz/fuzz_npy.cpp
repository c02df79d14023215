// Fuzz target: the NumPy .npy reader (data/npy.cpp, parse_npy), which reads
// the arrays of npy:X.npy,y.npy datasets. Any input must end as an array
// whose values match its shape, or a std::invalid_argument naming the file;
// a crash, another exception, a sanitizer report or an allocation past
// libFuzzer's -malloc_limit_mb is a finding.
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "data/npy.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  try {
    auto a = chorus::parse_npy(bytes, "fuzz.npy");
    uint64_t count = 1;
    for (auto d : a.shape)
      count *= static_cast<uint64_t>(d);
    if (a.values.size() != count)
      __builtin_trap();
  } catch (const std::invalid_argument&) {
  }
  return 0;
}
