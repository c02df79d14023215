// The two storage-independent helpers of `dataset` (data/dataset.hpp): the
// shape check models run before reading features, and one sample written
// out densely.
#include "data/dataset.hpp"

#include <algorithm>
#include <cstdio>

namespace chorus {

bool dataset::well_formed() const {
  if (num_features < 0)
    return false;
  if (!is_sparse())
    return num_features == 0 ? x.empty()
                             : x.size() / static_cast<size_t>(num_features) == y.size() &&
                                   x.size() % static_cast<size_t>(num_features) == 0;
  return x.empty() && num_features <= max_sparse_features &&
         sparse.offsets.size() == y.size() + 1 && sparse.offsets.front() == 0 &&
         sparse.offsets.back() == static_cast<int64_t>(sparse.columns.size()) &&
         sparse.columns.size() == sparse.values.size();
}

void dataset::copy_sample(int64_t i, float* out) const {
  if (!is_sparse()) {
    std::copy_n(sample(i), num_features, out);
    return;
  }
  std::fill_n(out, num_features, 0.0f);
  const sparse_row r = row(i);
  for (int64_t k = 0; k < r.size; ++k) {
    if (r.columns[k] < 0 || r.columns[k] >= num_features)
      throw std::invalid_argument("dataset '" + name + "' sample " + std::to_string(i) +
                                  " has column " + std::to_string(r.columns[k]) +
                                  " outside [0, " + std::to_string(num_features) + ")");
    out[r.columns[k]] = r.values[k];
  }
}

namespace {

// FNV-1a over raw bytes, folded into `h`.
uint64_t fold(uint64_t h, const void* data, size_t bytes) {
  auto p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < bytes; ++i)
    h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

std::string part_fingerprint(const char* part, const dataset& d) {
  uint64_t h = 1469598103934665603ull;
  h = fold(h, d.y.data(), d.y.size() * sizeof(float));
  h = fold(h, d.x.data(), d.x.size() * sizeof(float));
  h = fold(h, d.sparse.offsets.data(), d.sparse.offsets.size() * sizeof(d.sparse.offsets[0]));
  h = fold(h, d.sparse.columns.data(), d.sparse.columns.size() * sizeof(d.sparse.columns[0]));
  h = fold(h, d.sparse.values.data(), d.sparse.values.size() * sizeof(d.sparse.values[0]));
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(h));
  return std::string(part) + " " + d.name + ": " + std::to_string(d.size()) + " x "
         + std::to_string(d.num_features) + (d.is_sparse() ? " sparse" : "") + ", "
         + std::to_string(d.num_classes) + " classes, hash " + hex;
}

} // namespace

std::string fingerprint(const train_test& data) {
  return part_fingerprint("train", *data.train) + "; " + part_fingerprint("test", *data.test);
}

} // namespace chorus

