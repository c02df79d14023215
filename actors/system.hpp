// How Chorus sets up a CAF actor system: its message types, its scheduler
// threads, and how those threads wait for work.
//
// CAF 0.17's work-stealing threads poll their queue 100 times, then nap 50 us
// between polls (500 times), then 10 ms. A synchronous round is a few hops
// between threads, and a hop to a napping thread waits out the nap: with
// 2 workers on 2 cores sync_sgd runs at 131-144k samples/s with CAF's
// default and 186-203k when idle threads poll 100000 times first (MLP
// 784-256-10, batch 64, Fashion-MNIST, one host and session).
//
// Polling longer is not the library's default, because it costs fairness:
// an idle thread that polls also tries to steal every 10 polls, and that
// churn left async_gossip's peers starved in 3 of 30 runs (18 .. 1136 local
// steps per peer where 300 each was due); with CAF's default 0 of 30. So
// configure_actor_system polls only when asked (spin_polls), and then a
// polling thread steals only every 1000 polls (0 of 70 runs unfair,
// throughput as above). `chorus train` asks per run (--spin-polls auto,
// tools/experiment.hpp resolve_scheduling): lockstep_spin_polls for a
// protocol with a barrier every step and a thread per worker, in one
// process; CAF's default for everything else.
//
// The scheduler policy is a second lever (configure_scheduler, `chorus train
// --scheduler`, experimental): with "sharing" all threads take work from one
// locked queue and idle ones sleep on a condition variable, so a message that
// arrives from the network wakes a thread at once instead of after a nap. A
// small CAF round trip between two processes takes 33 us with sharing on
// both ends against 245 us with work stealing (bench/remote_payload.cpp);
// a sync_sgd round over `--processes 2` on a shared 2-core VM: 0.29 against
// 0.43 ms for a 50 KB model, 2.5 against 2.9 ms for 1 MB, but 164 against
// 103 ms for 16 MB (bench/cluster_round.py). `chorus train --scheduler auto`
// (the default) takes sharing when the workers are in other processes
// (tools/experiment.hpp scheduler_policy), stealing in one process.
#pragma once

#include <cstddef>
#include <string>

#include <caf/actor_system_config.hpp>

namespace chorus {

/// Queue polls before an idle scheduler thread starts to nap: CAF's own
/// default, which keeps asynchronous protocols fair.
constexpr size_t default_spin_polls = 100;

/// What `--spin-polls auto` gives a protocol that waits for every worker at
/// each step when each worker has a thread.
constexpr size_t lockstep_spin_polls = 100000;

/// How long idle scheduler threads poll before they nap (see above); CLI
/// arguments that CAF parses later (--work-stealing.*) still win.
void configure_polling(caf::actor_system_config& cfg, size_t spin_polls = default_spin_polls);

/// CAF's scheduler policy: "stealing" (CAF's default: a queue per thread,
/// idle threads poll, then steal) or "sharing" (one shared queue, idle threads
/// sleep on a condition variable until work arrives). Throws
/// std::invalid_argument for any other name.
void configure_scheduler(caf::actor_system_config& cfg, const std::string& policy);

/// `threads` scheduler threads, Chorus's message types, and the polling above:
/// what the runner, the benchmarks and the tests use.
void configure_actor_system(caf::actor_system_config& cfg, size_t threads,
                            size_t spin_polls = default_spin_polls);

} // namespace chorus
