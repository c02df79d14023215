#include "engines/combiners.hpp"

#include <algorithm>
#include <exception>

#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>

#include "messages/errors.hpp"

namespace chorus {

std::vector<size_t> slice_bounds(size_t n, size_t parts, size_t align) {
  parts = std::max<size_t>(parts, 1);
  align = std::max<size_t>(align, 1);
  const size_t units = (n + align - 1) / align;  // whole aligned blocks, the last maybe short
  std::vector<size_t> bounds(parts + 1, n);
  bounds[0] = 0;
  for (size_t s = 1; s < parts; ++s)
    bounds[s] = std::min(n, (units * s / parts) * align);
  return bounds;
}

size_t combine_slices(size_t requested, size_t n, size_t threads, size_t min_slice) {
  if (requested > 0)
    return requested;
  const size_t by_size = n / std::max<size_t>(min_slice, 1);
  return std::max<size_t>(1, std::min(threads, by_size));
}

caf::expected<bool> run_slice(backend& be, const sliced_task& task, size_t s) {
  try {
    return task.run(be, task.bounds.at(s), task.bounds.at(s + 1));
  } catch (const std::exception& e) {
    return make_error(errc::compute_failed, e.what());
  }
}

namespace {

struct combiner_state {
  std::unique_ptr<backend> be;
};

template <class Board>
caf::behavior combiner(caf::stateful_actor<combiner_state>* self, caf::actor owner,
                       std::shared_ptr<Board> board, std::string backend_name, int device) {
  self->state.be = make_backend(backend_name, device);
  self->monitor(owner);
  self->set_down_handler([self](caf::down_msg&) { self->quit(); });
  return {
    [self, board](combine_atom, uint64_t s) -> caf::result<bool> {
      auto task = board->task;
      if (!task)
        return make_error(errc::compute_failed, "a combiner was asked before it had a task");
      auto result = run_slice(*self->state.be, *task, static_cast<size_t>(s));
      if (!result)
        return result.error();
      return *result;
    },
  };
}

} // namespace

combiner_pool::combiner_pool(caf::actor_system& sys, const caf::actor& owner, size_t helpers,
                             const std::string& backend_name, int device) {
  helpers_.reserve(helpers);
  for (size_t i = 0; i < helpers; ++i)
    helpers_.push_back(sys.spawn(combiner<board>, owner, board_, backend_name, device));
}

} // namespace chorus
