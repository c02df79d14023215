// The device models' shared kernels (declared, with their contracts, in
// models/cuda/kernels.cuh). Element-wise kernels use grid-stride loops with
// 32-bit index arithmetic where the range allows (integer division is the
// costliest instruction in them); reductions use a fixed order, so a run
// repeats bit for bit.
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cstdint>

#include "gpu/cuda/check.hpp"
#include "models/cuda/kernels.cuh"

namespace chorus::cuda_models {

namespace {

constexpr int threads = 256;
constexpr unsigned full_mask = 0xffffffffu;

// Enough blocks to fill the largest GPUs several times over; the grid-stride
// loops cover larger ranges.
unsigned blocks_for(int64_t work, int per_block = threads) {
  return static_cast<unsigned>(std::min<int64_t>((work + per_block - 1) / per_block, 4096));
}

bool fits_32(int64_t n) { return n <= INT32_MAX; }

void check_launch() { CHORUS_CUDA(cudaGetLastError()); }

// -- gather -------------------------------------------------------------------

// One block per sample (grid-stride over samples), threads over its
// features; Vec floats per load (4 when rows are 16-byte aligned).
template <int Vec>
__global__ void gather_kernel(const float* __restrict__ x, const int32_t* __restrict__ y,
                              int64_t features, const int64_t* __restrict__ idx, int64_t n,
                              float* __restrict__ xb, int32_t* __restrict__ yb) {
  for (int64_t j = blockIdx.x; j < n; j += gridDim.x) {
    const int64_t s = idx[j];
    if constexpr (Vec == 4) {
      const auto* src = reinterpret_cast<const float4*>(x + s * features);
      auto* dst = reinterpret_cast<float4*>(xb + j * features);
      for (int64_t f = threadIdx.x; f < features / 4; f += blockDim.x)
        dst[f] = src[f];
    } else {
      const float* src = x + s * features;
      float* dst = xb + j * features;
      for (int64_t f = threadIdx.x; f < features; f += blockDim.x)
        dst[f] = src[f];
    }
    if (threadIdx.x == 0)
      yb[j] = y[s];
  }
}

// -- bias, ReLU -----------------------------------------------------------------

template <class I, bool Relu>
__global__ void bias_activation_kernel(float* __restrict__ z, const float* __restrict__ b,
                                       I total, I channels, I hw) {
  for (I i = blockIdx.x * I(blockDim.x) + threadIdx.x; i < total; i += I(gridDim.x) * blockDim.x) {
    float v = z[i] + b[(i / hw) % channels];
    if constexpr (Relu)
      v = fmaxf(v, 0.0f);
    z[i] = v;
  }
}

template <class I>
__global__ void relu_backward_kernel(float* __restrict__ dz, const float* __restrict__ a, I count) {
  for (I i = blockIdx.x * I(blockDim.x) + threadIdx.x; i < count; i += I(gridDim.x) * blockDim.x)
    dz[i] *= a[i] > 0.0f ? 1.0f : 0.0f;  // a multiply, as the CPU's mask
}

// -- softmax cross-entropy ---------------------------------------------------------

// (value, index) of the first maximum: a beats b when it is larger, or equal
// with a smaller index. A strict total order (no NaN logits), so the xor
// butterfly below leaves every lane with the same winner.
__device__ inline bool beats(float av, int ai, float bv, int bi) {
  return av > bv || (av == bv && ai < bi);
}

// One warp per column (the loop is warp-uniform, so every shuffle has all 32
// lanes). Each lane scans classes lane, lane + 32, ...; the butterfly sums
// give all lanes bit-identical totals (each step adds the same two operands).
template <bool Grad>
__global__ void softmax_xent_kernel(const float* __restrict__ logits,
                                    const int32_t* __restrict__ labels, int64_t n, int classes,
                                    float scale, float* __restrict__ dlogits,
                                    double* __restrict__ sample_loss,
                                    int32_t* __restrict__ sample_hit) {
  const int lane = threadIdx.x & 31;
  const int warps_per_block = blockDim.x >> 5;
  const int64_t stride = int64_t(gridDim.x) * warps_per_block;
  for (int64_t j = int64_t(blockIdx.x) * warps_per_block + (threadIdx.x >> 5); j < n; j += stride) {
    const float* z = logits + j * classes;
    // Lane-local first maximum (lanes with no class keep -inf and INT_MAX,
    // which every real entry beats: classes >= 2 puts one in lane 0).
    float top = -INFINITY;
    int arg = INT_MAX;
    for (int c = lane; c < classes; c += 32) {
      const float v = z[c];
      if (arg == INT_MAX || v > top) {
        top = v;
        arg = c;
      }
    }
    for (int offset = 16; offset > 0; offset >>= 1) {
      const float other = __shfl_xor_sync(full_mask, top, offset);
      const int other_arg = __shfl_xor_sync(full_mask, arg, offset);
      if (beats(other, other_arg, top, arg)) {
        top = other;
        arg = other_arg;
      }
    }
    // Sum of exp(z - max) >= 1: exp cannot overflow, the log is well conditioned.
    float sum = 0.0f;
    for (int c = lane; c < classes; c += 32)
      sum += expf(z[c] - top);
    for (int offset = 16; offset > 0; offset >>= 1)
      sum += __shfl_xor_sync(full_mask, sum, offset);

    const int y = labels[j];
    if (lane == 0) {
      const float margin = z[y] - top;  // <= 0
      sample_loss[j] = log(double(sum)) - double(margin);
      if (sample_hit != nullptr)
        sample_hit[j] = arg == y ? 1 : 0;
    }
    if constexpr (Grad) {
      // scale * softmax - scale * onehot, with the CPU's float operations.
      const float factor = scale / sum;
      float* d = dlogits + j * classes;
      for (int c = lane; c < classes; c += 32) {
        float e = expf(z[c] - top) * factor;
        if (c == y)
          e -= scale;
        d[c] = e;
      }
    }
  }
}

constexpr int reduce_threads = 512;

__global__ void accumulate_loss_kernel(const double* __restrict__ sample_loss,
                                       const int32_t* __restrict__ sample_hit, int64_t n,
                                       loss_sums* sums) {
  __shared__ double loss[reduce_threads];
  __shared__ long long hits[reduce_threads];
  double l = 0;
  long long h = 0;
  for (int64_t i = threadIdx.x; i < n; i += reduce_threads) {
    l += sample_loss[i];
    if (sample_hit != nullptr)
      h += sample_hit[i];
  }
  loss[threadIdx.x] = l;
  hits[threadIdx.x] = h;
  __syncthreads();
  for (int half = reduce_threads / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) {
      loss[threadIdx.x] += loss[threadIdx.x + half];
      hits[threadIdx.x] += hits[threadIdx.x + half];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    sums->loss += loss[0];
    sums->hits += hits[0];
  }
}

// -- bias gradient ---------------------------------------------------------------

// A 32 x 32 block per 32 rows: threadIdx.x picks the row (consecutive rows
// are consecutive addresses: coalesced), threadIdx.y strides over columns;
// then row r's 32 partial sums are added in order by thread (r, 0).
constexpr int tile = 32;

__global__ void row_sums_kernel(const float* __restrict__ a, int64_t rows, int64_t cols,
                                float* __restrict__ out) {
  __shared__ float partial[tile][tile + 1];
  const int64_t r = int64_t(blockIdx.x) * tile + threadIdx.x;
  float s = 0.0f;
  if (r < rows)
    for (int64_t j = threadIdx.y; j < cols; j += tile)
      s += a[r + rows * j];
  partial[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && r < rows) {
    float total = 0.0f;
    for (int k = 0; k < tile; ++k)
      total += partial[k][threadIdx.x];
    out[r] = total;
  }
}

// -- transpose -------------------------------------------------------------------

// A 32 x 32 tile through shared memory (padded against bank conflicts): reads
// and writes both coalesced.
__global__ void transpose_kernel(const float* __restrict__ in, int rows, int cols,
                                 float* __restrict__ out) {
  __shared__ float t[tile][tile + 1];
  const int r0 = blockIdx.x * tile, c0 = blockIdx.y * tile;
  for (int k = threadIdx.y; k < tile; k += blockDim.y) {
    const int r = r0 + threadIdx.x, c = c0 + k;
    if (r < rows && c < cols)
      t[k][threadIdx.x] = in[r + int64_t(rows) * c];  // in(r0 + x, c0 + k)
  }
  __syncthreads();
  for (int k = threadIdx.y; k < tile; k += blockDim.y) {
    const int c = c0 + threadIdx.x, r = r0 + k;
    if (r < rows && c < cols)
      out[c + int64_t(cols) * r] = t[threadIdx.x][k];  // out(c, r) = in(r, c)
  }
}

// -- max pooling -------------------------------------------------------------------

template <class I>
__global__ void max_pool2_kernel(const float* __restrict__ act, I planes, I side,
                                 float* __restrict__ out, uint8_t* __restrict__ arg) {
  const I q = side / 2, per_plane = q * q, total = planes * per_plane;
  for (I o = blockIdx.x * I(blockDim.x) + threadIdx.x; o < total; o += I(gridDim.x) * blockDim.x) {
    const I plane = o / per_plane, r = o - plane * per_plane;
    const I py = r / q, px = r - py * q;
    const float* p = act + plane * side * side + 2 * py * side + 2 * px;
    // The CPU's order and strict '>': the first maximum wins.
    float best = p[0];
    uint8_t at = 0;
    if (p[1] > best) {
      best = p[1];
      at = 1;
    }
    if (p[side] > best) {
      best = p[side];
      at = 2;
    }
    if (p[side + 1] > best) {
      best = p[side + 1];
      at = 3;
    }
    out[o] = best;
    arg[o] = at;
  }
}

// One thread per activation: it looks up its own window, so no zeroing pass
// and no scatter (windows do not overlap).
template <class I>
__global__ void max_pool2_backward_kernel(const float* __restrict__ act,
                                          const uint8_t* __restrict__ arg,
                                          const float* __restrict__ dout, I planes, I side,
                                          float* __restrict__ dact) {
  const I q = side / 2, pixels = side * side, total = planes * pixels;
  for (I i = blockIdx.x * I(blockDim.x) + threadIdx.x; i < total; i += I(gridDim.x) * blockDim.x) {
    const I plane = i / pixels, r = i - plane * pixels;
    const I y = r / side, x = r - y * side;
    const I py = y / 2, px = x / 2;
    float g = 0.0f;
    if (py < q && px < q) {
      const I o = plane * q * q + py * q + px;
      const unsigned at = ((y & 1) << 1) | (x & 1);
      if (arg[o] == at && act[i] > 0.0f)
        g = dout[o];
    }
    dact[i] = g;
  }
}

} // namespace

void gather_batch(const float* x, const int32_t* y, int64_t features, const int64_t* idx,
                  int64_t n, float* xb, int32_t* yb, cudaStream_t stream) {
  if (n <= 0)
    return;
  const unsigned grid = static_cast<unsigned>(std::min<int64_t>(n, 8192));
  const bool aligned = features % 4 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0
                       && reinterpret_cast<uintptr_t>(xb) % 16 == 0;
  if (aligned)
    gather_kernel<4><<<grid, threads, 0, stream>>>(x, y, features, idx, n, xb, yb);
  else
    gather_kernel<1><<<grid, threads, 0, stream>>>(x, y, features, idx, n, xb, yb);
  check_launch();
}

void bias_activation(float* z, const float* b, int64_t n, int64_t channels, int64_t hw, bool relu,
                     cudaStream_t stream) {
  const int64_t total = n * channels * hw;
  if (total <= 0)
    return;
  const unsigned grid = blocks_for(total);
  if (fits_32(total)) {
    using I = uint32_t;
    if (relu)
      bias_activation_kernel<I, true><<<grid, threads, 0, stream>>>(z, b, I(total), I(channels), I(hw));
    else
      bias_activation_kernel<I, false><<<grid, threads, 0, stream>>>(z, b, I(total), I(channels), I(hw));
  } else {
    using I = uint64_t;
    if (relu)
      bias_activation_kernel<I, true><<<grid, threads, 0, stream>>>(z, b, I(total), I(channels), I(hw));
    else
      bias_activation_kernel<I, false><<<grid, threads, 0, stream>>>(z, b, I(total), I(channels), I(hw));
  }
  check_launch();
}

void relu_backward(float* dz, const float* a, int64_t count, cudaStream_t stream) {
  if (count <= 0)
    return;
  if (fits_32(count))
    relu_backward_kernel<uint32_t><<<blocks_for(count), threads, 0, stream>>>(dz, a, uint32_t(count));
  else
    relu_backward_kernel<uint64_t><<<blocks_for(count), threads, 0, stream>>>(dz, a, uint64_t(count));
  check_launch();
}

void softmax_xent(const float* logits, const int32_t* labels, int64_t n, int64_t classes,
                  float scale, float* dlogits, double* sample_loss, int32_t* sample_hit,
                  cudaStream_t stream) {
  if (n <= 0)
    return;
  const unsigned grid = blocks_for(n, threads / 32);  // one warp per sample
  const int c = static_cast<int>(classes);  // the registry caps widths far below INT_MAX
  if (dlogits != nullptr)
    softmax_xent_kernel<true><<<grid, threads, 0, stream>>>(logits, labels, n, c, scale, dlogits,
                                                            sample_loss, sample_hit);
  else
    softmax_xent_kernel<false><<<grid, threads, 0, stream>>>(logits, labels, n, c, scale, nullptr,
                                                             sample_loss, sample_hit);
  check_launch();
}

void accumulate_loss(const double* sample_loss, const int32_t* sample_hit, int64_t n,
                     loss_sums* sums, cudaStream_t stream) {
  if (n <= 0)
    return;
  accumulate_loss_kernel<<<1, reduce_threads, 0, stream>>>(sample_loss, sample_hit, n, sums);
  check_launch();
}

void row_sums(const float* a, int64_t rows, int64_t cols, float* out, cudaStream_t stream) {
  if (rows <= 0)
    return;
  const auto grid = static_cast<unsigned>((rows + tile - 1) / tile);
  row_sums_kernel<<<grid, dim3(tile, tile), 0, stream>>>(a, rows, cols, out);
  check_launch();
}

void transpose(const float* in, int64_t rows, int64_t cols, float* out, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0)
    return;
  const dim3 grid(static_cast<unsigned>((rows + tile - 1) / tile),
                  static_cast<unsigned>((cols + tile - 1) / tile));
  transpose_kernel<<<grid, dim3(tile, 8), 0, stream>>>(in, static_cast<int>(rows),
                                                       static_cast<int>(cols), out);
  check_launch();
}

