// "cnn[:C1,C2]" on a CUDA device: the twin of models/cnn.cpp, with the same
// parameter block, layout, init and math:
//
//   input 1 x H x H
//   -> conv 3x3 (C1), pad 1, stride 1, + bias, ReLU -> max pool 2x2
//   -> conv 3x3 (C2), pad 1, stride 1, + bias, ReLU -> max pool 2x2
//   -> dense to the classes, softmax cross-entropy
//
// Convolutions (forward, backward data, backward filter, bias gradient) are
// cuDNN's, as cross-correlations in FP32 with FMA math (no TF32), the
// algorithms picked by cuDNN's v7 heuristics (the fastest deterministic one
// within a 256 MiB workspace, else the fastest one); the dense head is
// cuBLAS; bias + ReLU, pooling and the loss are our kernels. Activations are
// NCHW throughout, so the second pooled map is already the dense layer's
// input in the CPU's feature order f = (k * H4 + y) * H4 + x.
//
// Filter layouts. The CPU keeps conv W as a column-major cout x taps matrix
// with tap = (c * 3 + ky) * 3 + kx, i.e. W[k][tap] at k + cout * tap (K
// fastest). cuDNN's filters are KCRS (NCHW): [k][c][ky][kx] at k * taps + tap,
// the transpose of that matrix, and no cuDNN format puts K fastest. So each
// forward transposes both filters into KCRS scratch (a few KB), and each
// backward transposes cuDNN's KCRS filter gradients back into g.
//
// Pooling is our own kernel, not cuDNN's: the CPU breaks ties (common after
// ReLU: all-zero windows) towards the first maximum in row-major window
// order and routes the gradient only where the unit was active; recording
// the winner in forward reproduces that exactly.
#include <cudnn.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "gpu/assert.hpp"
#include "gpu/cuda/check.hpp"
#include "models/cuda/device_model.cuh"
#include "models/cuda/kernels.cuh"

