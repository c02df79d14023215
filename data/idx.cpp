// IDX readers (the MNIST file format), the Fashion-MNIST loader and idx:DIR
// (any directory laid out like MNIST: MNIST, KMNIST, EMNIST).
//
// IDX is big-endian: a 4-byte magic (0x00000803 for a 3-d ubyte tensor of
// images, 0x00000801 for a 1-d ubyte vector of labels), one uint32 per
// dimension, then the bytes. Files are read through zlib, which also reads
// uncompressed files transparently. This file does not download anything and
// knows nothing about partitions or workers.
#include "data/dataset.hpp"
#include "messages/checked.hpp"

#include <zlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <sstream>

namespace chorus {

namespace {

constexpr uint32_t idx_images_magic = 0x00000803;
constexpr uint32_t idx_labels_magic = 0x00000801;

// A corrupt header could claim terabytes; refuse before allocating.
constexpr uint64_t max_payload_bytes = uint64_t{1} << 34;

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw data_error(path + ": " + what);
}

std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08X", v);
  return buf;
}

// Owns a zlib file handle.
class gz_reader {
public:
  explicit gz_reader(const std::string& path) : path_(path) {
    errno = 0;
    file_ = gzopen(path.c_str(), "rb");
    if (file_ == nullptr) {
      int err = errno;
      fail(path, std::string("cannot open") + (err != 0 ? std::string(" (") + std::strerror(err) + ")" : ""));
    }
    // A large buffer lets inflate work on big blocks; the default 8 KiB makes
    // decompression of the 26 MB training images noticeably slower.
    gzbuffer(file_, 1 << 20);
  }
  ~gz_reader() {
    if (file_ != nullptr)
      gzclose(file_);
  }
  gz_reader(const gz_reader&) = delete;
  gz_reader& operator=(const gz_reader&) = delete;

  // Reads up to `n` bytes; returns how many were read (less only at the end
  // of the data). Damaged data throws.
  uint64_t read(void* dst, uint64_t n) {
    auto* out = static_cast<unsigned char*>(dst);
    uint64_t done = 0;
    while (done < n) {
      // gzread takes an unsigned int length and returns an int.
      unsigned chunk = static_cast<unsigned>(std::min<uint64_t>(n - done, 1u << 30));
      int got = gzread(file_, out + done, chunk);
      // A cut-off gzip stream is not an error here: zlib returns the bytes
      // it had (gzerror says Z_BUF_ERROR) and the caller reports truncation
      // with byte counts. -1 means damaged data or an I/O failure.
      if (got < 0) {
        int code = 0;
        const char* msg = gzerror(file_, &code);
        fail(path_, std::string("corrupt or unreadable: ") + (msg ? msg : "read error") +
                        " after " + std::to_string(done) + " bytes");
      }
      if (got == 0)
        break;
      done += static_cast<uint64_t>(got);
    }
    return done;
  }

  // Like read, but anything short of `n` bytes is a truncation error.
  void read_exact(void* dst, uint64_t n, const char* what) {
    uint64_t got = read(dst, n);
    if (got != n)
      fail(path_, std::string("truncated ") + what + ": expected " + std::to_string(n) +
                      " bytes, got " + std::to_string(got));
  }

private:
  std::string path_;
  gzFile file_ = nullptr;
};

