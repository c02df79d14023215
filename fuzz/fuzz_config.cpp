// Fuzz target: the config file of `chorus train --config FILE`
// (tools/options.cpp: read_config_file, then every value through the same
// setters and checks as the flags). Any input must end as a config or a
// std::invalid_argument (usage_error), which the CLI prints with exit 2.
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "fuzz/fuzz_util.hpp"
#include "tools/options.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto path = chorus::fuzz::scratch_file(data, size, ".conf");
  try {
    bool help = false;
    (void)chorus::parse_train_args({"--config=" + path}, &help);
  } catch (const std::invalid_argument&) {
  }
  return 0;
}