namespace chorus::cuda_models {

namespace {

// Where the second stage's bias gradient starts in the dbias_ scratch: at a
// 256-byte boundary, like every allocation, however many channels stage 1 has.
constexpr int64_t bias2_offset(int64_t stage1_channels) {
  return (stage1_channels + 63) / 64 * 64;
}

// evaluate() runs at most this many images per forward pass.
constexpr int64_t eval_cap = 1024;
// No convolution algorithm may ask for more scratch than this.
constexpr size_t workspace_cap = size_t{256} << 20;

// -- cuDNN RAII -------------------------------------------------------------------

template <class T, cudnnStatus_t (*Create)(T*), cudnnStatus_t (*Destroy)(T)>
class cudnn_object {
public:
  cudnn_object() { CHORUS_CUDNN(Create(&h_)); }
  ~cudnn_object() {
    if (h_ != nullptr)
      Destroy(h_);
  }
  cudnn_object(const cudnn_object&) = delete;
  cudnn_object& operator=(const cudnn_object&) = delete;
  T get() const { return h_; }

private:
  T h_ = nullptr;
};

using tensor_desc = cudnn_object<cudnnTensorDescriptor_t, cudnnCreateTensorDescriptor,
                                 cudnnDestroyTensorDescriptor>;
using filter_desc = cudnn_object<cudnnFilterDescriptor_t, cudnnCreateFilterDescriptor,
                                 cudnnDestroyFilterDescriptor>;
using conv_desc = cudnn_object<cudnnConvolutionDescriptor_t, cudnnCreateConvolutionDescriptor,
                               cudnnDestroyConvolutionDescriptor>;

/// A cuDNN handle on one device and stream.
class dnn {
public:
  dnn(int dev, cudaStream_t s) : dev_(dev) {
    CHORUS_CUDA(cudaSetDevice(dev));
    CHORUS_CUDNN(cudnnCreate(&h_));
    const cudnnStatus_t status = cudnnSetStream(h_, s);
    if (status != CUDNN_STATUS_SUCCESS) {
      cudnnDestroy(h_);
      CHORUS_CUDNN(status);
    }
  }
  ~dnn() {
    scoped_device on(dev_);
    cudnnDestroy(h_);
  }
  dnn(const dnn&) = delete;
  dnn& operator=(const dnn&) = delete;
  cudnnHandle_t get() const { return h_; }

private:
  int dev_;
  cudnnHandle_t h_ = nullptr;
};

int to_int(int64_t v, const char* what) {
  if (v > INT32_MAX)
    throw device_error(std::string("cnn on the GPU: ") + what + " of " + std::to_string(v)
                       + " exceeds cuDNN's 32-bit sizes");
  return static_cast<int>(v);
}

void set_nchw(const tensor_desc& t, int64_t n, int64_t c, int64_t h, int64_t w) {
  CHORUS_CUDNN(cudnnSetTensor4dDescriptor(t.get(), CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT,
                                          to_int(n, "batch"), to_int(c, "channels"),
                                          to_int(h, "height"), to_int(w, "width")));
}

// The first usable entry of a v7 heuristics list (sorted fastest first):
// succeeded, FP32 FMA math (no tensor-op / TF32 variant), within the
// workspace cap; deterministic if any such entry is, for runs that repeat.
template <class Perf>
Perf choose(const std::vector<Perf>& perf, int returned, const char* what) {
  for (int pass = 0; pass < 2; ++pass)
    for (int i = 0; i < returned; ++i) {
      const Perf& p = perf[static_cast<size_t>(i)];
      if (p.status != CUDNN_STATUS_SUCCESS || p.memory > workspace_cap)
        continue;
      if (p.mathType == CUDNN_TENSOR_OP_MATH || p.mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION)
        continue;
      if (pass == 0 && p.determinism != CUDNN_DETERMINISTIC)
        continue;
      return p;
    }
  throw device_error(std::string("cnn on the GPU: cuDNN offers no FP32 algorithm for ") + what
                     + " within a " + std::to_string(workspace_cap >> 20) + " MiB workspace");
}

// One convolution + ReLU + pooling stage: n images of cin x side x side in,
// n images of cout x pooled x pooled out (NCHW).
struct stage {
  int64_t cin = 0, cout = 0, side = 0, pooled = 0;
  int64_t w_offset = 0, b_offset = 0;  // W [cout x cin*9], b [cout] in the flat block
  int64_t taps() const { return cin * 9; }
  int64_t pixels() const { return side * side; }
};

// Descriptors and algorithms for one batch size.
struct conv_plan {
  tensor_desc x1, y1, x2, y2;  // stage inputs and (pre-pooling) outputs
  cudnnConvolutionFwdAlgo_t fwd1{}, fwd2{};
  cudnnConvolutionBwdFilterAlgo_t filter1{}, filter2{};
  cudnnConvolutionBwdDataAlgo_t data2{};
  size_t workspace = 0;  // bytes, the most any of them needs
};

class cnn_device final : public device_model {
public:
  cnn_device(std::unique_ptr<model> cpu, int dev, int64_t side, int64_t classes)
      : device_model(std::move(cpu), dev, side * side, classes),
        dnn_(dev, stream_handle()) {
    // The layout is read off the CPU model, so both can never disagree.
    const std::vector<param_tensor> t = layout();
    CHORUS_ASSERT(t.size() == 6 && t[0].name == "conv1.W" && t[2].name == "conv2.W"
                    && t[4].name == "fc.W",
                  name() + ": unexpected parameter layout");
    int64_t cin = 1, s = side;
    for (int i = 0; i < 2; ++i) {
      stage& st = stages_[i];
      const param_tensor& w = t[static_cast<size_t>(2 * i)];
      st.cin = cin;
      st.cout = w.shape[0];
      st.side = s;
      st.pooled = s / 2;
      st.w_offset = w.offset;
      st.b_offset = t[static_cast<size_t>(2 * i + 1)].offset;
      CHORUS_ASSERT(w.shape[1] == st.taps(), name() + ": unexpected shape of " + w.name);
      cin = st.cout;
      s = st.pooled;
    }
    features_ = stages_[1].cout * stages_[1].pooled * stages_[1].pooled;
    CHORUS_ASSERT(t[4].shape[0] == classes && t[4].shape[1] == features_,
                  name() + ": unexpected shape of fc.W");
    fc_w_ = t[4].offset;
    fc_b_ = t[5].offset;

    CHORUS_CUDNN(cudnnSetConvolution2dDescriptor(conv_.get(), 1, 1, 1, 1, 1, 1,
                                                 CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    // FMA only: cuDNN's default math may run FP32 convolutions as TF32.
    CHORUS_CUDNN(cudnnSetConvolutionMathType(conv_.get(), CUDNN_FMA_MATH));
    const filter_desc* filters[2] = {&w1_, &w2_};
    const tensor_desc* biases[2] = {&b1_, &b2_};
    for (int i = 0; i < 2; ++i) {
      const stage& st = stages_[i];
      CHORUS_CUDNN(cudnnSetFilter4dDescriptor(filters[i]->get(), CUDNN_DATA_FLOAT,
                                              CUDNN_TENSOR_NCHW, to_int(st.cout, "channels"),
                                              to_int(st.cin, "channels"), 3, 3));
      set_nchw(*biases[i], 1, st.cout, 1, 1);
    }
  }

private:
  int64_t eval_chunk() const override {
    const stage& s1 = stages_[0];
    const stage& s2 = stages_[1];
    const int64_t pooled1 = s1.cout * s1.pooled * s1.pooled;
    const int64_t floats = s1.pixels()                 // a gathered image
                           + s1.cout * s1.pixels()     // act1
                           + pooled1                   // pool1
                           + s2.cout * s2.pixels()     // act2
                           + features_ + classes();    // pool2, logits
    const int64_t bytes = floats * int64_t{sizeof(float)} + pooled1 + features_  // argmaxes
                          + 12;                                                   // loss, hit
    return chunk_for(bytes, eval_cap);
  }

  void reserve(int64_t n, bool backward) override {
    const stage& s1 = stages_[0];
    const stage& s2 = stages_[1];
    const int64_t act1 = n * s1.cout * s1.pixels(), pool1 = n * s1.cout * s1.pooled * s1.pooled;
    const int64_t act2 = n * s2.cout * s2.pixels(), pool2 = n * features_;
    grow(wk1_, s1.cout * s1.taps());
    grow(wk2_, s2.cout * s2.taps());
    grow(act1_, act1);
    grow(pool1_, pool1);
    grow(arg1_, pool1);
    grow(act2_, act2);
    grow(pool2_, pool2);
    grow(arg2_, pool2);
    grow(logits_, classes() * n);
    if (backward) {
      grow(dwk1_, s1.cout * s1.taps());
      grow(dwk2_, s2.cout * s2.taps());
      grow(dbias_, bias2_offset(s1.cout) + s2.cout);
      grow(dpool2_, pool2);
      grow(dact2_, act2);
      grow(dpool1_, pool1);
      grow(dact1_, act1);
    }
    grow(workspace_, static_cast<int64_t>(plan_for(n).workspace));
  }

  const float* forward(const float* w, const float* x, int64_t n) override {
    const stage& s1 = stages_[0];
    const stage& s2 = stages_[1];
    cudaStream_t s = stream_handle();
    // Normally prepared by reserve(); a last short chunk of evaluate() may
    // bring a new batch size (host-side setup; the workspace grows in stream
    // order, which is safe between queued kernels).
    const conv_plan& p = plan_for(n);
    void* ws = grow(workspace_, static_cast<int64_t>(p.workspace));
    const float one = 1.0f, zero = 0.0f;

    transpose(w + s1.w_offset, s1.cout, s1.taps(), wk1_.data(), s);
    transpose(w + s2.w_offset, s2.cout, s2.taps(), wk2_.data(), s);

    CHORUS_CUDNN(cudnnConvolutionForward(dnn_.get(), &one, p.x1.get(), x, w1_.get(), wk1_.data(),
                                         conv_.get(), p.fwd1, ws, p.workspace, &zero, p.y1.get(),
                                         act1_.data()));
    bias_activation(act1_.data(), w + s1.b_offset, n, s1.cout, s1.pixels(), true, s);
    max_pool2(act1_.data(), n * s1.cout, s1.side, pool1_.data(), arg1_.data(), s);

    CHORUS_CUDNN(cudnnConvolutionForward(dnn_.get(), &one, p.x2.get(), pool1_.data(), w2_.get(),
                                         wk2_.data(), conv_.get(), p.fwd2, ws, p.workspace, &zero,
                                         p.y2.get(), act2_.data()));
    bias_activation(act2_.data(), w + s2.b_offset, n, s2.cout, s2.pixels(), true, s);
    max_pool2(act2_.data(), n * s2.cout, s2.side, pool2_.data(), arg2_.data(), s);

    // logits = fc.W (classes x features) * features (features x n) + fc.b
    gemm(blas_handle(), false, false, classes(), n, features_, w + fc_w_, classes(),
         pool2_.data(), features_, logits_.data(), classes());
    bias_activation(logits_.data(), w + fc_b_, n, classes(), 1, false, s);
    return logits_.data();
  }

  void backward(const float* w, const float* x, const float* dlogits, int64_t n,
                float* g) override {
    const stage& s1 = stages_[0];
    const stage& s2 = stages_[1];
    cudaStream_t s = stream_handle();
    const conv_plan& p = plan_for(n);  // forward(n) just used it
    void* ws = workspace_.data();
    const float one = 1.0f, zero = 0.0f;

    // Dense head: fc.W's and fc.b's gradients, and the pooled features'.
    gemm(blas_handle(), false, true, classes(), features_, n, dlogits, classes(), pool2_.data(),
         features_, g + fc_w_, classes());
    row_sums(dlogits, classes(), n, g + fc_b_, s);
    gemm(blas_handle(), true, false, features_, n, classes(), w + fc_w_, classes(), dlogits,
         classes(), dpool2_.data(), features_);

    // Second stage: pooling and ReLU backward, filter and bias gradients,
    // then the gradient of its input (the first stage's pooled output).
    max_pool2_backward(act2_.data(), arg2_.data(), dpool2_.data(), n * s2.cout, s2.side,
                       dact2_.data(), s);
    CHORUS_CUDNN(cudnnConvolutionBackwardFilter(dnn_.get(), &one, p.x2.get(), pool1_.data(),
                                                p.y2.get(), dact2_.data(), conv_.get(), p.filter2,
                                                ws, p.workspace, &zero, w2_.get(), dwk2_.data()));
    transpose(dwk2_.data(), s2.taps(), s2.cout, g + s2.w_offset, s);
    // Bias gradients go to aligned scratch first: g + offset is only 4-byte
    // aligned in general, and cuDNN may reject that.
    float* db = dbias_.data();
    CHORUS_CUDNN(cudnnConvolutionBackwardBias(dnn_.get(), &one, p.y2.get(), dact2_.data(), &zero,
                                              b2_.get(), db + bias2_offset(s1.cout)));
    CHORUS_CUDNN(cudnnConvolutionBackwardData(dnn_.get(), &one, w2_.get(), wk2_.data(), p.y2.get(),
                                              dact2_.data(), conv_.get(), p.data2, ws, p.workspace,
                                              &zero, p.x2.get(), dpool1_.data()));

    // First stage: weights and bias only; the data needs no gradient.
    max_pool2_backward(act1_.data(), arg1_.data(), dpool1_.data(), n * s1.cout, s1.side,
                       dact1_.data(), s);
    CHORUS_CUDNN(cudnnConvolutionBackwardFilter(dnn_.get(), &one, p.x1.get(), x, p.y1.get(),
                                                dact1_.data(), conv_.get(), p.filter1, ws,
                                                p.workspace, &zero, w1_.get(), dwk1_.data()));
    transpose(dwk1_.data(), s1.taps(), s1.cout, g + s1.w_offset, s);
    CHORUS_CUDNN(cudnnConvolutionBackwardBias(dnn_.get(), &one, p.y1.get(), dact1_.data(), &zero,
                                              b1_.get(), db));

    CHORUS_CUDA(cudaMemcpyAsync(g + s1.b_offset, db, static_cast<size_t>(s1.cout) * sizeof(float),
                                cudaMemcpyDeviceToDevice, s));
    CHORUS_CUDA(cudaMemcpyAsync(g + s2.b_offset, db + bias2_offset(s1.cout),
                                static_cast<size_t>(s2.cout) * sizeof(float),
                                cudaMemcpyDeviceToDevice, s));
  }

  // The plan for batches of n, made on first use. Batch sizes are few (a
  // training batch, its short last batch, evaluate's chunks), so the cache
  // is a short list, cleared if it ever gets long.
  const conv_plan& plan_for(int64_t n) {
    for (const auto& entry : plans_)
      if (entry.first == n)
        return *entry.second;
    if (plans_.size() >= 16)
      plans_.clear();  // descriptors are host state: nothing on the stream uses them
    plans_.emplace_back(n, make_plan(n));
    return *plans_.back().second;
  }

  std::unique_ptr<conv_plan> make_plan(int64_t n) {
    const stage& s1 = stages_[0];
    const stage& s2 = stages_[1];
    auto p = std::make_unique<conv_plan>();
    set_nchw(p->x1, n, 1, s1.side, s1.side);
    set_nchw(p->y1, n, s1.cout, s1.side, s1.side);
    set_nchw(p->x2, n, s1.cout, s2.side, s2.side);
    set_nchw(p->y2, n, s2.cout, s2.side, s2.side);

    // Padding 1 keeps the size: check cuDNN agrees with the descriptors.
    const tensor_desc* ins[2] = {&p->x1, &p->x2};
    const filter_desc* filters[2] = {&w1_, &w2_};
    for (int i = 0; i < 2; ++i) {
      int on = 0, oc = 0, oh = 0, ow = 0;
      CHORUS_CUDNN(cudnnGetConvolution2dForwardOutputDim(conv_.get(), ins[i]->get(),
                                                         filters[i]->get(), &on, &oc, &oh, &ow));
      CHORUS_ASSERT(on == n && oc == stages_[i].cout && oh == stages_[i].side
                      && ow == stages_[i].side,
                    name() + ": cuDNN's convolution output shape differs from the model's");
    }

    cudnnHandle_t h = dnn_.get();
    int count = 0, returned = 0;
    size_t bytes = 0;
    auto need = [&](size_t b) { p->workspace = std::max(p->workspace, b); };

    CHORUS_CUDNN(cudnnGetConvolutionForwardAlgorithmMaxCount(h, &count));
    std::vector<cudnnConvolutionFwdAlgoPerf_t> fwd(static_cast<size_t>(std::max(count, 1)));
    const tensor_desc* outs[2] = {&p->y1, &p->y2};
    cudnnConvolutionFwdAlgo_t* fwd_algo[2] = {&p->fwd1, &p->fwd2};
    for (int i = 0; i < 2; ++i) {
      CHORUS_CUDNN(cudnnGetConvolutionForwardAlgorithm_v7(h, ins[i]->get(), filters[i]->get(),
                                                          conv_.get(), outs[i]->get(), count,
                                                          &returned, fwd.data()));
      *fwd_algo[i] = choose(fwd, returned, "convolution forward").algo;
      CHORUS_CUDNN(cudnnGetConvolutionForwardWorkspaceSize(h, ins[i]->get(), filters[i]->get(),
                                                           conv_.get(), outs[i]->get(),
                                                           *fwd_algo[i], &bytes));
      need(bytes);
    }

    CHORUS_CUDNN(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(h, &count));
    std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> bwf(static_cast<size_t>(std::max(count, 1)));
    cudnnConvolutionBwdFilterAlgo_t* filter_algo[2] = {&p->filter1, &p->filter2};
    for (int i = 0; i < 2; ++i) {
      CHORUS_CUDNN(cudnnGetConvolutionBackwardFilterAlgorithm_v7(
        h, ins[i]->get(), outs[i]->get(), conv_.get(), filters[i]->get(), count, &returned,
        bwf.data()));
      *filter_algo[i] = choose(bwf, returned, "convolution backward filter").algo;
      CHORUS_CUDNN(cudnnGetConvolutionBackwardFilterWorkspaceSize(
        h, ins[i]->get(), outs[i]->get(), conv_.get(), filters[i]->get(), *filter_algo[i],
        &bytes));
      need(bytes);
    }

    // Only the second convolution passes a gradient to its input.
    CHORUS_CUDNN(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(h, &count));
    std::vector<cudnnConvolutionBwdDataAlgoPerf_t> bwd(static_cast<size_t>(std::max(count, 1)));
    CHORUS_CUDNN(cudnnGetConvolutionBackwardDataAlgorithm_v7(h, w2_.get(), p->y2.get(),
                                                             conv_.get(), p->x2.get(), count,
                                                             &returned, bwd.data()));
    p->data2 = choose(bwd, returned, "convolution backward data").algo;
    CHORUS_CUDNN(cudnnGetConvolutionBackwardDataWorkspaceSize(
      h, w2_.get(), p->y2.get(), conv_.get(), p->x2.get(), p->data2, &bytes));
    need(bytes);
    return p;
  }

  // Declared first among the members, destroyed after them: the descriptors
  // and workspaces below are freed while the handle is alive.
  dnn dnn_;
  stage stages_[2];
  int64_t features_ = 0;  // C2 * H4 * H4
  int64_t fc_w_ = 0, fc_b_ = 0;

  conv_desc conv_;
  filter_desc w1_, w2_;
  tensor_desc b1_, b2_;
  std::vector<std::pair<int64_t, std::unique_ptr<conv_plan>>> plans_;

  // Filters in KCRS and their gradients; per stage the pre-pooling
  // activations (post-ReLU), pooled maps and pooling winners; the logits;
  // the backward buffers; cuDNN's workspace.
  device_array<float> wk1_, wk2_, dwk1_, dwk2_, dbias_;
  device_array<float> act1_, pool1_, act2_, pool2_, logits_;
  device_array<uint8_t> arg1_, arg2_;
  device_array<float> dpool2_, dact2_, dpool1_, dact1_;
  device_array<unsigned char> workspace_;
};

} // namespace

/// The device "cnn" / "cnn:C1,C2" around the CPU model `cpu` (built by
/// make_model, so the spec and the image shape are already checked).
std::unique_ptr<model> make_device_cnn(std::unique_ptr<model> cpu, int64_t inputs,
                                       int64_t classes, int dev) {
  const auto side = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(inputs))));
  CHORUS_ASSERT(side * side == inputs, cpu->name() + ": needs square images");
  return std::make_unique<cnn_device>(std::move(cpu), dev, side, classes);
}

} // namespace chorus::cuda_models
