// Sharded combine: a round's update split by coordinates over actors, so the
// serial part of a synchronous round runs on every core (issue 16).
//
// A round server's combine (w+ = Prox(w - eta mean_i g_i), the model mean of
// local SGD, a coordinate-wise robust rule) is element-wise: coordinate j of
// w+ needs coordinate j of w and of each reply, nothing else. So [0, d) is
// cut into K slices and each slice is computed by a different actor, as a
// parameter server with K servers each owning a slice of w would; here the
// K "servers" share one address space, so the replies and the output stay
// one buffer each and nothing is copied: every combiner reads its slice of
// the same shared immutable buffers and writes its slice of one output
// block, which is frozen (published) once all have answered.
//
// The owner computes slice 0 itself while K-1 combiner actors compute the
// others; during a synchronous combine every worker is waiting at the
// barrier, so the scheduler threads they would use are free.
//
// Slices are cut at multiples of 1024 floats (4 KB): whole cache lines and
// whole vectors of any width, so each coordinate sees the same instructions
// as in the unsplit combine and the result is bit for bit the same.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/error.hpp>

#include "gpu/backend.hpp"
#include "messages/atoms.hpp"

namespace chorus {

/// One piece of work split by coordinates: slice s is [bounds[s],
/// bounds[s+1]). run(be, lo, hi) computes one slice with backend `be` and
/// returns whether what it wrote is finite; it may throw.
struct sliced_task {
  std::vector<size_t> bounds;
  std::function<bool(backend&, size_t lo, size_t hi)> run;
  size_t slices() const { return bounds.empty() ? 0 : bounds.size() - 1; }
};

/// Where `parts` slices of [0, n) begin and end: parts + 1 bounds, inner
/// bounds at multiples of `align` floats, slices as even as that allows
/// (trailing slices may be empty for a small n).
std::vector<size_t> slice_bounds(size_t n, size_t parts, size_t align = 1024);

/// How many slices a combine of `n` floats is split into. `requested`: 0 =
/// auto: one per scheduler thread (`threads`) as long as each slice keeps at
/// least `min_slice` floats (below that the two messages per slice cost
/// more than the slice's memory traffic); 1 = never split; K = exactly K.
size_t combine_slices(size_t requested, size_t n, size_t threads, size_t min_slice = 32768);

/// Runs slice `s` of `task` on `be`, turning an exception into an error.
caf::expected<bool> run_slice(backend& be, const sliced_task& task, size_t s);

/// K-1 combiner actors working for one owner (a round server). Each has a
/// backend of its own and quits when the owner goes down.
class combiner_pool {
public:
  combiner_pool() = default;
  /// Spawns `helpers` combiners for `owner` with backends `backend_name`
  /// on `device`.
  combiner_pool(caf::actor_system& sys, const caf::actor& owner, size_t helpers,
                const std::string& backend_name, int device);

  size_t helpers() const { return helpers_.size(); }

  /// Runs `task` (at most helpers() + 1 slices): slices 1.. on the
  /// combiners, slice 0 on `self` with `be`, now; then, in self's context,
  /// done(finite) once every slice is computed (finite: all of them wrote
  /// finite values), or failed(error) once, for the first slice that threw.
  /// The task stays alive until every slice is done, even if self is not.
  template <class Self, class Done, class Failed>
  void run(Self self, backend& be, std::shared_ptr<const sliced_task> task, Done done,
           Failed failed) {
    struct progress {
      size_t pending;
      std::function<void(bool)> done;
      std::function<void(const caf::error&)> failed;
      bool finite = true;
      bool failed_once = false;
    };
    const size_t slices = task->slices();
    auto left = std::make_shared<progress>(progress{slices, std::move(done), std::move(failed)});
    // Each combiner reads the task from the board when our message reaches
    // it; the mailbox orders this write before that read.
    board_->task = task;
    auto settle = [left](caf::expected<bool> result) {
      if (left->failed_once)
        return;
      if (!result) {
        left->failed_once = true;
        left->failed(result.error());
        return;
      }
      left->finite = left->finite && *result;
      if (--left->pending == 0)
        left->done(left->finite);
    };
    for (size_t s = 1; s < slices; ++s)
      self->request(helpers_.at(s - 1), caf::infinite, combine_atom_v, static_cast<uint64_t>(s))
        .then([settle](bool finite) { settle(finite); },
              [settle](caf::error& err) { settle(std::move(err)); });
    settle(run_slice(be, *task, 0));
  }

private:
  struct board {
    std::shared_ptr<const sliced_task> task;
  };
  std::shared_ptr<board> board_ = std::make_shared<board>();
  std::vector<caf::actor> helpers_;
};

} // namespace chorus
