// The dataset registry: one explicit table from a spec name to the function
// that builds it, with the defaults each entry uses.
//
// A name ending in ":ARG" (libsvm:PATH) matches any spec with that prefix and
// passes the rest as the argument. There is no self-registration: a new
// dataset is one more row here.
#include "data/dataset.hpp"

#include <algorithm>
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
      {"libsvm:PATH[,TEST]",
       "a LIBSVM-format file and its test file (a9a,a9a.t); without TEST, --test-fraction "
       "(0.2) held out after a seeded shuffle",
       [](const std::string& arg, const dataset_options& o) {
         if (arg.empty() || arg.front() == ',')
           throw data_error("libsvm:PATH needs a file path, e.g. libsvm:/data/a9a or "
                            "libsvm:/data/a9a,/data/a9a.t");
         const auto comma = arg.find(',');
         if (comma != std::string::npos) {
           if (comma + 1 == arg.size() || arg.find(',', comma + 1) != std::string::npos)
             throw data_error("libsvm:TRAIN,TEST takes two paths, got '" + arg + "'");
           return load_libsvm_pair(arg.substr(0, comma), arg.substr(comma + 1), o.max_features);
         }
         return load_libsvm(arg, o.test_fraction, o.seed, o.max_features);
       }},
      {"npy:X,Y[,XTEST,YTEST]",
       "NumPy .npy arrays: X (n, d) float32/float64/int32/int64/uint8, y (n,) labels (whole "
       "numbers >= 0: classes) or targets; without the test pair, --test-fraction held out",
       [](const std::string& arg, const dataset_options& o) {
         std::vector<std::string> paths;
         size_t at = 0;
         while (true) {
           const auto comma = arg.find(',', at);
           paths.push_back(arg.substr(at, comma == std::string::npos ? std::string::npos : comma - at));
           if (comma == std::string::npos)
             break;
           at = comma + 1;
         }
         const bool empty = std::any_of(paths.begin(), paths.end(),
                                        [](const std::string& p) { return p.empty(); });
         if (empty || (paths.size() != 2 && paths.size() != 4))
           throw data_error("npy:X,Y[,XTEST,YTEST] takes two or four .npy paths, got '" + arg + "'");
         return load_npy_dataset(paths[0], paths[1], paths.size() == 4 ? paths[2] : "",
                                 paths.size() == 4 ? paths[3] : "", o.test_fraction, o.seed);
       }},
      {"idx:DIR",
       "any IDX directory laid out like MNIST (MNIST, KMNIST, EMNIST): "
       "{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]; classes from the labels",
       [](const std::string& dir, const dataset_options&) { return load_idx_dir(dir); }},
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
