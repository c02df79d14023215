// nccl_comm on NCCL (see gpu/nccl_comm.hpp for the contract).
//
// The communicator is created non-blocking (ncclConfig_t::blocking = 0):
// NCCL calls return at once, possibly with ncclInProgress, and this file
// polls ncclCommGetAsyncError (and, for a collective, cudaStreamQuery on
// the rank's stream) until the work is done, an error shows up, the
// deadline passes or the cancel flag is raised. A blocking communicator
// would leave a thread stuck inside NCCL for as long as a peer is missing;
// this way a missing or dead peer costs at most the timeout, and the
// caller gets a device_error naming the call instead of a hang.
//
// The mean uses ncclAvg where the NCCL library loaded at run time has it
// (2.10 and later; for floats NCCL pre-multiplies by 1/nranks), else ncclSum
// followed by a scale kernel on the same stream.
#include <cuda_runtime.h>
#include <nccl.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>

#include "gpu/cuda/check.hpp"
#include "gpu/nccl_comm.hpp"

static_assert(sizeof(ncclUniqueId) == chorus::nccl_unique_id::size,
              "nccl_unique_id must hold exactly one ncclUniqueId");

namespace chorus {

namespace {

__global__ void scale_kernel(float a, float* __restrict__ y, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x)
    y[i] *= a;
}

// ncclAvg exists from NCCL 2.10 on; ask the library actually loaded, not
// the header this file was compiled against.
bool library_has_avg() {
  static const bool has = [] {
    int version = 0;
    if (ncclGetVersion(&version) != ncclSuccess)
      return false;
    return version >= NCCL_VERSION(2, 10, 0);
  }();
  return has;
}

std::string nccl_text(ncclResult_t r, ncclComm_t comm) {
  std::string out = ncclGetErrorString(r);
  // ncclGetLastError holds NCCL's own explanation (which peer, which
  // transport); it may be empty.
  const char* last = ncclGetLastError(comm);
  if (last != nullptr && *last != '\0')
    out += std::string(" (") + last + ")";
  return out;
}

// Poll backoff: spin (yielding) through the first polls, which covers a
// collective of ordinary size, then sleep briefly so a long wait does not
// burn a core.
void backoff(long polls) {
  if (polls < 2000)
    std::this_thread::yield();
  else
    std::this_thread::sleep_for(std::chrono::microseconds(polls < 20000 ? 50 : 500));
}

} // namespace

nccl_unique_id make_nccl_id() {
  // An id without a GPU to use it would only defer the failure.
  if (device::count() == 0)
    throw device_error("make_nccl_id: no CUDA device is visible");
  ncclUniqueId raw;
  CHORUS_NCCL(ncclGetUniqueId(&raw));
  nccl_unique_id id;
  std::memcpy(id.bytes.data(), &raw, sizeof(raw));
  return id;
}

struct nccl_comm::impl {
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  int rank = 0;
  int size = 0;
  int device = -1;
  nccl_wait wait;
  bool failed = false;

  bool cancelled() const { return wait.cancel && wait.cancel->load(std::memory_order_acquire); }

  // Aborts the communicator and throws: after an error nothing can be
  // assumed about operations enqueued on it, so it is not used again.
  [[noreturn]] void fail(const char* call, const std::string& why) {
    failed = true;
    abort_comm();
    throw device_error("nccl rank " + std::to_string(rank) + "/" + std::to_string(size)
                       + " on device " + std::to_string(device) + ": " + call + ": " + why);
  }

  [[noreturn]] void fail(const char* call, ncclResult_t r) { fail(call, nccl_text(r, comm)); }

  void abort_comm() noexcept {
    if (comm == nullptr)
      return;
    cudaSetDevice(device);
    // Not checked on purpose: a non-blocking communicator may answer
    // ncclInProgress while NCCL finishes the teardown in the background, and
    // this runs in destructors, which must not throw. Nothing uses comm after.
    ncclCommAbort(comm);
    comm = nullptr;
  }

  // Polls until `done()` holds: the communicator's state must be
  // ncclSuccess (not in progress, no asynchronous error) and `done` true.
  // Gives up, aborting, on an error, at the deadline, or when cancelled.
  template <class Done>
  void await(const char* call, Done done) {
    const auto deadline = std::chrono::steady_clock::now() + wait.timeout;
    for (long polls = 0;; ++polls) {
      ncclResult_t state = ncclSuccess;
      ncclResult_t r = ncclCommGetAsyncError(comm, &state);
      if (r != ncclSuccess)
        fail(call, r);
      if (state != ncclSuccess && state != ncclInProgress)
        fail(call, state);
      if (state == ncclSuccess && done())
        return;
      if (cancelled())
        fail(call, "cancelled (the group is shutting down, or another rank failed)");
      if (std::chrono::steady_clock::now() > deadline)
        fail(call, "timed out after " + std::to_string(wait.timeout.count())
                     + " ms waiting for the other ranks");
      backoff(polls);
    }
  }

  // The stream's work has finished (a CUDA error there is a failure too).
  bool stream_idle() {
    cudaError_t s = cudaStreamQuery(stream);
    if (s == cudaErrorNotReady)
      return false;
    if (s != cudaSuccess)
      fail("cudaStreamQuery", cudaGetErrorString(s));
    return true;
  }

