// Datasets held in memory, and the loaders and generators that make them.
//
// Dense features are stored sample after sample (sample i occupies
// x[i * num_features, (i + 1) * num_features)), which is an Eigen
// column-major matrix of shape num_features x size: one column per sample.
// A sparse dataset (LIBSVM files) leaves x empty and holds its samples as
// CSR rows in `sparse` instead, so its memory is proportional to its
// nonzeros, not to size * num_features. Models that take sparse input
// check is_sparse(); every other consumer (partitioners, shards) needs only
// y and size(). Labels are class indices stored as floats for
// classification, real targets for regression. A dataset is immutable once
// built and shared by every worker through a dataset_ptr; a worker's shard
// is a list of indices.
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace chorus {

/// Bad, missing or corrupt data: the message names the file and the problem.
struct data_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// What the labels mean.
enum class task_kind { classification, regression };

/// The nonzeros of one sparse sample: `size` (column, value) pairs,
/// columns strictly increasing and in [0, num_features).
struct sparse_row {
  const int32_t* columns = nullptr;
  const float* values = nullptr;
  int64_t size = 0;
};

/// Samples as CSR rows: row i is columns/values[offsets[i], offsets[i+1]).
/// Columns are 32-bit, so a sparse dataset has at most
/// max_sparse_features features.
struct csr_rows {
  std::vector<int64_t> offsets;  ///< size() + 1 entries, offsets[0] == 0
  std::vector<int32_t> columns;  ///< strictly increasing within a row
  std::vector<float> values;
};

/// The largest feature count a sparse dataset can index (int32 columns).
inline constexpr int64_t max_sparse_features = 2147483647;

/// An in-memory labelled dataset, dense (x) or sparse (sparse).
struct dataset {
  std::string name;
  task_kind task = task_kind::classification;
  int64_t num_features = 0;
  int64_t num_classes = 0;  ///< 0 for regression
  std::vector<float> x;     ///< size() * num_features, sample-major; empty when sparse
  std::vector<float> y;     ///< one label or target per sample
  csr_rows sparse;          ///< the samples when is_sparse(); empty otherwise

  int64_t size() const { return static_cast<int64_t>(y.size()); }
  /// True when the samples are CSR rows in `sparse` (x is then empty).
  bool is_sparse() const { return !sparse.offsets.empty(); }
  /// Dense sample i (only when !is_sparse()).
  const float* sample(int64_t i) const { return x.data() + i * num_features; }
  /// Sparse sample i (only when is_sparse()).
  sparse_row row(int64_t i) const {
    const auto at = static_cast<size_t>(sparse.offsets[static_cast<size_t>(i)]);
    return {sparse.columns.data() + at, sparse.values.data() + at,
            sparse.offsets[static_cast<size_t>(i) + 1] - sparse.offsets[static_cast<size_t>(i)]};
  }
  /// Whether the feature storage matches size() and num_features: x holds
  /// size() * num_features floats, or the CSR arrays are consistent (O(1):
  /// the per-row column bounds are the loader's promise).
  bool well_formed() const;
  /// Writes sample i as num_features dense floats to `out`, whichever the
  /// storage (for models that need dense input, one mini-batch at a time).
  /// Throws std::invalid_argument for a sparse column outside num_features.
  void copy_sample(int64_t i, float* out) const;
};

using dataset_ptr = std::shared_ptr<const dataset>;

/// A train/test pair, plus what generated it (for synthetic problems).
struct train_test {
  dataset_ptr train;
  dataset_ptr test;
  /// Ground-truth weights of a synthetic problem; empty for real data.
  std::vector<float> ground_truth;
};

/// What two processes compare before they train on "the same" data: each
/// part's name, size, shape and storage, and a hash of its labels and
/// features. Equal fingerprints mean equal data for every practical purpose.
std::string fingerprint(const train_test& data);

// -- Fashion-MNIST ------------------------------------------------------------

/// Default location of Debian's dataset-fashion-mnist package.
inline const char* default_fashion_mnist_dir = "/usr/share/datasets/fashion-mnist";

/// Reads an IDX image file (.gz or plain; magic 0x00000803) into floats
/// scaled to [0, 1]. Throws data_error naming the file when it is missing,
/// truncated, corrupt, or has the wrong magic number.
std::vector<float> read_idx_images(const std::string& path, int64_t* count,
                                   int64_t* rows, int64_t* cols);

/// Reads an IDX label file (magic 0x00000801). Same errors.
std::vector<float> read_idx_labels(const std::string& path, int64_t* count);

/// Loads train-{images,labels}-idx*-ubyte.gz and t10k-* from `dir`: 60000
/// training and 10000 test samples, 784 features, 10 classes. Features are
/// standardized with the training set's mean and standard deviation.
train_test load_fashion_mnist(const std::string& dir);

/// Any IDX directory laid out like MNIST (MNIST, KMNIST, EMNIST, ...):
/// train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte,
/// t10k-labels-idx1-ubyte, each gzipped (.gz) or plain. Classes: the
/// largest label seen + 1 (labels are ubyte class indices). Features are
/// standardized as load_fashion_mnist's; the name is "idx:DIR".
train_test load_idx_dir(const std::string& dir);

// -- LIBSVM ---------------------------------------------------------------

/// The default bound on a LIBSVM file's feature count (--max-features):
/// 2^24, above rcv1 (47k), news20 (1.4M) and url (3.2M) features.
inline constexpr int64_t default_max_features = int64_t{1} << 24;

/// Reads a LIBSVM-format file ("label idx:val idx:val ...", 1-based indices)
/// into a sparse dataset (CSR rows; memory proportional to the nonzeros).
/// Labels: {-1,+1} or {0,1} become classes {0,1}; other integer labels are
/// mapped to 0..C-1 in sorted order; non-integer labels make a regression
/// dataset. `num_features` 0 means "the largest index seen". An index above
/// `max_features` (at most max_sparse_features) is refused, naming the
/// --max-features flag that raises the bound. Throws data_error with file
/// and line on malformed input.
dataset read_libsvm(const std::string& path, int64_t num_features = 0,
                    int64_t max_features = default_max_features);

/// Loads `path` and holds out the last `test_fraction` of it (after a seeded
/// shuffle) as the test set. Both halves are sparse.
train_test load_libsvm(const std::string& path, double test_fraction, uint64_t seed,
                       int64_t max_features = default_max_features);

/// A training file and its separate test file (a9a / a9a.t): both read with
/// one feature count (the larger index of the two) and one label mapping
/// (the union of both files' labels), so class c means the same in both.
train_test load_libsvm_pair(const std::string& train_path, const std::string& test_path,
                            int64_t max_features = default_max_features);

// -- NumPy arrays ------------------------------------------------------------

/// X.npy (n x d, or n x ... flattened per row) and y.npy (n, or n x 1), and
/// optionally Xtest.npy and ytest.npy; without a test pair the last
/// `test_fraction` of the samples (after a seeded shuffle) is the test set.
/// X: float32/float64/int32/int64/uint8; y: integer labels (classes
/// 0..max, a classification task) or floats (integral floats are classes
/// too; others make a regression task). Throws data_error naming the file.
train_test load_npy_dataset(const std::string& x_path, const std::string& y_path,
                            const std::string& x_test_path, const std::string& y_test_path,
                            double test_fraction, uint64_t seed);

// -- synthetic problems -----------------------------------------------------

/// Least squares: x ~ N(0, I_d), y = <w*, x> + noise * N(0,1), w* ~ N(0, I_d).
train_test make_least_squares(int64_t n_train, int64_t n_test, int64_t d,
                              double noise, uint64_t seed);

/// Sparse binary logistic regression: x ~ N(0, I_d), w* has `nonzeros`
/// entries (+-1 to +-2, random positions), P(y = 1 | x) = sigmoid(<w*, x>),
/// labels in {0, 1}, two classes.
train_test make_sparse_logistic(int64_t n_train, int64_t n_test, int64_t d,
                                int64_t nonzeros, uint64_t seed);

// -- the dataset registry -------------------------------------------------

/// Options a dataset spec may need.
struct dataset_options {
  std::string data_dir = default_fashion_mnist_dir;
  uint64_t seed = 1;
  /// Largest feature index a LIBSVM file may use (--max-features).
  int64_t max_features = default_max_features;
  /// Share of the samples held out as the test set when a dataset has no
  /// test file of its own (libsvm:PATH, npy:X,y); in (0, 1).
  double test_fraction = 0.2;
};

/// Builds a dataset from its spec: "fashion-mnist", "libsvm:PATH",
/// "synthetic-lsq", "synthetic-logistic". Throws data_error listing the
/// valid names for an unknown spec.
train_test load_dataset(const std::string& spec, const dataset_options& opts);

/// The names load_dataset accepts, with a one-line description each.
std::vector<std::pair<std::string, std::string>> dataset_names();

// -- partitioners -----------------------------------------------------------

/// Index lists, one per worker.
using partition = std::vector<std::vector<int64_t>>;

/// IID: a seeded shuffle dealt into n near-equal shards.
partition partition_iid(const dataset& d, int n, uint64_t seed);

/// Label skew: for each class, proportions over workers ~ Dirichlet(alpha).
/// Every worker gets at least one sample.
partition partition_dirichlet(const dataset& d, int n, double alpha, uint64_t seed);

/// k-label shards: samples sorted by label, cut into n*k shards, each worker
/// gets k of them at random (so it sees about k labels).
partition partition_shards(const dataset& d, int n, int k, uint64_t seed);

/// Builds a partition from its spec: "iid", "dirichlet:ALPHA", "shards:K".
/// Throws std::invalid_argument listing the valid forms otherwise, and when
/// the dataset is too small to give every worker a sample.
partition make_partition(const dataset& d, int n, const std::string& spec, uint64_t seed);

// -- redundancy (RI-SGD) ------------------------------------------------------

/// What each worker holds under redundancy: its own shard plus copies.
struct redundant_partition {
  partition own;     ///< the disjoint base shards (every sample in exactly one)
  partition held;    ///< what each worker trains on: own shard + copies of others' samples
  double mu = 0;     ///< the redundancy asked for, in [0, 1]
  int copies = 0;    ///< r = redundant_copies(n, mu): other workers holding each shard
};

/// r = round(mu * (n - 1)), halves rounded up: how many other workers hold a
/// full copy of each shard. Throws std::invalid_argument unless n >= 1 and
/// mu is in [0, 1].
int redundant_copies(int n, double mu);

/// RI-SGD's data assignment by cyclic replication (see data/redundant.cpp):
/// shard j of `base` is copied in full to workers j+1, ..., j+r (mod n), so
/// worker i holds own[i] plus own[i-1], ..., own[i-r], a fraction r/(n-1) of
/// the other workers' data (the nearest to mu), and every sample lives on r+1
/// workers. `seed` shuffles the order of each held list (own samples and copies
/// interleaved); membership does not depend on it. Throws std::invalid_argument
/// when mu is not in [0, 1], base is empty, or base's shards overlap.
redundant_partition make_redundant(const partition& base, double mu, uint64_t seed);

/// Fraction of the training set (samples 0..dataset_size-1) still held by the
/// survivors when the workers in `crashed` are gone. Throws
/// std::invalid_argument for an unknown or repeated worker, dataset_size <= 0,
/// or a held index outside the dataset.
double coverage(const redundant_partition& p, const std::vector<int>& crashed, int64_t dataset_size);

/// The worst case of coverage() over all crash sets of `crashed_count`
/// workers, for equal-sized shards: 1 while c <= r, (n - (c - r)) / n for
/// r < c < n, 0 at c = n. Any c consecutive workers attain it.
double expected_coverage(int n, double mu, int crashed_count);

/// The partitioner forms make_partition accepts, with descriptions.
std::vector<std::pair<std::string, std::string>> partition_names();

} // namespace chorus
