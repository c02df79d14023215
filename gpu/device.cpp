// The device layer's side of the payload buffer, in every build: the table
// of device calls (gpu/cuda/device.cu or gpu/device_none.cpp) that each
// device block keeps, and the two ways to make a buffer on a device.
#include "gpu/device.hpp"

namespace chorus::device {

const device_memory_ops& memory_ops() {
  static constexpr device_memory_ops ops{&require, &allocate, &release, &copy};
  return ops;
}

mutable_buffer make_buffer(size_t n, int dev) {
  return mutable_buffer::on_device(n, dev, memory_ops());
}

buffer to_device(const buffer& x, int dev) { return x.to_device(dev, memory_ops()); }

} // namespace chorus::device
