// The worker: a compute service over one model replica and one data shard.
//
// It answers requests (gradient at w, k local steps from w, evaluate w,
// apply/fetch its replica's weights) and knows nothing about which protocol
// is asking. Its state: the model (with scratch space), the shard's indices,
// a seeded RNG for the sampling order, a backend, and the replica.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <caf/actor_system.hpp>

#include "actors/injection.hpp"
#include "actors/interfaces.hpp"
#include "data/dataset.hpp"
#include "gpu/backend.hpp"
#include "models/model.hpp"

namespace chorus {

/// How a worker walks through its shard.
enum class sampling {
  shuffle,     ///< a fresh seeded permutation every pass (the default)
  sequential,  ///< the shard's own order, wrapping around (for exact tests)
};

/// Everything a worker is built from.
struct worker_config {
  int32_t rank = 0;
  std::string model = "softmax";  ///< model spec (see make_model)
  dataset_ptr data;               ///< shared, immutable
  std::vector<int64_t> shard;     ///< indices into data; empty = all of it
  int32_t batch = 64;
  uint64_t seed = 1;
  sampling order = sampling::shuffle;
  injection inject;  ///< slowdown, delays, crash (none by default)
  /// Where it computes: "eigen" (CPU) or "cuda" (GPU `device`). A cuda
  /// worker's model, gradients and local models live on its device; weights
  /// that arrive in host memory are copied there once per request.
  std::string backend = "eigen";
  int device = 0;
};

/// Spawns a worker (detached when something is injected, so it has its own
/// thread as on its own machine, or when it computes on a GPU, so its stream
/// waits never hold a scheduler thread). Injected waits hold its replies
/// back on the actor clock; it never sleeps, and an exit ends it at once.
/// Throws std::invalid_argument for a bad config (unknown model or backend,
/// batch <= 0, empty dataset, index out of range), device_error when the
/// GPU it asks for is not there, before any actor exists, so callers get the
/// error where they made the mistake.
worker_actor spawn_worker(caf::actor_system& sys, worker_config cfg);

} // namespace chorus
