// The CUDA backend against its Eigen twin, and device-resident payload
// buffers. Tests named `cuda_backend_gpu.*` need a GPU and skip without one;
// the others run in every build (no CUDA, or CUDA without a device) and check
// that asking for a GPU there is a clear error.
#include <gtest/gtest.h>

#include <caf/binary_deserializer.hpp>
#include <caf/binary_serializer.hpp>

#include <cmath>
#include <limits>
#include <random>
#include <thread>

#include "gpu/assert.hpp"
#include "gpu/backend.hpp"
#include "gpu/device.hpp"
#include "messages/payloads.hpp"
#include "tests/gpu/gpu_test_util.hpp"
#include "tests/test_util.hpp"

using namespace chorus;
using chorus::test::random_vector;

namespace {

// Element-wise agreement: |a - b| <= tol * (1 + |b|).
void expect_close(const std::vector<float>& got, const std::vector<float>& want, float tol,
                  const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  size_t bad = 0;
  for (size_t i = 0; i < got.size(); ++i)
    if (!(std::fabs(got[i] - want[i]) <= tol * (1 + std::fabs(want[i]))) && bad++ < 5)
      ADD_FAILURE() << what << " [" << i << "]: " << got[i] << " vs " << want[i];
  EXPECT_EQ(bad, 0u) << what;
}

// A host buffer and its device copy.
struct pair_buf {
  buffer host;
  buffer dev;
};

pair_buf make_pair(size_t n, uint64_t seed) {
  auto h = buffer::from(random_vector(n, seed));
  return {h, device::to_device(h, 0)};
}

} // namespace

// -- every build -----------------------------------------------------------------

TEST(cuda_backend, without_a_device_asking_for_one_is_a_clear_error) {
  if (device::count() > 0)
    GTEST_SKIP() << "a CUDA device is present";
  try {
    make_cuda_backend(0);
    FAIL() << "make_cuda_backend(0) succeeded without a device";
  } catch (const device_error& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("cuda backend"), std::string::npos) << what;
  }
  EXPECT_THROW(device::make_buffer(16, 0), device_error);
  EXPECT_THROW(device::make_buffer(0, 0), device_error);  // an empty one too
  EXPECT_THROW(device::to_device(buffer::from({1.0f, 2.0f}), 0), device_error);
  EXPECT_THROW(make_backend("cuda"), device_error);
}

TEST(cuda_backend, backends_are_chosen_by_name) {
  EXPECT_EQ(make_backend("eigen")->name(), "eigen");
  try {
    make_backend("rocm");
    FAIL() << "unknown backend accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("eigen, cuda"), std::string::npos) << e.what();
  }
}

TEST(cuda_backend, host_buffers_move_between_kinds_without_copies_where_none_is_needed) {
  auto b = buffer::from({1.0f, 2.0f, 3.0f});
  EXPECT_TRUE(b.to_host().same_storage(b));
  EXPECT_EQ(b.device(), -1);
  auto be = make_eigen_backend();
  EXPECT_TRUE(be->adopt(b).same_storage(b));
  EXPECT_EQ(be->allocate(5).size(), 5u);
}

// -- on a GPU --------------------------------------------------------------------

TEST(cuda_backend_gpu, device_buffers_round_trip_and_share_storage) {
  CHORUS_SKIP_WITHOUT_GPUS(1);
  auto values = random_vector(100003, 1);
  auto h = buffer::from(values);
  auto d = device::to_device(h, 0);
  EXPECT_EQ(d.kind(), memory_kind::device);
  EXPECT_EQ(d.device(), 0);
  EXPECT_TRUE(device::to_device(d, 0).same_storage(d));  // already there: no copy
  EXPECT_EQ(d.to_vector(), values);
  EXPECT_EQ(d.to_host().to_vector(), values);
  auto copy = d;  // a hop inside the process: the handle, not the floats
  EXPECT_TRUE(copy.same_storage(d));
}

