// npy:X.npy,y.npy[,Xtest.npy,ytest.npy]: NumPy arrays as a dataset.
// X is (n, d) (or (n, ...), each sample flattened in C order), y is (n,) or
// (n, 1). Integer labels, or float labels that are all whole numbers >= 0,
// are class indices (classes: the largest + 1); other float labels make a
// regression task. Features are used as they are (no standardization).
// Without a test pair the last test_fraction of the samples, after a seeded
// shuffle, is the test set.
#include "data/dataset.hpp"
#include "data/npy.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

namespace chorus {

namespace {

struct npy_part {
  std::vector<float> x, y;
  int64_t n = 0, d = 0;
  bool integer_labels = false;
};

npy_part read_part(const std::string& x_path, const std::string& y_path) {
  npy_array x, y;
  try {
    x = read_npy_array(x_path);
    y = read_npy_array(y_path);
  } catch (const std::invalid_argument& e) {
    throw data_error(e.what());
  }
  if (x.shape.size() < 2)
    throw data_error(x_path + ": X must have a sample axis and features, shape (n, d); got "
                     + std::to_string(x.shape.size()) + " dimension(s)");
  if (y.shape.size() != 1 && !(y.shape.size() == 2 && y.shape[1] == 1))
    throw data_error(y_path + ": y must have shape (n,) or (n, 1)");
  npy_part p;
  p.n = x.shape[0];
  p.d = x.shape[0] == 0 ? 0 : static_cast<int64_t>(x.values.size()) / x.shape[0];
  if (p.n == 0 || p.d == 0)
    throw data_error(x_path + ": no samples or no features");
  if (y.shape[0] != p.n)
    throw data_error(x_path + " holds " + std::to_string(p.n) + " samples but " + y_path
                     + " holds " + std::to_string(y.shape[0]) + " labels");
  p.x = std::move(x.values);
  p.y = std::move(y.values);
  p.integer_labels = y.integer;
  return p;
}

std::shared_ptr<dataset> make_part(npy_part& p, const std::string& name) {
  auto d = std::make_shared<dataset>();
  d->name = name;
  d->num_features = p.d;
  d->x = std::move(p.x);
  d->y = std::move(p.y);
  return d;
}

// One task for both parts, decided on all their labels.
void set_task(dataset& train, dataset* test, bool integer_labels, const std::string& y_path) {
  std::vector<const dataset*> parts{&train};
  if (test)
    parts.push_back(test);
  bool classes = true;
  float largest = 0;
  for (auto* part : parts)
    for (float v : part->y) {
      classes = classes && v >= 0 && v == std::floor(v);
      largest = std::max(largest, v);
    }
  if (integer_labels && !classes)
    throw data_error(y_path + ": integer labels must be class indices >= 0");
  if (classes && largest > 1e6f)
    throw data_error(y_path + ": a class index above 1e6 (" + std::to_string(largest)
                     + "): save regression targets as floats with a fraction, or renumber");
  const auto task = classes ? task_kind::classification : task_kind::regression;
  const int64_t num_classes = classes ? std::max<int64_t>(2, static_cast<int64_t>(largest) + 1) : 0;
  for (auto* part : {&train, test})
    if (part) {
      part->task = task;
      part->num_classes = num_classes;
    }
}

} // namespace

train_test load_npy_dataset(const std::string& x_path, const std::string& y_path,
                            const std::string& x_test_path, const std::string& y_test_path,
                            double test_fraction, uint64_t seed) {
  const std::string name = "npy:" + x_path;
  auto part = read_part(x_path, y_path);
  train_test out;
  if (!x_test_path.empty()) {
    auto test_part = read_part(x_test_path, y_test_path);
    if (test_part.d != part.d)
      throw data_error(x_test_path + " has " + std::to_string(test_part.d) + " features per sample, "
                       + x_path + " has " + std::to_string(part.d));
    const bool integer = part.integer_labels && test_part.integer_labels;
    auto train = make_part(part, name);
    auto test = make_part(test_part, name + " (test)");
    set_task(*train, test.get(), integer, y_path);
    out.train = std::move(train);
    out.test = std::move(test);
    return out;
  }
  if (!(test_fraction > 0 && test_fraction < 1))
    throw data_error("npy: the test fraction must be in (0, 1)");
  if (part.n < 2)
    throw data_error(x_path + ": one sample cannot be split into training and test sets");
  auto all = make_part(part, name);
  set_task(*all, nullptr, part.integer_labels, y_path);
  std::vector<int64_t> order(static_cast<size_t>(all->size()));
  std::iota(order.begin(), order.end(), int64_t{0});
  std::mt19937_64 rng(seed);
  std::shuffle(order.begin(), order.end(), rng);
  const int64_t n = all->size();
  const int64_t n_test = std::clamp<int64_t>(std::llround(test_fraction * static_cast<double>(n)), 1, n - 1);
  auto take = [&](int64_t from, int64_t count, const std::string& part_name) {
    auto d = std::make_shared<dataset>();
    d->name = part_name;
    d->task = all->task;
    d->num_features = all->num_features;
    d->num_classes = all->num_classes;
    d->x.resize(static_cast<size_t>(count * all->num_features));
    d->y.resize(static_cast<size_t>(count));
    for (int64_t k = 0; k < count; ++k) {
      const int64_t src = order[static_cast<size_t>(from + k)];
      std::copy(all->sample(src), all->sample(src) + all->num_features,
                d->x.begin() + k * all->num_features);
      d->y[static_cast<size_t>(k)] = all->y[static_cast<size_t>(src)];
    }
    return d;
  };
  out.train = take(0, n - n_test, name);
  out.test = take(n - n_test, n_test, name + " (test)");
  return out;
}

} // namespace chorus