void max_pool2(const float* act, int64_t planes, int64_t side, float* out, uint8_t* arg,
               cudaStream_t stream) {
  const int64_t q = side / 2, outputs = planes * q * q;
  if (outputs <= 0)
    return;
  const unsigned grid = blocks_for(outputs);
  if (fits_32(planes * side * side))
    max_pool2_kernel<uint32_t><<<grid, threads, 0, stream>>>(act, uint32_t(planes), uint32_t(side),
                                                             out, arg);
  else
    max_pool2_kernel<uint64_t><<<grid, threads, 0, stream>>>(act, uint64_t(planes), uint64_t(side),
                                                             out, arg);
  check_launch();
}

void max_pool2_backward(const float* act, const uint8_t* arg, const float* dout, int64_t planes,
                        int64_t side, float* dact, cudaStream_t stream) {
  const int64_t total = planes * side * side;
  if (total <= 0)
    return;
  const unsigned grid = blocks_for(total);
  if (fits_32(total))
    max_pool2_backward_kernel<uint32_t><<<grid, threads, 0, stream>>>(
      act, arg, dout, uint32_t(planes), uint32_t(side), dact);
  else
    max_pool2_backward_kernel<uint64_t><<<grid, threads, 0, stream>>>(
      act, arg, dout, uint64_t(planes), uint64_t(side), dact);
  check_launch();
}

} // namespace chorus::cuda_models
