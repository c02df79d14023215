// The element-wise and reduction kernels the device models share, each the
// twin of a loop in models/mlp.cpp or models/cnn.cpp. This header declares
// their launchers; models/cuda/kernels.cu defines kernels and launchers in
// one translation unit (CUDA without relocatable device code cannot launch a
// kernel defined in another file, so the launchers are the shared interface).
//
// Layouts are the CPU models': a column-major rows x cols matrix has (r, j)
// at r + rows * j; a batch of images is NCHW. A column-major channels x n
// matrix (one column per sample) is NCHW with H = W = 1, which lets one
// bias kernel serve dense layers and convolutions.
//
// Every launcher only enqueues work on `stream` (no synchronization), checks
// its launch with cudaGetLastError, and does nothing for an empty range.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace chorus::cuda_models {

/// xb[:, j] = x[:, idx[j]] and yb[j] = y[idx[j]] for j < n: gathers a
/// batch of samples (`features` floats each, sample-major) from the device
/// copy of a dataset. Indices were range-checked on the host.
void gather_batch(const float* x, const int32_t* y, int64_t features, const int64_t* idx,
                  int64_t n, float* xb, int32_t* yb, cudaStream_t stream);

/// z[j][c][p] += b[c] over n x channels x hw (NCHW; hw = 1 for a column-major
/// channels x n matrix), then max(z, 0) where `relu`: the CPU's bias + ReLU
/// in one pass, with the same float operations.
void bias_activation(float* z, const float* b, int64_t n, int64_t channels, int64_t hw, bool relu,
                     cudaStream_t stream);

/// dz[i] *= (a[i] > 0 ? 1 : 0) for i < count: the ReLU derivative, taken
/// from the layer's post-ReLU output as the CPU does.
void relu_backward(float* dz, const float* a, int64_t count, cudaStream_t stream);

/// Softmax cross-entropy of n columns of logits (classes x n, column-major)
/// against labels, one warp per column. Writes each column's loss
/// log(sum_c exp(z_c - max)) - (z_y - max) to sample_loss[j] (double); with
/// `dlogits`, writes scale * (softmax - onehot) there (the gradient of the
/// mean loss when scale = 1/n); with `sample_hit`, writes 1 where the first
/// maximum is the label, else 0. dlogits must not alias logits (the kernel
/// reads them through __restrict__ pointers).
void softmax_xent(const float* logits, const int32_t* labels, int64_t n, int64_t classes,
                  float scale, float* dlogits, double* sample_loss, int32_t* sample_hit,
                  cudaStream_t stream);

/// What softmax_xent's per-sample results add up to, accumulated on the
/// device over several calls (evaluate's chunks).
struct loss_sums {
  double loss;     ///< sum of per-sample losses
  long long hits;  ///< number of correct argmaxes
};

/// sums->loss += sum_j sample_loss[j], sums->hits += sum_j sample_hit[j]
/// (hits skipped when null). One block in a fixed order: deterministic.
void accumulate_loss(const double* sample_loss, const int32_t* sample_hit, int64_t n,
                     loss_sums* sums, cudaStream_t stream);

/// out[r] = sum_j a[r + rows * j]: the row sums of a column-major rows x cols
/// matrix, i.e. the bias gradient of a dense layer from dLoss/dZ. Fixed
/// summation order: deterministic.
void row_sums(const float* a, int64_t rows, int64_t cols, float* out, cudaStream_t stream);

/// out = in^T: in is rows x cols column-major, out is cols x rows
/// column-major. Maps the CPU's conv filters (cout x taps, column-major)
/// to cuDNN's KCRS (taps x cout column-major), and the gradients back.
void transpose(const float* in, int64_t rows, int64_t cols, float* out, cudaStream_t stream);

/// 2x2 max pooling, stride 2, of `planes` side x side planes into planes of
/// (side / 2) x (side / 2) (an odd last row or column is dropped). Ties go
/// to the first maximum in row-major window order, as in models/cnn.cpp;
/// arg[o] records the winner's window position (0..3, row-major).
void max_pool2(const float* act, int64_t planes, int64_t side, float* out, uint8_t* arg,
               cudaStream_t stream);

/// The adjoint of max_pool2 followed by the ReLU mask: dact[i] = dout[o]
/// when i is window o's recorded maximum and act[i] > 0, else 0 (also for
/// the dropped odd row/column). Writes every element of dact.
void max_pool2_backward(const float* act, const uint8_t* arg, const float* dout, int64_t planes,
                        int64_t side, float* dact, cudaStream_t stream);

} // namespace chorus::cuda_models
