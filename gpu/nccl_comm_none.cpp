// nccl_comm in a build without CUDA: every way to make one, and every
// call, is a clear device_error instead of a crash or a link error.
#include "gpu/nccl_comm.hpp"

#include <string>

#include "gpu/device.hpp"

namespace chorus {

namespace {
// NCCL comes with the CUDA backend: without it, every call says so.
[[noreturn]] void unavailable(const char* what) {
  device::unavailable(std::string(what) + " (NCCL)");
}
} // namespace

struct nccl_comm::impl {};

nccl_unique_id make_nccl_id() { unavailable("make_nccl_id"); }

nccl_comm::nccl_comm(const nccl_unique_id&, int, int, int, nccl_wait) { unavailable("nccl_comm"); }

nccl_comm nccl_comm::single(int, nccl_wait) { unavailable("nccl_comm::single"); }

nccl_comm::~nccl_comm() = default;
nccl_comm::nccl_comm(nccl_comm&&) noexcept = default;
nccl_comm& nccl_comm::operator=(nccl_comm&&) noexcept = default;

void nccl_comm::all_reduce_mean(cview, view) { unavailable("nccl_comm::all_reduce_mean"); }

int nccl_comm::rank() const { return -1; }
int nccl_comm::size() const { return 0; }
int nccl_comm::device() const { return -1; }
bool nccl_comm::healthy() const { return false; }

} // namespace chorus
