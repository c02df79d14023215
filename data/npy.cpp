#include "data/npy.hpp"

#include <cstring>
#include <fstream>
#include <stdexcept>
#include <vector>

namespace chorus {

namespace {
const char magic[] = "\x93NUMPY";
}

void write_npy(const std::string& path, cview values) {
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': ("
                       + std::to_string(values.size) + ",), }";
  // magic(6) + version(2) + header length(2) + header + '\n', padded to 64.
  size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out)
    throw std::runtime_error("cannot write " + path);
  out.write(magic, 6);
  const char version[2] = {1, 0};
  out.write(version, 2);
  const uint16_t len = static_cast<uint16_t>(header.size());
  const char len_le[2] = {static_cast<char>(len & 0xff), static_cast<char>(len >> 8)};
  out.write(len_le, 2);
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  out.write(reinterpret_cast<const char*>(values.data),
            static_cast<std::streamsize>(values.size * sizeof(float)));
  if (!out)
    throw std::runtime_error("error while writing " + path);
}

std::vector<float> read_npy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw std::runtime_error("cannot open " + path);
  char head[10];
  if (!in.read(head, 10) || std::memcmp(head, magic, 6) != 0 || head[6] != 1)
    throw std::runtime_error(path + ": not a version 1.0 .npy file");
  size_t len = static_cast<unsigned char>(head[8]) | (static_cast<unsigned char>(head[9]) << 8);
  std::string header(len, '\0');
  if (!in.read(header.data(), static_cast<std::streamsize>(len)))
    throw std::runtime_error(path + ": truncated header");
  if (header.find("'<f4'") == std::string::npos
      || header.find("'fortran_order': False") == std::string::npos)
    throw std::runtime_error(path + ": not a C-order float32 array");
  auto open = header.find("'shape': (");
  if (open == std::string::npos)
    throw std::runtime_error(path + ": no shape in header");
  size_t n = std::stoull(header.substr(open + 10));
  std::vector<float> values(n);
  if (!in.read(reinterpret_cast<char*>(values.data()),
               static_cast<std::streamsize>(n * sizeof(float))))
    throw std::runtime_error(path + ": truncated data");
  return values;
}

} // namespace chorus
