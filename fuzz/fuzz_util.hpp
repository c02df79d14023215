// What the fuzz targets share: the parsers under test read files by path, so
// each input is written to a scratch file of this process first.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <unistd.h>

namespace chorus::fuzz {

/// Writes `size` bytes to a scratch file named after this process and
/// `suffix` (e.g. ".txt") and returns its path. The same path is reused for
/// every input of a run; aborts if the file cannot be written (that is a
/// problem of the machine, not a finding).
inline std::string scratch_file(const uint8_t* data, size_t size, const char* suffix = "") {
  static const std::string dir = [] {
    const char* tmp = std::getenv("TMPDIR");
    return std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp");
  }();
  std::string path = dir + "/chorus-fuzz-" + std::to_string(::getpid()) + suffix;
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr || (size > 0 && std::fwrite(data, 1, size, f) != size) || std::fclose(f) != 0) {
    std::perror(path.c_str());
    std::abort();
  }
  return path;
}

} // namespace chorus::fuzz