TEST(cuda_backend_gpu, an_adopted_buffer_has_landed_before_the_next_call) {
  CHORUS_SKIP_WITHOUT_GPUS(1);
  // adopt() copies on the calling thread's stream, the backend computes on
  // its own: the copy must be complete when adopt returns. Pooled blocks of
  // one size are reused every round, as in training, where a copy still in
  // flight would show stale values of the previous round.
  auto gpu = make_cuda_backend(0);
  const size_t n = (size_t{1} << 22) + 7;
  for (uint64_t round = 0; round < 20; ++round) {
    auto values = random_vector(n, 100 + round);
    auto d = gpu->adopt(buffer::from(values));
    auto out = gpu->allocate(n);
    gpu->copy(d.span(), out.span());
    auto got = std::move(out).freeze().to_vector();
    ASSERT_EQ(got, values) << "round " << round;
  }
  EXPECT_THROW(device::make_buffer(8, device::count()), device_error);
}

TEST(cuda_backend_gpu, a_device_buffer_serializes_through_the_host) {
  CHORUS_SKIP_WITHOUT_GPUS(1);
  test::test_system ts;
  auto values = random_vector(4097, 2);
  gradient g{1, 7, device::to_device(buffer::from(values), 0), 0.5f, 32};
  std::vector<char> bytes;
  caf::binary_serializer sink{ts.sys, bytes};
  ASSERT_FALSE(sink(g));
  EXPECT_LE(bytes.size(), values.size() * sizeof(float) + 64);
  gradient back;
  caf::binary_deserializer source{ts.sys, bytes};
  ASSERT_FALSE(source(back));
  EXPECT_EQ(back.values.kind(), memory_kind::host);  // arrives on the host
  EXPECT_EQ(back.values.to_vector(), values);
}

class cuda_backend_sizes : public ::testing::TestWithParam<size_t> {};

TEST_P(cuda_backend_sizes, vector_operations_match_the_eigen_backend) {
  CHORUS_SKIP_WITHOUT_GPUS(1);
  const size_t n = GetParam();
  auto cpu = make_eigen_backend();
  auto gpu = make_cuda_backend(0);
  EXPECT_EQ(gpu->kind(), memory_kind::device);
  auto x = make_pair(n, 10), y = make_pair(n, 11);
  constexpr float tol = 1e-6f;

  {  // axpy
    auto hy = mutable_buffer::copy_of(y.host);
    cpu->axpy(0.37f, x.host, hy.span());
    auto dy = gpu->allocate(n);
    gpu->copy(y.dev, dy.span());
    gpu->axpy(0.37f, x.dev, dy.span());
    expect_close(std::move(dy).freeze().to_vector(), std::move(hy).freeze().to_vector(), tol,
                 "axpy");
  }
  {  // scale
    auto hy = mutable_buffer::copy_of(y.host);
    cpu->scale(-1.5f, hy.span());
    auto dy = gpu->allocate(n);
    gpu->copy(y.dev, dy.span());
    gpu->scale(-1.5f, dy.span());
    expect_close(std::move(dy).freeze().to_vector(), std::move(hy).freeze().to_vector(), tol,
                 "scale");
  }
  {  // zeros
    auto z = gpu->zeros(n);
    for (float v : std::move(z).freeze().to_vector())
      ASSERT_EQ(v, 0.0f);
  }
  // Reductions accumulate in double on both sides; only the order differs.
  const double scale = 1e-9 * (1 + static_cast<double>(n));
  EXPECT_NEAR(gpu->dot(x.dev, y.dev), cpu->dot(x.host, y.host), scale * 10);
  EXPECT_NEAR(gpu->squared_norm(x.dev), cpu->squared_norm(x.host), scale * 10);
  EXPECT_NEAR(gpu->squared_distance(x.dev, y.dev), cpu->squared_distance(x.host, y.host),
              scale * 10);
  EXPECT_TRUE(gpu->all_finite(x.dev));
}

