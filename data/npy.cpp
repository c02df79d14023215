#include "data/npy.hpp"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
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

namespace {

[[noreturn]] void refuse(const std::string& name, const std::string& why) {
  throw std::invalid_argument(name + ": " + why);
}

// The header's dict literal, e.g. {'descr': '<f4', 'fortran_order': False,
// 'shape': (3, 4), }: string keys; values a string, True/False, or a tuple
// of non-negative integers. Nothing else (numpy writes nothing else).
struct npy_header {
  std::string descr;
  bool fortran_order = false;
  bool have_descr = false, have_order = false, have_shape = false;
  std::vector<int64_t> shape;
};

class header_parser {
public:
  header_parser(const std::string& text, const std::string& name) : s_(text), name_(name) {}

  npy_header parse() {
    npy_header h;
    expect('{');
    while (true) {
      skip();
      if (peek() == '}')
        break;
      const std::string key = string();
      expect(':');
      skip();
      if (key == "descr") {
        h.descr = string();
        h.have_descr = true;
      } else if (key == "fortran_order") {
        h.fortran_order = boolean();
        h.have_order = true;
      } else if (key == "shape") {
        h.shape = tuple();
        h.have_shape = true;
      } else {
        fail("unknown header key '" + key + "'");
      }
      skip();
      if (peek() == ',') {
        ++at_;
        continue;
      }
      if (peek() != '}')
        fail("expected ',' or '}' in the header");
    }
    ++at_;
    skip();
    if (at_ != s_.size())
      fail("text after the header's dict");
    if (!h.have_descr || !h.have_order || !h.have_shape)
      fail("the header lacks descr, fortran_order or shape");
    return h;
  }

private:
  [[noreturn]] void fail(const std::string& why) { refuse(name_, "bad .npy header: " + why); }
  char peek() const { return at_ < s_.size() ? s_[at_] : '\0'; }
  void skip() {
    while (at_ < s_.size() && (s_[at_] == ' ' || s_[at_] == '\n' || s_[at_] == '\t'))
      ++at_;
  }
  void expect(char c) {
    skip();
    if (peek() != c)
      fail(std::string("expected '") + c + "'");
    ++at_;
  }
  std::string string() {
    skip();
    const char quote = peek();
    if (quote != '\'' && quote != '"')
      fail("expected a quoted string");
    const size_t end = s_.find(quote, at_ + 1);
    if (end == std::string::npos || end - at_ > 64)
      fail("unterminated string");
    std::string out = s_.substr(at_ + 1, end - at_ - 1);
    at_ = end + 1;
    return out;
  }
  bool boolean() {
    if (s_.compare(at_, 4, "True") == 0) {
      at_ += 4;
      return true;
    }
    if (s_.compare(at_, 5, "False") == 0) {
      at_ += 5;
      return false;
    }
    fail("fortran_order must be True or False");
  }
  std::vector<int64_t> tuple() {
    expect('(');
    std::vector<int64_t> out;
    while (true) {
      skip();
      if (peek() == ')')
        break;
      if (peek() < '0' || peek() > '9')
        fail("a shape holds non-negative integers");
      int64_t v = 0;
      while (peek() >= '0' && peek() <= '9') {
        if (v > (std::numeric_limits<int64_t>::max() - 9) / 10)
          fail("a dimension is too large");
        v = v * 10 + (peek() - '0');
        ++at_;
      }
      if (peek() == 'L')  // Python 2 longs
        ++at_;
      out.push_back(v);
      if (out.size() > 32)
        fail("more than 32 dimensions");
      skip();
      if (peek() == ',') {
        ++at_;
        continue;
      }
      if (peek() != ')')
        fail("expected ',' or ')' in the shape");
    }
    ++at_;
    return out;
  }

  const std::string& s_;
  const std::string& name_;
  size_t at_ = 0;
};

uint32_t little_endian(const unsigned char* p, int bytes) {
  uint32_t v = 0;
  for (int k = bytes - 1; k >= 0; --k)
    v = (v << 8) | p[k];
  return v;
}

template <class T>
void convert(const char* data, size_t count, std::vector<float>& out) {
  for (size_t i = 0; i < count; ++i) {
    T v;
    std::memcpy(&v, data + i * sizeof(T), sizeof(T));
    out[i] = static_cast<float>(v);
  }
}

} // namespace

