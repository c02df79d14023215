// One rank of an NCCL communicator, behind RAII: the only place in Chorus
// that talks to NCCL (gpu/cuda/nccl_comm.cu; gpu/nccl_comm_none.cpp in a
// build without CUDA, where every call throws device_error).
//
// How a communicator forms: one party calls make_nccl_id() and hands the
// 128-byte id to every rank (in Chorus: in a CAF message, see
// actors/nccl_group.hpp); each rank then constructs an nccl_comm with it,
// on its own thread, and the constructors return once all ranks joined.
// NCCL allows one rank per GPU per communicator.
//
// Every wait on the other ranks (joining, a collective, finalizing) is a
// poll with a deadline and an optional cancel flag rather than a blocking
// NCCL or CUDA call: a rank whose peer never arrives, or died, gives up with
// a device_error instead of hanging its thread forever. A failed
// communicator is aborted at once (ncclCommAbort); every later call throws.
//
// This header has no CUDA or NCCL in it: host code uses it in every build.
// The id itself is a plain payload in messages/nccl_id.hpp.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "gpu/device.hpp"
#include "messages/buffer.hpp"
#include "messages/nccl_id.hpp"

namespace chorus {

/// A fresh unique id (ncclGetUniqueId). Throws device_error without CUDA,
/// without a GPU, or when NCCL cannot set up its bootstrap.
nccl_unique_id make_nccl_id();

/// How long an nccl_comm may wait on the other ranks, and what else makes
/// it give up.
struct nccl_wait {
  /// Longest wait for the other ranks in one call (joining, a collective,
  /// finalizing); past it the communicator aborts and the call throws.
  std::chrono::milliseconds timeout{std::chrono::minutes(2)};
  /// Optional: once this flag is true every wait gives up at once (the
  /// owner is shutting down, or another rank failed) and the communicator
  /// aborts instead of finalizing.
  std::shared_ptr<const std::atomic<bool>> cancel;
};

/// One rank of an NCCL communicator, with a non-blocking stream of its own.
/// Move-only. Not thread-safe: one thread uses it at a time (in Chorus, the
/// detached actor that owns it). Every call returns with its device work
/// finished (the project's buffer convention), so its output may be handed
/// to another actor at once.
class nccl_comm {
public:
  /// Joins the communicator `id` as `rank` of `nranks` on CUDA device
  /// `device` and returns once every rank has joined. Throws device_error
  /// (no such device, NCCL failure, timeout, cancelled) and
  /// std::invalid_argument (rank outside [0, nranks)).
  nccl_comm(const nccl_unique_id& id, int nranks, int rank, int device, nccl_wait wait = {});

  /// A one-rank communicator on `device` (makes its own id). Its
  /// all-reduce copies its input: the N-rank code path with N = 1.
  static nccl_comm single(int device, nccl_wait wait = {});

  /// Finalizes and destroys the communicator, or aborts it if a call failed,
  /// the cancel flag is set, or finalizing does not finish in time. Never
  /// throws.
  ~nccl_comm();

  nccl_comm(nccl_comm&&) noexcept;
  nccl_comm& operator=(nccl_comm&&) noexcept;
  nccl_comm(const nccl_comm&) = delete;
  nccl_comm& operator=(const nccl_comm&) = delete;

  /// out <- (1/size()) sum over ranks of each rank's `in`; every rank must
  /// call it, in the same order, with the same length. `in` and `out` are
  /// device memory on device() (they may be the same block: in place).
  /// Throws device_error (and aborts the communicator) on failure.
  void all_reduce_mean(cview in, view out);

  /// This rank's index in [0, size()).
  int rank() const;
  /// Number of ranks.
  int size() const;
  /// The CUDA device this rank runs on.
  int device() const;
  /// False once a call failed (the communicator is then aborted).
  bool healthy() const;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace chorus
