// Fuzz target: topology files (engines/topology.cpp, `--topology file:PATH`):
// edge lists, weighted edges and dense matrices. The first byte picks the
// node count (1..32) and the weight rule, the rest is the file. Any input
// must end as a validated topology or a std::invalid_argument.
#include <cstddef>
#include <cstdint>
#include <stdexcept>

#include "engines/topology.hpp"
#include "fuzz/fuzz_util.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1)
    return 0;
  int n = 1 + (data[0] & 31);
  auto rule = (data[0] & 32) ? chorus::weight_rule::metropolis : chorus::weight_rule::uniform;
  auto path = chorus::fuzz::scratch_file(data + 1, size - 1, ".topo");
  try {
    auto t = chorus::make_topology("file:" + path, n, rule);
    // What a gossip run asks next.
    (void)chorus::spectral_gap(t);
    for (int i = 0; i < n; ++i)
      (void)t.at(0).in_neighbours(i);
  } catch (const std::invalid_argument&) {
  }
  return 0;
}