uint32_t read_be32(const unsigned char* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

// Reads the magic and `ndims` dimensions; checks the magic.
std::vector<uint32_t> read_header(gz_reader& in, const std::string& path, uint32_t magic,
                                  int ndims, const char* kind) {
  // The magic first, on its own: a file of the other kind has a shorter
  // header, and "wrong magic" is the more useful error than "truncated".
  std::array<unsigned char, 4> word{};
  in.read_exact(word.data(), 4, "header");
  uint32_t found = read_be32(word.data());
  if (found != magic)
    fail(path, std::string("wrong magic number for an IDX ") + kind + " file: expected " +
                   hex32(magic) + ", found " + hex32(found));
  std::array<unsigned char, 12> rest{};
  uint64_t got = in.read(rest.data(), 4 * static_cast<uint64_t>(ndims));
  if (got != 4 * static_cast<uint64_t>(ndims))
    fail(path, "truncated header: expected " + std::to_string(4 + 4 * ndims) + " bytes, got " +
                   std::to_string(4 + got));
  std::vector<uint32_t> dims(ndims);
  for (int i = 0; i < ndims; ++i)
    dims[i] = read_be32(rest.data() + 4 * i);
  return dims;
}

// Reads `n` payload bytes and maps each byte b to table[b]. The header's
// `n` is a claim, not a fact: the output grows with what has really been
// decompressed (doubling, capped at n), so a tiny file claiming a billion
// bytes fails as truncated after allocating about twice what it held.
std::vector<float> read_payload(gz_reader& in, const std::string& path, uint64_t n,
                                const std::array<float, 256>& table, const char* what) {
  if (n > max_payload_bytes)
    fail(path, std::string("implausible dimensions: ") + what + " would take " +
                   std::to_string(n) + " bytes (at most " + std::to_string(max_payload_bytes) +
                   " are read)");
  constexpr uint64_t chunk_bytes = uint64_t{1} << 20;
  std::vector<float> out;
  std::vector<unsigned char> chunk(std::min<uint64_t>(n, chunk_bytes));
  uint64_t done = 0;
  while (done < n) {
    uint64_t want = std::min<uint64_t>(n - done, chunk.size());
    uint64_t got = in.read(chunk.data(), want);
    if (done + got > out.capacity())
      out.reserve(std::min<uint64_t>(n, std::max<uint64_t>(2 * out.capacity(), done + got)));
    out.resize(done + got);
    float* dst = out.data() + done;
    for (uint64_t i = 0; i < got; ++i)
      dst[i] = table[chunk[i]];
    done += got;
    if (got < want)
      fail(path, std::string("truncated ") + what + ": expected " + std::to_string(n) +
                     " bytes, got " + std::to_string(done));
  }
  return out;
}

std::array<float, 256> pixel_table() {
  std::array<float, 256> t{};
  for (int b = 0; b < 256; ++b)
    t[b] = static_cast<float>(b) / 255.0f;
  return t;
}

std::array<float, 256> label_table() {
  std::array<float, 256> t{};
  for (int b = 0; b < 256; ++b)
    t[b] = static_cast<float>(b);
  return t;
}

// Reads one images + labels pair and checks that they agree.
dataset read_split(const std::string& images_path, const std::string& labels_path,
                   int64_t num_classes) {
  dataset d;
  d.name = "fashion-mnist";
  d.task = task_kind::classification;
  d.num_classes = num_classes;
  int64_t count = 0, rows = 0, cols = 0, label_count = 0;
  d.x = read_idx_images(images_path, &count, &rows, &cols);
  d.y = read_idx_labels(labels_path, &label_count);
  if (count != label_count)
    throw data_error(images_path + " holds " + std::to_string(count) + " images but " +
                     labels_path + " holds " + std::to_string(label_count) + " labels");
  if (rows <= 0 || cols <= 0)
    fail(images_path, "images of " + std::to_string(rows) + "x" + std::to_string(cols) +
                          " pixels: an image needs at least one pixel");
  d.num_features = rows * cols;
  for (int64_t i = 0; i < label_count; ++i)
    if (d.y[i] >= static_cast<float>(num_classes))
      fail(labels_path, "label out of range at index " + std::to_string(i) + ": " +
                            std::to_string(static_cast<int>(d.y[i])) + " (expected 0.." +
                            std::to_string(num_classes - 1) + ")");
  return d;
}

} // namespace

std::vector<float> read_idx_images(const std::string& path, int64_t* count, int64_t* rows,
                                   int64_t* cols) {
  gz_reader in(path);
  auto dims = read_header(in, path, idx_images_magic, 3, "images");
  // Two 32-bit dimensions always fit in 64 bits, three can wrap past 2^64;
  // a wrapped product would pass the size cap and describe far more pixels
  // than were read. One image is capped too, so that an empty file of
  // enormous images cannot claim a feature count that overflows later.
  const uint64_t pixels = uint64_t{dims[1]} * dims[2];
  auto n = checked_mul<uint64_t>(dims[0], pixels);
  if (!n || pixels > max_payload_bytes)
    fail(path, "implausible dimensions: " + std::to_string(dims[0]) + " images of " +
                   std::to_string(dims[1]) + "x" + std::to_string(dims[2]) + " pixels" +
                   (n ? " (" + std::to_string(pixels) + " pixels per image)"
                      : std::string(" overflow a 64-bit size")));
  static const auto table = pixel_table();
  auto out = read_payload(in, path, *n, table, "pixel data");
  if (count)
    *count = dims[0];
  if (rows)
    *rows = dims[1];
  if (cols)
    *cols = dims[2];
  return out;
}