INSTANTIATE_TEST_SUITE_P(sizes, cuda_backend_sizes,
                         ::testing::Values(size_t{0}, size_t{1}, size_t{1000},
                                           size_t{(1 << 20) + 3}));

TEST(cuda_backend_gpu, mean_and_weighted_sum_of_k_buffers_match_eigen_across_launches) {
  CHORUS_SKIP_WITHOUT_GPUS(1);
  auto cpu = make_eigen_backend();
  auto gpu = make_cuda_backend(0);
  const size_t n = 50001;
  // k = 17 and 33 take two and three launches of at most 16 inputs.
  for (size_t k : {1, 2, 16, 17, 33}) {
    std::vector<buffer> hs, ds;
    std::vector<cview> hv, dv;
    std::vector<float> coeffs;
    for (size_t i = 0; i < k; ++i) {
      auto p = make_pair(n, 100 + i);
      hs.push_back(p.host), ds.push_back(p.dev);
      coeffs.push_back(0.1f * static_cast<float>(i + 1));
    }
    for (size_t i = 0; i < k; ++i)
      hv.push_back(hs[i]), dv.push_back(ds[i]);
    auto base = make_pair(n, 99);
    const std::string tag = " k=" + std::to_string(k);

    auto hm = cpu->allocate(n), dm = gpu->allocate(n);
    cpu->mean(hv, hm.span());
    gpu->mean(dv, dm.span());
    expect_close(std::move(dm).freeze().to_vector(), std::move(hm).freeze().to_vector(), 1e-5f,
                 "mean" + tag);

    auto hw = cpu->allocate(n), dw = gpu->allocate(n);
    cpu->weighted_sum(hv, coeffs, hw.span());
    gpu->weighted_sum(dv, coeffs, dw.span());
    expect_close(std::move(dw).freeze().to_vector(), std::move(hw).freeze().to_vector(), 1e-5f,
                 "weighted_sum" + tag);

    auto ha = cpu->allocate(n), da = gpu->allocate(n);
    cpu->mean_axpy(base.host, hv, -0.05f, ha.span());
    gpu->mean_axpy(base.dev, dv, -0.05f, da.span());
    expect_close(std::move(da).freeze().to_vector(), std::move(ha).freeze().to_vector(), 1e-5f,
                 "mean_axpy" + tag);
  }
}

TEST(cuda_backend_gpu, a_mean_of_exact_values_is_exact) {
  CHORUS_SKIP_WITHOUT_GPUS(1);
  // Ranks 0..n-1 average to exactly (n-1)/2, as on the CPU.
  auto gpu = make_cuda_backend(0);
  for (int n : {1, 2, 3, 8, 20}) {
    std::vector<buffer> ds;
    std::vector<cview> dv;
    for (int r = 0; r < n; ++r)
      ds.push_back(
        device::to_device(buffer::from(std::vector<float>(1000, static_cast<float>(r))), 0));
    for (auto& d : ds)
      dv.push_back(d);
    auto out = gpu->allocate(1000);
    gpu->mean(dv, out.span());
    for (float v : std::move(out).freeze().to_vector())
      ASSERT_EQ(v, (n - 1) / 2.0f) << "n=" << n;
  }
}

TEST(cuda_backend_gpu, non_finite_values_are_found_anywhere) {
  CHORUS_SKIP_WITHOUT_GPUS(1);
  auto gpu = make_cuda_backend(0);
  const size_t n = (1 << 20) + 7;
  for (size_t at : {size_t{0}, size_t{12345}, n - 1}) {
    for (float bad : {std::numeric_limits<float>::quiet_NaN(),
                      std::numeric_limits<float>::infinity(),
                      -std::numeric_limits<float>::infinity()}) {
      auto v = random_vector(n, 5);
      v[at] = bad;
      EXPECT_FALSE(gpu->all_finite(device::to_device(buffer::from(v), 0))) << "at " << at;
    }
  }
  // The largest finite float and denormals are finite.
  std::vector<float> edge{std::numeric_limits<float>::max(), -std::numeric_limits<float>::max(),
                          std::numeric_limits<float>::denorm_min(), 0.0f, -0.0f};
  EXPECT_TRUE(gpu->all_finite(device::to_device(buffer::from(edge), 0)));
}

