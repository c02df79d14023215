// An experiment: data -> workers -> protocol -> metrics, built from one
// config value and run to its end. This is what `chorus train` runs; tests
// and benchmarks use it too. Examples compose the same graph by hand with
// the run_graph it uses (engines/run_graph.hpp).
//
// It owns the actor system for the run and tears every actor down before it
// returns (workers, evaluator, monitor), error or not: no hang at shutdown.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "actors/injection.hpp"
#include "actors/worker.hpp"
#include "engines/protocol.hpp"
#include "data/dataset.hpp"
#include "messages/payloads.hpp"
#include "models/model.hpp"
#include "tools/interrupt.hpp"

namespace chorus {

/// Every knob of a run, with defaults that work.
struct experiment_config {
  std::string algorithm = "sync_sgd";
  int32_t workers = 4;
  std::string model = "mlp:256";
  std::string dataset = "fashion-mnist";
  std::string data_dir = default_fashion_mnist_dir;
  int64_t max_features = default_max_features;  ///< bound on a LIBSVM file's feature index
  std::string partition = "iid";
  double epochs = 10;
  int64_t steps = 0;          ///< 0: derived from epochs
  int32_t batch = 64;         ///< per worker
  /// --batch B1,B2,...: worker i's own mini-batch size (one per worker);
  /// empty: `batch` for every worker.
  std::vector<int32_t> batches;
  /// Share held out as the test set when the data has no test file
  /// (libsvm:PATH, npy:X,y); in (0, 1).
  double test_fraction = 0.2;
  double lr = 0.2;
  std::string lr_schedule = "const";  ///< eta_t = lr * s(t) (messages/lr_schedule.hpp)
  std::string reg = "none";
  uint64_t seed = 1;
  int32_t threads = 0;        ///< CAF scheduler threads; 0: auto (resolve_scheduling)
  int64_t spin_polls = 0;     ///< queue polls before an idle thread naps (actors/system.hpp); 0: auto
  int32_t combine_shards = 0; ///< slices of a round server's combine (engines/combiners.hpp); 0: auto
  std::string scheduler = "auto";  ///< CAF scheduler policy, also of started nodes (actors/system.hpp); auto: scheduler_policy
  int64_t eval_every = 0;     ///< in steps; 0: twice per epoch
  double target_acc = -1;     ///< <0: none
  int64_t timeout_ms = 60000; ///< longest wait for one worker reply
  std::string out_dir;        ///< empty: write no files
  bool overwrite = false;     ///< take out_dir over from a run that holds it (out_dir.hpp)
  bool progress = true;
  std::map<std::string, std::string> options;  ///< protocol-specific (tau, staleness_bound, ...)
  // Injected heterogeneity (actors/injection.hpp); empty: none.
  std::string slow;        ///< "3:4": worker 3 four times slower
  std::string delay;       ///< "exp:2ms", "fixed:1ms", "uniform:1ms,3ms" per step, every worker
  std::string link_delay;  ///< "1ms" one way on every worker-server link
  std::string link;        ///< the link model, "1gbit,100us" (actors/link.hpp); "": none
  std::string crash;       ///< "2:500": worker 2 dies at step 500
  std::string byzantine;   ///< "0,3:alie": workers 0 and 3 attack (engines/byzantine.hpp)
  // Where the workers compute: "eigen" (CPU) or "cuda". With cuda, worker i
  // runs on devices[i % devices.size()] (several workers share a GPU), and
  // the protocol actor and the evaluator on devices[0].
  std::string backend = "eigen";
  std::vector<int> devices{0};
  // Where the workers live (tools/cluster.hpp). None of these is sent to a
  // node: they say how to reach the nodes, not what to train.
  int32_t processes = 0;            ///< > 0: start that many local node processes
  std::vector<std::string> nodes;   ///< "host:port" of running nodes (chorus node)
  int32_t await_nodes = 0;          ///< > 0: wait for that many nodes to register (chorus node --coordinator)
  std::string listen = "127.0.0.1:0";  ///< where they register, with await_nodes
  std::string placement = "auto";  ///< auto | devices | round-robin | block | N,N,... (a node per worker)
  std::string data_plane = "auto";  ///< caf | ucx | auto: how large buffers cross (resolve_data_plane)
  std::string node_program;         ///< the chorus binary for --processes; empty: this one
  std::string tls_cert, tls_key, tls_ca, tls_passphrase;  ///< mutual TLS to the nodes
  bool insecure = false;            ///< plain connections to non-loopback nodes
};

/// What load_dataset needs from cfg (data dir, seed, --max-features,
/// --test-fraction).
dataset_options data_options(const experiment_config& cfg);

/// Worker `rank`'s mini-batch size: batches[rank] when --batch gave a list,
/// else batch.
int32_t batch_of(const experiment_config& cfg, int32_t rank);

/// --batch's value for cfg: "64", or "32,64,128,256" for a list.
std::string batch_spec(const experiment_config& cfg);

/// Checks every value; throws std::invalid_argument with a clear message.
/// Returns the injections it parsed, one per worker.
std::vector<injection> validate(const experiment_config& cfg);

/// Whether the workers live in other processes (--processes or --nodes).
inline bool distributed(const experiment_config& cfg) {
  return cfg.processes > 0 || !cfg.nodes.empty() || cfg.await_nodes > 0;
}

/// The CAF scheduler policy of this process and of the nodes `--processes`
/// starts: --scheduler as given, and for auto (the default) "sharing" when
/// the workers are in other processes, "stealing" in one process. Across
/// processes each round waits on messages from the network, and a stealing
/// thread that waits naps 50 us at a time and wakes to poll (CAF's moderate
/// phase), which also takes the cores from the other processes' workers;
/// sharing threads sleep until a message comes. Measured
/// (bench/cluster_round.py, 2026-12-03, 2 cores): allreduce_sgd MLP
/// 784-256-10 over 2 processes, medians of 6 interleaved runs, 44.8k against
/// 30.9k samples/s; see README, "Across processes and hosts".
std::string scheduler_policy(const experiment_config& cfg);

/// The scheduler a run gets: its threads, how long idle threads poll before
/// they nap (actors/system.hpp), and why, in words for the log and
/// config.json.
struct scheduling_choice {
  int32_t threads = 1;
  int64_t spin_polls = 100;
  std::string policy = "stealing";  ///< scheduler_policy(cfg)
  std::string reason;
};

/// Resolves --threads auto (the cores this process may use: its CPU
/// affinity) and --spin-polls auto (lockstep_spin_polls for a protocol that
/// waits for every worker each step, run in one process with at least a
/// thread per worker; CAF's default otherwise); explicit values stay.
/// Polling also needs the workers' cores idle: the tasks runnable now
/// besides this process (/proc/loadavg) plus the workers at most the cores
/// (+0.5), so a busy machine (a parallel test suite, other jobs) does not
/// lose time to spinning threads.
scheduling_choice resolve_scheduling(const experiment_config& cfg);

/// The same for a machine with `cores` usable cores and `load` other
/// runnable tasks (what the one above reads from the system).
scheduling_choice resolve_scheduling(const experiment_config& cfg, int32_t cores, double load);

/// The cores this process may run on (its CPU affinity mask; `nproc`).
int32_t usable_cores();

/// The sample indices of each worker: the partition, then the protocol's
/// resharding (RI-SGD). Deterministic in cfg (its seed): a node computes the
/// same shards as the coordinator.
partition plan_partition(const experiment_config& cfg, const dataset& train);

/// Worker `rank`'s config in a run of cfg on `data` with shards `parts`.
worker_config make_worker_config(const experiment_config& cfg, const train_test& data,
                                 const partition& parts, const std::vector<injection>& injections,
                                 int32_t rank);

/// The wiring of cfg's protocol but its actors (workers, evaluator and
/// monitor are the caller's): the completed plan, the shard sizes and
/// shards, the backend and w_0 (from the seed, so equal in every process).
run_context make_context(const experiment_config& cfg, const train_test& data,
                         const partition& parts);

/// The config as a JSON object (what config.json holds).
std::string to_json(const experiment_config& cfg);

/// What a finished experiment hands back.
struct experiment_result {
  run_summary summary;
  std::vector<param_tensor> layout;  ///< shapes inside final_weights
  int64_t train_size = 0;
  int64_t test_size = 0;
  int64_t steps_planned = 0;     ///< 0: counted in samples instead
  int64_t samples_planned = 0;   ///< 0: counted in steps instead
  int64_t eval_every = 0;        ///< in steps (0: by samples)
  int64_t eval_every_samples = 0;
  std::string injected;  ///< what was injected into which worker ("" for nothing)
  std::string nodes_json;  ///< per node: workers, bytes each way (JSON array; "" in one process)
};

/// Runs the experiment. Throws std::invalid_argument (bad config, or
/// out_dir in use by another run), data_error (bad data) or
/// std::runtime_error (the protocol failed; the message says why). Writes
/// OUT/{config.json, metrics.jsonl, log.txt, model.npy, summary.json (the
/// summary line, last)} when out_dir is set,
/// holding a lock on OUT meanwhile. A request on `stop` ends the run after
/// its current step, as a finished run, with stop_reason "interrupted".
experiment_result run_experiment(const experiment_config& cfg, stop_switch* stop = nullptr);

/// Runs on data already in memory (tests, benchmarks, embedding code).
experiment_result run_experiment(const experiment_config& cfg, const train_test& data,
                                 stop_switch* stop = nullptr);

/// The summary line `chorus train` prints last (one JSON object).
std::string summary_json(const experiment_config& cfg, const experiment_result& r);

} // namespace chorus