npy_array parse_npy(const std::string& bytes, const std::string& name) {
  if (bytes.size() < 10 || std::memcmp(bytes.data(), magic, 6) != 0)
    refuse(name, "not a .npy file (no \\x93NUMPY magic)");
  const auto* raw = reinterpret_cast<const unsigned char*>(bytes.data());
  const int major = raw[6];
  size_t prefix = 0, header_len = 0;
  if (major == 1) {
    prefix = 10;
    header_len = little_endian(raw + 8, 2);
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12)
      refuse(name, "truncated header");
    prefix = 12;
    header_len = little_endian(raw + 8, 4);
  } else {
    refuse(name, ".npy format version " + std::to_string(major) + "." + std::to_string(raw[7])
                   + " is not supported (1.0, 2.0, 3.0 are)");
  }
  if (header_len > bytes.size() - prefix)
    refuse(name, "truncated header (" + std::to_string(header_len) + " bytes announced, "
                   + std::to_string(bytes.size() - prefix) + " there)");
  const std::string text = bytes.substr(prefix, header_len);
  const npy_header h = header_parser(text, name).parse();
  if (h.fortran_order)
    refuse(name, "fortran_order is True: save the array in C order (numpy.ascontiguousarray)");
  npy_array out;
  out.descr = h.descr;
  out.shape = h.shape;
  const std::string& d = h.descr;
  if (d.size() == 3 && d[0] == '>' && d[2] != '1')
    refuse(name, "dtype " + d + " is big-endian; save it little-endian (astype('<" + d.substr(1) + "'))");
  const bool order_ok = d.size() == 3 && (d[0] == '<' || d[0] == '|' || (d[2] == '1' && d[0] == '>'));
  const std::string kind = order_ok ? d.substr(1) : "";
  size_t item = 0;
  if (kind == "f4" || kind == "i4")
    item = 4;
  else if (kind == "f8" || kind == "i8")
    item = 8;
  else if (kind == "u1")
    item = 1;
  else
    refuse(name, "dtype '" + d + "' is not supported (float32, float64, int32, int64, uint8)");
  out.integer = kind[0] != 'f';
  uint64_t count = 1;
  for (auto dim : h.shape) {
    if (dim != 0 && count > (uint64_t{1} << 40) / static_cast<uint64_t>(dim))
      refuse(name, "implausible shape (more than 2^40 elements)");
    count *= static_cast<uint64_t>(dim);
  }
  const size_t data_at = prefix + header_len;
  const uint64_t want = count * item;
  const uint64_t have = bytes.size() - data_at;
  if (have < want)
    refuse(name, "truncated data: the shape needs " + std::to_string(want) + " bytes, the file has "
                   + std::to_string(have));
  if (have > want)
    refuse(name, std::to_string(have - want) + " bytes after the data the shape describes");
  out.values.resize(static_cast<size_t>(count));
  const char* data = bytes.data() + data_at;
  if (kind == "f4")
    convert<float>(data, count, out.values);
  else if (kind == "f8")
    convert<double>(data, count, out.values);
  else if (kind == "i4")
    convert<int32_t>(data, count, out.values);
  else if (kind == "i8")
    convert<int64_t>(data, count, out.values);
  else
    convert<uint8_t>(data, count, out.values);
  for (size_t i = 0; i < out.values.size(); ++i)
    if (!std::isfinite(out.values[i]))
      refuse(name, "value " + std::to_string(i) + " is not finite (as float32)");
  return out;
}

npy_array read_npy_array(const std::string& path, uint64_t max_bytes) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec))
    refuse(path, "not a readable regular file");
  const auto size = std::filesystem::file_size(path, ec);
  if (ec)
    refuse(path, "cannot read its size");
  if (size > max_bytes)
    refuse(path, "larger than " + std::to_string(max_bytes) + " bytes");
  std::ifstream in(path, std::ios::binary);
  if (!in)
    refuse(path, "cannot open");
  std::string bytes(static_cast<size_t>(size), '\0');
  if (!in.read(bytes.data(), static_cast<std::streamsize>(size)))
    refuse(path, "read error");
  return parse_npy(bytes, path);
}

} // namespace chorus
