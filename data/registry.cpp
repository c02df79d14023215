// The dataset registry: one explicit table from a spec name to the function
// that builds it, with the defaults each entry uses.
//
// A name ending in ":ARG" (libsvm:PATH) matches any spec with that prefix and
// passes the rest as the argument. There is no self-registration: a new
// dataset is one more row here.
#include "data/dataset.hpp"

#include <functional>

namespace chorus {

namespace {

struct dataset_entry {
  std::string name;        // as shown to users; "prefix:ARG" takes an argument
  std::string description;
  std::function<train_test(const std::string& arg, const dataset_options&)> build;
};

const std::vector<dataset_entry>& dataset_table() {
  static const std::vector<dataset_entry> table = {
      {"fashion-mnist",
       "Fashion-MNIST from data_dir: 60000 train / 10000 test, 784 features, 10 classes",
       [](const std::string&, const dataset_options& o) { return load_fashion_mnist(o.data_dir); }},
      {"libsvm:PATH", "a LIBSVM-format file, 20% held out as test after a seeded shuffle",
       [](const std::string& path, const dataset_options& o) {
         if (path.empty())
           throw data_error("libsvm:PATH needs a file path, e.g. libsvm:/data/a9a");
         return load_libsvm(path, 0.2, o.seed, o.max_features);
       }},
      {"synthetic-lsq",
       "least squares, 8192 train / 2048 test, d = 64, noise 0.1, ground truth known",
       [](const std::string&, const dataset_options& o) {
         return make_least_squares(8192, 2048, 64, 0.1, o.seed);
       }},
      {"synthetic-logistic",
       "sparse logistic regression, 8192 train / 2048 test, d = 100, 10 nonzero weights",
       [](const std::string&, const dataset_options& o) {
         return make_sparse_logistic(8192, 2048, 100, 10, o.seed);
       }},
  };
  return table;
}

} // namespace

train_test load_dataset(const std::string& spec, const dataset_options& opts) {
  for (const auto& e : dataset_table()) {
    const auto colon = e.name.find(':');
    if (colon == std::string::npos) {
      if (spec == e.name)
        return e.build(std::string(), opts);
    } else if (spec.compare(0, colon + 1, e.name, 0, colon + 1) == 0) {
      return e.build(spec.substr(colon + 1), opts);
    }
  }
  std::string valid;
  for (const auto& e : dataset_table())
    valid += (valid.empty() ? "" : ", ") + e.name;
  throw data_error("unknown dataset '" + spec + "'; valid: " + valid);
}

std::vector<std::pair<std::string, std::string>> dataset_names() {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& e : dataset_table())
    out.emplace_back(e.name, e.description);
  return out;
}

} // namespace chorus