std::vector<float> read_idx_labels(const std::string& path, int64_t* count) {
  gz_reader in(path);
  auto dims = read_header(in, path, idx_labels_magic, 1, "labels");
  static const auto table = label_table();
  auto out = read_payload(in, path, dims[0], table, "label data");
  if (count)
    *count = dims[0];
  return out;
}

namespace {

// base + name + ".gz" when it exists, else base + name when that exists
// (gzopen reads plain files too); neither: the .gz name, so the error
// names the file looked for first.
std::string idx_file(const std::string& base, const std::string& name) {
  const std::string gz = base + name + ".gz";
  if (std::FILE* f = std::fopen(gz.c_str(), "rb")) {
    std::fclose(f);
    return gz;
  }
  const std::string plain = base + name;
  if (std::FILE* f = std::fopen(plain.c_str(), "rb")) {
    std::fclose(f);
    return plain;
  }
  return gz;
}

// The four files of an MNIST-style directory; num_classes 0: the largest
// label + 1.
train_test load_idx_files(const std::string& dir, int64_t num_classes, const std::string& name) {
  const std::string base = dir.empty() || dir.back() == '/' ? dir : dir + "/";
  const auto train_images = idx_file(base, "train-images-idx3-ubyte");
  const auto train_labels = idx_file(base, "train-labels-idx1-ubyte");
  const auto test_images = idx_file(base, "t10k-images-idx3-ubyte");
  const auto test_labels = idx_file(base, "t10k-labels-idx1-ubyte");
  int64_t classes = num_classes;
  if (classes == 0) {
    float largest = 0;
    for (auto* path : {&train_labels, &test_labels})
      for (float v : read_idx_labels(*path, nullptr))
        largest = std::max(largest, v);
    classes = static_cast<int64_t>(largest) + 1;
    if (classes < 2)
      throw data_error(train_labels + ": every label is 0: a classification needs two classes");
  }
  auto train = std::make_shared<dataset>(read_split(train_images, train_labels, classes));
  auto test = std::make_shared<dataset>(read_split(test_images, test_labels, classes));
  train->name = test->name = name;
  if (train->num_features != test->num_features)
    throw data_error(dir + ": training images have " + std::to_string(train->num_features) +
                     " pixels but test images have " + std::to_string(test->num_features));
  if (train->size() == 0)
    throw data_error(train_images + ": no training images");
  if (test->size() == 0)
    throw data_error(test_images + ": no test images");

  // One global mean and standard deviation from the training pixels, applied
  // to both sets so that the test set sees exactly the training transform.
  double sum = 0.0, sum_sq = 0.0;
  for (float v : train->x) {
    sum += v;
    sum_sq += static_cast<double>(v) * v;
  }
  const double n = static_cast<double>(train->x.size());
  const double mean = sum / n;
  const double var = std::max(0.0, sum_sq / n - mean * mean);
  // Constant images have no spread to divide by; centring alone is the best
  // that can be done.
  const double stddev = var > 0.0 ? std::sqrt(var) : 1.0;
  const float m = static_cast<float>(mean);
  const float inv = static_cast<float>(1.0 / stddev);
  for (float& v : train->x)
    v = (v - m) * inv;
  for (float& v : test->x)
    v = (v - m) * inv;

  train_test out;
  out.train = std::move(train);
  out.test = std::move(test);
  return out;
}

} // namespace

train_test load_fashion_mnist(const std::string& dir) {
  return load_idx_files(dir, 10, "fashion-mnist");
}

train_test load_idx_dir(const std::string& dir) {
  if (dir.empty())
    throw data_error("idx:DIR needs a directory, e.g. idx:/data/mnist");
  return load_idx_files(dir, 0, "idx:" + dir);
}

} // namespace chorus
