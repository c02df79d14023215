// The two storage-independent helpers of `dataset` (data/dataset.hpp): the
// shape check models run before reading features, and one sample written
// out densely.
#include "data/dataset.hpp"

#include <algorithm>

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

} // namespace chorus