TEST(cuda_backend_gpu, proximal_operators_match_eigen_for_every_regularizer) {
  CHORUS_SKIP_WITHOUT_GPUS(1);
  auto cpu = make_eigen_backend();
  auto gpu = make_cuda_backend(0);
  const size_t n = 100000;
  auto w = make_pair(n, 20), g = make_pair(n, 21);
  for (auto spec : {"none", "l1:0.5", "l2:0.3", "elastic:0.5,0.3"}) {
    auto r = regularizer::parse(spec);
    const float eta = 0.7f;
    auto hw = mutable_buffer::copy_of(w.host);
    cpu->prox(r, eta, hw.span());
    auto dw = gpu->allocate(n);
    gpu->copy(w.dev, dw.span());
    gpu->prox(r, eta, dw.span());
    expect_close(std::move(dw).freeze().to_vector(), std::move(hw).freeze().to_vector(), 1e-6f,
                 std::string("prox ") + spec);

    auto hs = mutable_buffer::copy_of(w.host);
    cpu->prox_step(r, eta, g.host, hs.span());
    auto ds = gpu->allocate(n);
    gpu->copy(w.dev, ds.span());
    gpu->prox_step(r, eta, g.dev, ds.span());
    auto got = std::move(ds).freeze().to_vector();
    auto want = std::move(hs).freeze().to_vector();
    expect_close(got, want, 1e-6f, std::string("prox_step ") + spec);
    if (r.kind == regularizer::kind_l1) {
      // Soft-thresholding zeroes the same coordinates on both sides (up to
      // ties at the threshold, which random normals do not hit).
      size_t zeros_gpu = 0, zeros_cpu = 0;
      for (size_t i = 0; i < n; ++i)
        zeros_gpu += got[i] == 0, zeros_cpu += want[i] == 0;
      EXPECT_EQ(zeros_gpu, zeros_cpu);
      EXPECT_GT(zeros_cpu, n / 10);
    }
  }
}

TEST(cuda_backend_gpu, host_memory_is_refused_with_an_invariant_error) {
  CHORUS_SKIP_WITHOUT_GPUS(1);
  auto gpu = make_cuda_backend(0);
  auto h = buffer::from(random_vector(10, 3));
  auto d = gpu->allocate(10);
  EXPECT_THROW(gpu->copy(h, d.span()), invariant_error);
  EXPECT_TRUE(gpu->adopt(h).kind() == memory_kind::device);
}

TEST(cuda_backend_gpu, several_backends_share_one_device_from_several_threads) {
  CHORUS_SKIP_WITHOUT_GPUS(1);
  // Four workers on one GPU, each with its own backend and stream, each on
  // its own thread: every result must still be its own.
  const size_t n = 1 << 18;
  std::vector<std::thread> threads;
  std::vector<double> got(4), want(4);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      auto gpu = make_cuda_backend(0);
      auto cpu = make_eigen_backend();
      auto x = buffer::from(random_vector(n, 300 + t));
      auto dx = device::to_device(x, 0);
      for (int rep = 0; rep < 20; ++rep)
        got[t] = gpu->squared_norm(dx);
      want[t] = cpu->squared_norm(x);
    });
  }
  for (auto& th : threads)
    th.join();
  for (int t = 0; t < 4; ++t)
    EXPECT_NEAR(got[t], want[t], 1e-6 * want[t]) << "thread " << t;
}
