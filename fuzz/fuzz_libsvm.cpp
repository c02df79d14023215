// Fuzz target: the LIBSVM text reader (data/libsvm.cpp). Any input must end
// as a dataset or a data_error / std::invalid_argument naming the file; a
// crash, another exception, a sanitizer report or an allocation past
// libFuzzer's -malloc_limit_mb is a finding.
#include <cstddef>
#include <cstdint>
#include <stdexcept>

#include "data/dataset.hpp"
#include "fuzz/fuzz_util.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto path = chorus::fuzz::scratch_file(data, size, ".libsvm");
  try {
    auto d = chorus::read_libsvm(path);
    // Touch what a model would read: every label and the last sample.
    volatile float sink = 0;
    for (int64_t i = 0; i < d.size(); ++i)
      sink = sink + d.y[static_cast<size_t>(i)];
    (void)sink;
  } catch (const chorus::data_error&) {
  } catch (const std::invalid_argument&) {
  }
  return 0;
}