  ~impl() {
    // Destructors must not throw: teardown errors are ignored.
    if (device >= 0)
      cudaSetDevice(device);
    if (comm != nullptr) {
      bool finalized = false;
      if (!failed && !cancelled()) {
        // Finalize first (flushes outstanding work; an intra-node
        // collective, done by every rank as the group shuts down), then
        // destroy locally. A finalize that does not finish in time means a
        // peer is gone: abort instead.
        ncclResult_t r = ncclCommFinalize(comm);
        if (r == ncclSuccess || r == ncclInProgress) {
          try {
            await("ncclCommFinalize", [] { return true; });
            finalized = true;
          } catch (const device_error&) {
            // await aborted the communicator
          }
        }
      }
      if (finalized)
        ncclCommDestroy(comm);  // unchecked, as ncclCommAbort above
      else
        abort_comm();  // a no-op if await already aborted it
      comm = nullptr;
    }
    if (stream != nullptr)
      cudaStreamDestroy(stream);
    cudaGetLastError();
  }
};

nccl_comm::nccl_comm(const nccl_unique_id& id, int nranks, int rank, int dev, nccl_wait wait)
  : impl_(std::make_unique<impl>()) {
  if (nranks < 1 || rank < 0 || rank >= nranks)
    throw std::invalid_argument("nccl_comm: rank " + std::to_string(rank) + " of "
                                + std::to_string(nranks) + " ranks");
  device::require(dev, "nccl_comm");
  auto& p = *impl_;
  p.rank = rank;
  p.size = nranks;
  p.device = dev;
  p.wait = std::move(wait);
  // If anything below throws, impl's destructor (run because impl_ is a
  // fully constructed member) aborts what was created.
  CHORUS_CUDA(cudaSetDevice(dev));
  CHORUS_CUDA(cudaStreamCreateWithFlags(&p.stream, cudaStreamNonBlocking));
  ncclUniqueId raw;
  std::memcpy(&raw, id.bytes.data(), sizeof(raw));
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  ncclResult_t r = ncclCommInitRankConfig(&p.comm, nranks, raw, rank, &config);
  if (r != ncclSuccess && r != ncclInProgress)
    p.fail("ncclCommInitRankConfig", r);
  // Joining completes when every rank has called in.
  p.await("ncclCommInitRankConfig", [] { return true; });
}

nccl_comm nccl_comm::single(int dev, nccl_wait wait) {
  return nccl_comm(make_nccl_id(), 1, 0, dev, std::move(wait));
}

nccl_comm::~nccl_comm() = default;
nccl_comm::nccl_comm(nccl_comm&&) noexcept = default;
nccl_comm& nccl_comm::operator=(nccl_comm&&) noexcept = default;

void nccl_comm::all_reduce_mean(cview in, view out) {
  if (!impl_)
    throw std::logic_error("nccl_comm: used after being moved from");
  auto& p = *impl_;
  if (p.comm == nullptr)
    throw device_error("nccl rank " + std::to_string(p.rank) + " on device "
                       + std::to_string(p.device)
                       + ": the communicator was aborted after an earlier failure");
  if (in.size != out.size)
    throw std::invalid_argument("all_reduce_mean: input has " + std::to_string(in.size)
                                + " floats, output " + std::to_string(out.size));
  if (out.size == 0)
    return;  // every rank has the same length, so every rank skips
  if (in.kind != memory_kind::device || out.kind != memory_kind::device)
    throw std::invalid_argument("all_reduce_mean: NCCL needs device memory (copy the buffer "
                                "to device " + std::to_string(p.device) + " first)");
  for (const void* ptr : {static_cast<const void*>(in.data), static_cast<const void*>(out.data)}) {
    cudaPointerAttributes at{};
    CHORUS_CUDA(cudaPointerGetAttributes(&at, ptr));
    if (at.type != cudaMemoryTypeDevice || at.device != p.device)
      throw std::invalid_argument("all_reduce_mean: a buffer on device " + std::to_string(at.device)
                                  + " given to the rank on device " + std::to_string(p.device));
  }
  CHORUS_CUDA(cudaSetDevice(p.device));
  const bool avg = library_has_avg();
  ncclResult_t r = ncclAllReduce(in.data, out.data, out.size, ncclFloat32, avg ? ncclAvg : ncclSum,
                                 p.comm, p.stream);
  if (r != ncclSuccess && r != ncclInProgress)
    p.fail("ncclAllReduce", r);
  if (r == ncclInProgress) {
    // Still being enqueued: nothing else may go on the stream before the
    // state reaches ncclSuccess.
    p.await("ncclAllReduce", [] { return true; });
  }
  if (!avg && p.size > 1) {
    const int threads = 256;
    const int blocks =
      static_cast<int>(std::min<size_t>((out.size + threads - 1) / threads, 1024));
    scale_kernel<<<blocks, threads, 0, p.stream>>>(1.0f / static_cast<float>(p.size), out.data,
                                                   out.size);
    cudaError_t launch = cudaGetLastError();
    if (launch != cudaSuccess)
      p.fail("scale_kernel", cudaGetErrorString(launch));
  }
  // The result is ready when the stream has drained; meanwhile a peer's
  // failure shows up as an asynchronous error.
  p.await("ncclAllReduce", [&p] { return p.stream_idle(); });
}

int nccl_comm::rank() const { return impl_ ? impl_->rank : -1; }
int nccl_comm::size() const { return impl_ ? impl_->size : 0; }
int nccl_comm::device() const { return impl_ ? impl_->device : -1; }
bool nccl_comm::healthy() const { return impl_ && impl_->comm != nullptr && !impl_->failed; }

} // namespace chorus
