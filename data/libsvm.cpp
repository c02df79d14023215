// LIBSVM text format ("label idx:val idx:val ...", 1-based indices) read into
// a dense dataset, and a seeded train/test split of such a file.
//
// Blank lines and '#' comments are skipped; "qid:N" tokens (ranking files)
// are ignored. This is not a sparse store: every sample is densified, so it
// suits the small and medium LIBSVM benchmark sets, not 10^7-feature ones.
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
  int64_t index; // 0-based
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

bool parse_int(std::string_view s, int64_t* out) {
  s = strip_plus(s);
  if (s.empty())
    return false;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && ptr == s.data() + s.size();
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; }

std::string quoted(std::string_view s) { return "'" + std::string(s) + "'"; }

} // namespace

dataset read_libsvm(const std::string& path, int64_t num_features) {
  if (num_features < 0)
    throw std::invalid_argument("read_libsvm: num_features must be >= 0, got " +
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

  std::vector<double> labels;
  std::vector<std::vector<entry>> rows;
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

    std::vector<entry> row;
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
      if (!parse_int(key, &index))
        fail_at(path, line_no, "non-numeric index in " + quoted(token));
      if (index <= 0)
        fail_at(path, line_no, "index must be >= 1 (indices are 1-based), got " + quoted(token));
      if (num_features > 0 && index > num_features)
        fail_at(path, line_no, "index " + std::to_string(index) + " exceeds num_features " +
                                   std::to_string(num_features));
      double value = 0.0;
      if (!parse_double(val, &value))
        fail_at(path, line_no, "non-numeric value in " + quoted(token));
      max_index = std::max(max_index, index);
      row.push_back({index - 1, static_cast<float>(value)});
    }
    if (have_label)
      rows.push_back(std::move(row));
  }
  if (labels.empty())
    throw data_error(path + ": empty file (no samples)");

  dataset d;
  d.name = "libsvm:" + path;
  d.num_features = num_features > 0 ? num_features : max_index;
  const int64_t n = static_cast<int64_t>(labels.size());
  d.x.assign(static_cast<size_t>(n * d.num_features), 0.0f);
  for (int64_t r = 0; r < n; ++r) {
    float* dst = d.x.data() + r * d.num_features;
    for (const entry& e : rows[r])
      dst[e.index] = e.value; // a repeated index keeps its last value
  }

  bool all_integer = std::all_of(labels.begin(), labels.end(),
                                 [](double v) { return v == std::floor(v); });
  d.y.resize(labels.size());
  if (!all_integer) {
    d.task = task_kind::regression;
    d.num_classes = 0;
    std::transform(labels.begin(), labels.end(), d.y.begin(),
                   [](double v) { return static_cast<float>(v); });
    return d;
  }
  d.task = task_kind::classification;
  std::vector<double> distinct(labels);
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
  return d;
}

train_test load_libsvm(const std::string& path, double test_fraction, uint64_t seed) {
  if (!(test_fraction >= 0.0 && test_fraction < 1.0))
    throw std::invalid_argument("load_libsvm: test_fraction must be in [0, 1), got " +
                                std::to_string(test_fraction));
  dataset all = read_libsvm(path);
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
    d->x.resize(static_cast<size_t>(count * all.num_features));
    d->y.resize(static_cast<size_t>(count));
    for (int64_t k = 0; k < count; ++k) {
      int64_t src = order[from + k];
      std::copy_n(all.sample(src), all.num_features, d->x.data() + k * all.num_features);
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
