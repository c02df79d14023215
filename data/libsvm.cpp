// LIBSVM text format ("label idx:val idx:val ...", 1-based indices) read into
// a sparse dataset (CSR rows), and a seeded train/test split of such a file.
//
// Blank lines and '#' comments are skipped; "qid:N" tokens (ranking files)
// are ignored. Memory is the file's text while parsing plus 8 bytes per
// nonzero and 8 per row: never size * num_features, so text sets with
// millions of features (rcv1, news20, url) load in what their nonzeros need.
// The feature count is bounded (max_features, the --max-features flag) so
// that a stray huge index fails here, not as a huge weight vector later.
#include "data/dataset.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <fstream>
#include <iterator>
#include <numeric>
#include <random>
#include <string_view>

namespace chorus {

namespace {

struct entry {
  int32_t column; // 0-based
  float value;
};

[[noreturn]] void fail_at(const std::string& path, int64_t line, const std::string& what) {
  throw data_error(path + ": line " + std::to_string(line) + ": " + what);
}

// from_chars rejects a leading '+', which LIBSVM files use for labels ("+1").
std::string_view strip_plus(std::string_view s) {
  if (s.size() > 1 && s[0] == '+' && s[1] != '-' && s[1] != '+')
    s.remove_prefix(1);
  return s;
}

bool parse_double(std::string_view s, double* out) {
  s = strip_plus(s);
  if (s.empty())
    return false;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && ptr == s.data() + s.size() && std::isfinite(*out);
}

// 0 on success, else the errc from_chars gave (result_out_of_range for an
// integer beyond int64) or invalid_argument.
std::errc parse_int(std::string_view s, int64_t* out) {
  s = strip_plus(s);
  if (s.empty())
    return std::errc::invalid_argument;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  if (ec == std::errc() && ptr != s.data() + s.size())
    return std::errc::invalid_argument;
  return ec;
}

// Appends one parsed row to the CSR arrays: columns sorted, and a repeated
// index keeps its last value (as a dense write would).
void append_row(std::vector<entry>& row, csr_rows& out) {
  std::stable_sort(row.begin(), row.end(),
                   [](const entry& a, const entry& b) { return a.column < b.column; });
  for (size_t k = 0; k < row.size(); ++k) {
    if (k + 1 < row.size() && row[k + 1].column == row[k].column)
      continue;
    out.columns.push_back(row[k].column);
    out.values.push_back(row[k].value);
  }
  out.offsets.push_back(static_cast<int64_t>(out.columns.size()));
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; }

std::string quoted(std::string_view s) { return "'" + std::string(s) + "'"; }

// The rows of a LIBSVM file with their raw labels (not yet mapped to classes).
dataset read_libsvm_rows(const std::string& path, int64_t num_features, int64_t max_features,
                         std::vector<double>& labels) {
  if (max_features < 1 || max_features > max_sparse_features)
    throw std::invalid_argument("read_libsvm: max_features must be in [1, " +
                                std::to_string(max_sparse_features) + "], got " +
                                std::to_string(max_features));
  if (num_features < 0 || num_features > max_features)
    throw std::invalid_argument("read_libsvm: num_features must be in [0, max_features = " +
                                std::to_string(max_features) + "], got " +
                                std::to_string(num_features));
  std::ifstream file(path, std::ios::binary);
  if (!file)
    throw data_error(path + ": cannot open");
  // One read of the whole file: line-by-line stream reads are several times
  // slower on the larger LIBSVM sets.
  std::string text;
  try {
    text.assign(std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>());
  } catch (const std::exception& e) {
    // libstdc++ throws from the stream buffer for, e.g., a directory.
    throw data_error(path + ": read error (" + e.what() + ")");
  }
  if (file.bad())
    throw data_error(path + ": read error");

  dataset d;
  csr_rows& csr = d.sparse;
  csr.offsets.push_back(0);
  std::vector<entry> row;  // the current line's entries, reused
  int64_t max_index = 0;
  int64_t line_no = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos)
      end = text.size();
    std::string_view line(text.data() + pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (auto hash = line.find('#'); hash != std::string_view::npos)
      line = line.substr(0, hash);

    row.clear();
    bool have_label = false;
    size_t i = 0;
    while (i < line.size()) {
      while (i < line.size() && is_space(line[i]))
        ++i;
      if (i >= line.size())
        break;
      size_t j = i;
      while (j < line.size() && !is_space(line[j]))
        ++j;
      std::string_view token = line.substr(i, j - i);
      i = j;

      if (!have_label) {
        double label = 0.0;
        if (!parse_double(token, &label))
          fail_at(path, line_no, "non-numeric label " + quoted(token));
        labels.push_back(label);
        have_label = true;
        continue;
      }
      size_t colon = token.find(':');
      if (colon == std::string_view::npos)
        fail_at(path, line_no, "bad token " + quoted(token) + " (expected index:value)");
      std::string_view key = token.substr(0, colon);
      std::string_view val = token.substr(colon + 1);
      if (key == "qid")
        continue;
      int64_t index = 0;
      const std::errc ec = parse_int(key, &index);
      if (ec == std::errc::result_out_of_range)
        fail_at(path, line_no, "index out of range in " + quoted(token) +
                                   " (the bound is " + std::to_string(max_features) +
                                   " features; raise it with --max-features N)");
      if (ec != std::errc())
        fail_at(path, line_no, "non-numeric index in " + quoted(token));
      if (index <= 0)
        fail_at(path, line_no, "index must be >= 1 (indices are 1-based), got " + quoted(token));
      if (num_features > 0 && index > num_features)
        fail_at(path, line_no, "index " + std::to_string(index) + " exceeds num_features " +
                                   std::to_string(num_features));
      if (index > max_features)
        fail_at(path, line_no, "feature index " + std::to_string(index) +
                                   " exceeds the bound of " + std::to_string(max_features) +
                                   " features; raise it with --max-features N (at most " +
                                   std::to_string(max_sparse_features) + ")");
      double value = 0.0;
      if (!parse_double(val, &value))
        fail_at(path, line_no, "non-numeric value in " + quoted(token));
      max_index = std::max(max_index, index);
      // index <= max_features <= max_sparse_features: fits int32.
      row.push_back({static_cast<int32_t>(index - 1), static_cast<float>(value)});
    }
    if (have_label)
      append_row(row, csr);
  }
  if (labels.empty())
    throw data_error(path + ": empty file (no samples)");
  text = std::string();  // release the text before the rest is built

