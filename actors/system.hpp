// How Chorus sets up a CAF actor system: its message types, its scheduler
// threads, and how those threads wait for work.
//
// CAF 0.17's work-stealing threads poll their queue 100 times, then nap 50 us
// between polls (500 times), then 10 ms. A synchronous round is a few hops
// between threads, and a hop to a napping thread waits out the nap: with
// 2 workers on 2 cores that cost sync_sgd about a third of its throughput
// (131-144k samples/s with CAF's default, 188-207k polling 100000 times; MLP
// 784-256-10, batch 64, Fashion-MNIST). Chorus therefore lets an idle thread
// poll for a few milliseconds (100000 attempts) before it naps, as NCCL and
// MPI progress loops do; an idle run still goes quiet after that.
#pragma once

#include <cstddef>

#include <caf/actor_system_config.hpp>

namespace chorus {

/// Queue polls before an idle scheduler thread starts to nap (CAF: 100).
constexpr size_t default_spin_polls = 100000;

/// How long idle scheduler threads poll before they nap; CLI arguments that
/// CAF parses later (--work-stealing.aggressive-poll-attempts) still win.
void configure_polling(caf::actor_system_config& cfg, size_t spin_polls = default_spin_polls);

/// `threads` scheduler threads, Chorus's message types, and the polling above:
/// what the runner, the benchmarks and the tests use.
void configure_actor_system(caf::actor_system_config& cfg, size_t threads,
                            size_t spin_polls = default_spin_polls);

} // namespace chorus
