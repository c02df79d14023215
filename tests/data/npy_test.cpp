// Datasets a researcher brings: npy:X,y[,Xt,yt] (the .npy reader: versions,
// dtypes, C order, and every corrupt form refused), libsvm:TRAIN,TEST with
// one label mapping and feature count, --test-fraction, and idx:DIR. The
// files are written by the tests themselves.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <unistd.h>
#include <zlib.h>

#include "data/dataset.hpp"
#include "data/npy.hpp"

namespace chorus {
namespace {

std::string temp_path(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() / ("chorus_npy_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  return (dir / name).string();
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// A .npy file as numpy.save writes it: magic, version, header length (2
// bytes in v1, 4 in v2), the dict padded with spaces to a multiple of 64
// and a newline, then the raw bytes.
std::string npy_bytes(const std::string& descr, const std::string& shape, const std::string& data,
                      int version = 1, const std::string& order = "False") {
  std::string dict = "{'descr': '" + descr + "', 'fortran_order': " + order + ", 'shape': " + shape
                     + ", }";
  const size_t prefix = version == 1 ? 10 : 12;
  size_t total = prefix + dict.size() + 1;
  dict.append((64 - total % 64) % 64, ' ');
  dict += '\n';
  std::string out("\x93NUMPY", 6);
  out += static_cast<char>(version);
  out += '\0';
  const size_t len = dict.size();
  out += static_cast<char>(len & 0xff);
  out += static_cast<char>((len >> 8) & 0xff);
  if (version != 1) {
    out += '\0';
    out += '\0';
  }
  return out + dict + data;
}

template <class T>
std::string raw(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

TEST(npy, every_supported_dtype_and_version_reads_back_its_values) {
  auto f32 = parse_npy(npy_bytes("<f4", "(2, 3)", raw<float>({1, 2, 3, 4, 5, 6.5f})), "a");
  EXPECT_EQ(f32.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(f32.values, (std::vector<float>{1, 2, 3, 4, 5, 6.5f}));
  EXPECT_FALSE(f32.integer);
  auto f64 = parse_npy(npy_bytes("<f8", "(3,)", raw<double>({0.25, -1, 1e10}), 2), "b");
  EXPECT_EQ(f64.values, (std::vector<float>{0.25f, -1, 1e10f}));
  auto i32 = parse_npy(npy_bytes("<i4", "(2,)", raw<int32_t>({-7, 9})), "c");
  EXPECT_EQ(i32.values, (std::vector<float>{-7, 9}));
  EXPECT_TRUE(i32.integer);
  auto i64 = parse_npy(npy_bytes("<i8", "(2, 1)", raw<int64_t>({3, 4}), 3), "d");
  EXPECT_EQ(i64.values, (std::vector<float>{3, 4}));
  auto u8 = parse_npy(npy_bytes("|u1", "(4,)", raw<uint8_t>({0, 1, 200, 255})), "e");
  EXPECT_EQ(u8.values, (std::vector<float>{0, 1, 200, 255}));
  EXPECT_TRUE(u8.integer);
  // What write_npy writes reads back.
  std::vector<float> w{1.5f, -2, 3};
  auto path = temp_path("w.npy");
  write_npy(path, cview{w.data(), w.size()});
  EXPECT_EQ(read_npy_array(path).values, w);
}

TEST(npy, corrupt_and_unsupported_files_are_refused_with_a_reason) {
  const auto ok_data = raw<float>({1, 2, 3, 4});
  struct bad {
    std::string bytes, says;
  };
  std::string truncated_header = npy_bytes("<f4", "(4,)", ok_data).substr(0, 30);
  std::string bad_magic = npy_bytes("<f4", "(4,)", ok_data);
  bad_magic[1] = 'X';
  std::string bad_version = npy_bytes("<f4", "(4,)", ok_data);
  bad_version[6] = 9;
  std::vector<bad> cases = {
    {npy_bytes("<f4", "(2, 2)", ok_data, 1, "True"), "fortran_order"},
    {npy_bytes(">f4", "(4,)", ok_data), "big-endian"},
    {npy_bytes("<f2", "(4,)", raw<uint16_t>({1, 2, 3, 4})), "not supported"},
    {npy_bytes("<c8", "(2,)", ok_data), "not supported"},
    {npy_bytes("<f4", "(5,)", ok_data), "truncated data"},
    {npy_bytes("<f4", "(3,)", ok_data), "bytes after the data"},
    {npy_bytes("<f4", "(4, -1)", ok_data), "non-negative"},
    {npy_bytes("<f4", "(99999999999, 99999999999)", ok_data), "implausible"},
    {npy_bytes("<f4", "(2, 2)", raw<float>({1, NAN, 3, 4})), "not finite"},
    {npy_bytes("<f8", "(1,)", raw<double>({1e300})), "not finite"},
    {truncated_header, "truncated header"},
    {bad_magic, "magic"},
    {bad_version, "version 9"},
    {std::string("\x93NUMPY", 6), "not a .npy"},
    {npy_bytes("<f4", "[4]", ok_data), "expected '('"},
    {npy_bytes("<f4\\'", "(4,)", ok_data), "bad .npy header"},
  };
  for (auto& c : cases) {
    try {
      parse_npy(c.bytes, "f.npy");
      ADD_FAILURE() << "accepted; expected: " << c.says;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(c.says), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("f.npy"), std::string::npos) << e.what();
    }
  }
  // A header dict without the shape key.
  std::string no_shape("\x93NUMPY\x01\x00", 8);
  std::string dict = "{'descr': '<f4', 'fortran_order': False, }\n";
  no_shape += static_cast<char>(dict.size());
  no_shape += '\0';
  EXPECT_THROW(parse_npy(no_shape + dict, "g"), std::invalid_argument);
  EXPECT_THROW(read_npy_array(temp_path("missing.npy")), std::invalid_argument);
}

TEST(npy, a_dataset_with_its_test_pair_and_one_split_by_the_test_fraction) {
  // 10 samples, 3 features, labels 0..2 as int64.
  std::vector<float> x(30);
  for (size_t i = 0; i < x.size(); ++i)
    x[i] = static_cast<float>(i);
  std::vector<int64_t> y{0, 1, 2, 0, 1, 2, 0, 1, 2, 0};
  write_file(temp_path("X.npy"), npy_bytes("<f4", "(10, 3)", raw(x)));
  write_file(temp_path("y.npy"), npy_bytes("<i8", "(10,)", raw(y)));
  write_file(temp_path("Xt.npy"), npy_bytes("<f8", "(2, 3)", raw<double>({1, 2, 3, 4, 5, 6})));
  write_file(temp_path("yt.npy"), npy_bytes("<f4", "(2, 1)", raw<float>({2, 1})));
  auto pair = load_npy_dataset(temp_path("X.npy"), temp_path("y.npy"), temp_path("Xt.npy"),
                               temp_path("yt.npy"), 0.2, 1);
  EXPECT_EQ(pair.train->size(), 10);
  EXPECT_EQ(pair.test->size(), 2);
  EXPECT_EQ(pair.train->num_features, 3);
  EXPECT_EQ(pair.train->num_classes, 3);
  EXPECT_EQ(pair.test->num_classes, 3);
  EXPECT_EQ(pair.train->task, task_kind::classification);
  EXPECT_EQ(pair.train->sample(4)[2], 14.0f);  // C order: row 4, column 2
  EXPECT_EQ(pair.test->y, (std::vector<float>{2, 1}));
  // No test pair: --test-fraction 0.3 holds out 3 of 10, every sample once.
  auto split = load_npy_dataset(temp_path("X.npy"), temp_path("y.npy"), "", "", 0.3, 7);
  EXPECT_EQ(split.train->size(), 7);
  EXPECT_EQ(split.test->size(), 3);
  std::vector<float> firsts;
  for (auto* part : {split.train.get(), split.test.get()})
    for (int64_t i = 0; i < part->size(); ++i) {
      firsts.push_back(part->sample(i)[0]);
      EXPECT_EQ(part->y[static_cast<size_t>(i)], y[static_cast<size_t>(part->sample(i)[0] / 3)]);
    }
  std::sort(firsts.begin(), firsts.end());
  for (size_t i = 0; i < firsts.size(); ++i)
    EXPECT_EQ(firsts[i], 3.0f * static_cast<float>(i));
  // Non-integral float labels: a regression task.
  write_file(temp_path("yr.npy"), npy_bytes("<f8", "(10,)", raw<double>({0.5, 1, 2, 3, 4, 5, 6, 7, 8, 9})));
  auto reg = load_npy_dataset(temp_path("X.npy"), temp_path("yr.npy"), "", "", 0.2, 1);
  EXPECT_EQ(reg.train->task, task_kind::regression);
  // Through the registry, with its spec.
  dataset_options o;
  o.test_fraction = 0.5;
  auto via = load_dataset("npy:" + temp_path("X.npy") + "," + temp_path("y.npy"), o);
  EXPECT_EQ(via.test->size(), 5);
}

TEST(npy, mismatched_and_misshapen_arrays_are_refused) {
  std::vector<float> x(12, 1.0f);
  write_file(temp_path("X4.npy"), npy_bytes("<f4", "(4, 3)", raw(x)));
  write_file(temp_path("y3.npy"), npy_bytes("<i4", "(3,)", raw<int32_t>({0, 1, 0})));
  write_file(temp_path("y4.npy"), npy_bytes("<i4", "(4,)", raw<int32_t>({0, 1, 0, 1})));
  write_file(temp_path("yneg.npy"), npy_bytes("<i4", "(4,)", raw<int32_t>({0, -1, 0, 1})));
  write_file(temp_path("y2d.npy"), npy_bytes("<i4", "(2, 2)", raw<int32_t>({0, 1, 0, 1})));
  write_file(temp_path("X1d.npy"), npy_bytes("<f4", "(12,)", raw(x)));
  write_file(temp_path("Xt2.npy"), npy_bytes("<f4", "(3, 2)", raw<float>({1, 2, 3, 4, 5, 6})));
  write_file(temp_path("bad.npy"), "not numpy at all");
  auto refuses = [](const std::string& spec, const std::string& says) {
    try {
      load_dataset(spec, dataset_options{});
      ADD_FAILURE() << spec << " was accepted";
    } catch (const data_error& e) {
      EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << spec << ": " << e.what();
    }
  };
  const auto X = temp_path("X4.npy");
  refuses("npy:" + X + "," + temp_path("y3.npy"), "holds 4 samples but");
  refuses("npy:" + X + "," + temp_path("yneg.npy"), "class indices");
  refuses("npy:" + X + "," + temp_path("y2d.npy"), "shape (n,)");
  refuses("npy:" + temp_path("X1d.npy") + "," + temp_path("y4.npy"), "shape (n, d)");
  refuses("npy:" + X + "," + temp_path("y4.npy") + "," + temp_path("Xt2.npy") + ","
            + temp_path("y3.npy"),
          "features per sample");
  refuses("npy:" + temp_path("bad.npy") + "," + temp_path("y4.npy"), "not a .npy");
  refuses("npy:" + X, "two or four");
  refuses("npy:" + X + ",", "two or four");
  refuses("npy:" + X + "," + temp_path("y4.npy") + "," + X, "two or four");
}

TEST(libsvm_pair, train_and_test_files_share_features_and_label_mapping) {
  // Multiclass labels 3, 5, 9: the test file lacks 5, and uses feature 6,
  // beyond the training file's largest index.
  write_file(temp_path("tr.svm"), "3 1:1 2:0.5\n5 3:2\n9 1:-1\n3 2:1\n");
  write_file(temp_path("te.svm"), "9 6:1\n3 1:1\n");
  dataset_options o;
  auto data = load_dataset("libsvm:" + temp_path("tr.svm") + "," + temp_path("te.svm"), o);
  EXPECT_EQ(data.train->size(), 4);
  EXPECT_EQ(data.test->size(), 2);
  EXPECT_EQ(data.train->num_features, 6);
  EXPECT_EQ(data.test->num_features, 6);
  EXPECT_EQ(data.train->num_classes, 3);
  EXPECT_EQ(data.test->num_classes, 3);
  EXPECT_EQ(data.train->y, (std::vector<float>{0, 1, 2, 0}));
  EXPECT_EQ(data.test->y, (std::vector<float>{2, 0}));  // 9 is class 2 in both
  // One file: --test-fraction (default 0.2) holds out part of it.
  std::string many;
  for (int i = 0; i < 20; ++i)
    many += (i % 2 ? "+1" : "-1") + std::string(" 1:") + std::to_string(i) + "\n";
  write_file(temp_path("many.svm"), many);
  o.test_fraction = 0.25;
  auto split = load_dataset("libsvm:" + temp_path("many.svm"), o);
  EXPECT_EQ(split.test->size(), 5);
  EXPECT_EQ(split.train->size(), 15);
  EXPECT_THROW(load_dataset("libsvm:" + temp_path("tr.svm") + ",", o), data_error);
  EXPECT_THROW(load_dataset("libsvm:" + temp_path("tr.svm") + "," + temp_path("nope.svm"), o),
               data_error);
}

// An IDX file: big-endian magic and dimensions, then the bytes.
std::string idx_bytes(uint32_t magic, const std::vector<uint32_t>& dims,
                      const std::vector<uint8_t>& data) {
  std::string out;
  auto be32 = [&](uint32_t v) {
    for (int k = 3; k >= 0; --k)
      out += static_cast<char>((v >> (8 * k)) & 0xff);
  };
  be32(magic);
  for (auto d : dims)
    be32(d);
  return out + std::string(data.begin(), data.end());
}

TEST(idx_dir, any_mnist_style_directory_loads_gzipped_or_plain_with_its_classes) {
  auto dir = temp_path("mnistlike");
  std::filesystem::create_directories(dir);
  // 3 training images of 2x2 pixels, labels up to 11 (EMNIST-like: 12 classes).
  write_file(dir + "/train-images-idx3-ubyte",
             idx_bytes(0x803, {3, 2, 2}, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}));
  write_file(dir + "/train-labels-idx1-ubyte", idx_bytes(0x801, {3}, {0, 11, 4}));
  // The test files gzipped.
  for (auto [name, bytes] : {std::pair{"t10k-images-idx3-ubyte", idx_bytes(0x803, {1, 2, 2}, {9, 9, 9, 9})},
                             std::pair{"t10k-labels-idx1-ubyte", idx_bytes(0x801, {1}, {7})}}) {
    gzFile f = gzopen((dir + "/" + name + ".gz").c_str(), "wb");
    ASSERT_NE(f, nullptr);
    gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
    gzclose(f);
  }
  auto data = load_dataset("idx:" + dir, dataset_options{});
  EXPECT_EQ(data.train->size(), 3);
  EXPECT_EQ(data.test->size(), 1);
  EXPECT_EQ(data.train->num_features, 4);
  EXPECT_EQ(data.train->num_classes, 12);
  EXPECT_EQ(data.test->num_classes, 12);
  EXPECT_EQ(data.train->y, (std::vector<float>{0, 11, 4}));
  // A missing file is named.
  std::filesystem::remove(dir + "/train-labels-idx1-ubyte");
  try {
    load_dataset("idx:" + dir, dataset_options{});
    ADD_FAILURE() << "loaded without labels";
  } catch (const data_error& e) {
    EXPECT_NE(std::string(e.what()).find("train-labels-idx1-ubyte"), std::string::npos) << e.what();
  }
  EXPECT_THROW(load_dataset("idx:", dataset_options{}), data_error);
}

} // namespace
} // namespace chorus