  d.name = "libsvm:" + path;
  d.num_features = num_features > 0 ? num_features : max_index;
  csr.columns.shrink_to_fit();
  csr.values.shrink_to_fit();
  csr.offsets.shrink_to_fit();
  return d;
}

// d's labels from the raw `labels`, by the rule read_libsvm documents
// applied to `all` (the labels of every file that must agree: a training
// file and its test file map class c the same way).
void assign_labels(dataset& d, const std::vector<double>& labels, const std::vector<double>& all) {
  bool all_integer = std::all_of(all.begin(), all.end(),
                                 [](double v) { return v == std::floor(v); });
  d.y.resize(labels.size());
  if (!all_integer) {
    d.task = task_kind::regression;
    d.num_classes = 0;
    std::transform(labels.begin(), labels.end(), d.y.begin(),
                   [](double v) { return static_cast<float>(v); });
    return;
  }
  d.task = task_kind::classification;
  std::vector<double> distinct(all);
  std::sort(distinct.begin(), distinct.end());
  distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
  auto within = [&](double a, double b) {
    return std::all_of(distinct.begin(), distinct.end(),
                       [&](double v) { return v == a || v == b; });
  };
  if (within(-1.0, 1.0) || within(0.0, 1.0)) {
    // Binary files use either convention; both mean "negative, positive".
    d.num_classes = 2;
    std::transform(labels.begin(), labels.end(), d.y.begin(),
                   [](double v) { return v > 0.0 ? 1.0f : 0.0f; });
  } else {
    d.num_classes = static_cast<int64_t>(distinct.size());
    std::transform(labels.begin(), labels.end(), d.y.begin(), [&](double v) {
      auto it = std::lower_bound(distinct.begin(), distinct.end(), v);
      return static_cast<float>(it - distinct.begin());
    });
  }
}

} // namespace

dataset read_libsvm(const std::string& path, int64_t num_features, int64_t max_features) {
  std::vector<double> labels;
  dataset d = read_libsvm_rows(path, num_features, max_features, labels);
  assign_labels(d, labels, labels);
  return d;
}

train_test load_libsvm_pair(const std::string& train_path, const std::string& test_path,
                            int64_t max_features) {
  std::vector<double> train_labels, test_labels;
  auto train = std::make_shared<dataset>(read_libsvm_rows(train_path, 0, max_features, train_labels));
  auto test = std::make_shared<dataset>(read_libsvm_rows(test_path, 0, max_features, test_labels));
  // One feature space: a feature only the test file uses has weight 0 after
  // training, as LIBSVM's own tools treat it.
  const int64_t features = std::max(train->num_features, test->num_features);
  train->num_features = test->num_features = features;
  std::vector<double> all(train_labels);
  all.insert(all.end(), test_labels.begin(), test_labels.end());
  assign_labels(*train, train_labels, all);
  assign_labels(*test, test_labels, all);
  train_test out;
  out.train = std::move(train);
  out.test = std::move(test);
  return out;
}

train_test load_libsvm(const std::string& path, double test_fraction, uint64_t seed,
                       int64_t max_features) {
  if (!(test_fraction >= 0.0 && test_fraction < 1.0))
    throw std::invalid_argument("load_libsvm: test_fraction must be in [0, 1), got " +
                                std::to_string(test_fraction));
  dataset all = read_libsvm(path, 0, max_features);
  const int64_t n = all.size();
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), int64_t{0});
  std::mt19937_64 rng(seed);
  std::shuffle(order.begin(), order.end(), rng);
  // Keep at least one training sample whatever the fraction.
  const int64_t n_test = std::min<int64_t>(std::llround(test_fraction * static_cast<double>(n)), n - 1);
  const int64_t n_train = n - n_test;

  auto take = [&](int64_t from, int64_t count) {
    auto d = std::make_shared<dataset>();
    d->name = all.name;
    d->task = all.task;
    d->num_features = all.num_features;
    d->num_classes = all.num_classes;
    d->y.resize(static_cast<size_t>(count));
    csr_rows& csr = d->sparse;
    int64_t nonzeros = 0;
    for (int64_t k = 0; k < count; ++k)
      nonzeros += all.row(order[from + k]).size;
    csr.offsets.reserve(static_cast<size_t>(count) + 1);
    csr.columns.reserve(static_cast<size_t>(nonzeros));
    csr.values.reserve(static_cast<size_t>(nonzeros));
    csr.offsets.push_back(0);
    for (int64_t k = 0; k < count; ++k) {
      const int64_t src = order[from + k];
      const sparse_row r = all.row(src);
      csr.columns.insert(csr.columns.end(), r.columns, r.columns + r.size);
      csr.values.insert(csr.values.end(), r.values, r.values + r.size);
      csr.offsets.push_back(static_cast<int64_t>(csr.columns.size()));
      d->y[k] = all.y[src];
    }
    return d;
  };
  train_test out;
  out.train = take(0, n_train);
  out.test = take(n_train, n_test);
  return out;
}

} // namespace chorus
