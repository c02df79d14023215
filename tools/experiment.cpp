#include "tools/experiment.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <optional>
#include <random>
#include <stdexcept>
#include <thread>

#include <sched.h>
#include <unistd.h>

#include <caf/all.hpp>

#include "actors/injection.hpp"
#include "actors/link.hpp"
#include "actors/system.hpp"
#include "algorithms/compressed_link.hpp"
#include "algorithms/registry.hpp"
#include "engines/byzantine.hpp"
#include "engines/gossip.hpp"
#include "engines/run_graph.hpp"
#include "data/npy.hpp"
#include "gpu/device.hpp"
#include "messages/json.hpp"
#include "messages/lr_schedule.hpp"
#include "messages/type_ids.hpp"
#include "tools/cluster.hpp"
#include "tools/memory.hpp"
#include "tools/options.hpp"
#include "tools/out_dir.hpp"

namespace chorus {

namespace {

void require(bool ok, const std::string& what) {
  if (!ok)
    throw std::invalid_argument(what);
}

std::string short_number(double x);

// With --steps the run is counted in protocol steps; otherwise in samples
// (epochs * training set), which means the same for every protocol: a sync
// round processes N batches, an async update one.
// The count is capped at 2^53 (every integer below is exact as a double, and
// the counters that add batches to it have room): more is a typo, and the
// cast of a larger double to int64 would be undefined.
int64_t max_samples_for(const experiment_config& cfg, int64_t train_size) {
  if (cfg.steps > 0)
    return 0;
  constexpr double max_samples = 9007199254740992.0;  // 2^53
  const double samples = std::ceil(cfg.epochs * static_cast<double>(train_size));
  if (!(samples <= max_samples))
    throw std::invalid_argument("--epochs " + short_number(cfg.epochs) + " over " +
                                std::to_string(train_size) + " training samples asks for " +
                                short_number(samples) + " samples, more than 2^53; use fewer " +
                                "epochs, or --steps");
  return std::max<int64_t>(1, static_cast<int64_t>(samples));
}

std::string layout_json(const std::vector<param_tensor>& layout) {
  std::string out = "[";
  for (size_t i = 0; i < layout.size(); ++i) {
    json_object o;
    o.add("name", layout[i].name)
      .raw("shape", json_int_array(layout[i].shape))
      .add("offset", layout[i].offset);
    out += (i ? "," : "") + o.str();
  }
  return out + "]";
}

std::string short_number(double x) {
  char text[32];
  std::snprintf(text, sizeof(text), "%g", x);
  return text;
}

} // namespace

dataset_options data_options(const experiment_config& cfg) {
  dataset_options opts;
  opts.data_dir = cfg.data_dir;
  opts.seed = cfg.seed;
  opts.max_features = cfg.max_features;
  opts.test_fraction = cfg.test_fraction;
  return opts;
}

int32_t batch_of(const experiment_config& cfg, int32_t rank) {
  return cfg.batches.empty() ? cfg.batch : cfg.batches.at(static_cast<size_t>(rank));
}

std::string batch_spec(const experiment_config& cfg) {
  if (cfg.batches.empty())
    return std::to_string(cfg.batch);
  std::string out;
  for (auto b : cfg.batches)
    out += (out.empty() ? "" : ",") + std::to_string(b);
  return out;
}

std::vector<injection> validate(const experiment_config& cfg) {
  require(cfg.workers >= 1, "--workers must be at least 1 (got " + std::to_string(cfg.workers) + ")");
  require(cfg.workers <= 4096, "--workers must be at most 4096");
  require(cfg.batch >= 1, "--batch must be at least 1 (got " + std::to_string(cfg.batch) + ")");
  require(cfg.batches.empty() || cfg.batches.size() == static_cast<size_t>(cfg.workers),
          "--batch " + batch_spec(cfg).substr(0, 80) + " lists " + std::to_string(cfg.batches.size())
            + " batch sizes for " + std::to_string(cfg.workers)
            + " workers (give one size for all, or exactly one per worker)");
  for (auto b : cfg.batches)
    require(b >= 1, "--batch: every batch size must be at least 1 (got " + std::to_string(b) + ")");
  require(cfg.batches.empty()
            || std::equal(cfg.batches.begin() + 1, cfg.batches.end(), cfg.batches.begin())
            || cfg.options.count("allreduce") == 0 || cfg.options.at("allreduce") == "none",
          "--batch with different sizes needs --allreduce none (the NCCL all-reduce averages the "
          "gradients unweighted; the server weights them by samples)");
  require(std::isfinite(cfg.test_fraction) && cfg.test_fraction > 0 && cfg.test_fraction < 1,
          "--test-fraction must be in (0, 1) (got " + short_number(cfg.test_fraction) + ")");
  // Protocols take the step size as a float: a larger double has no float value.
  require(std::isfinite(cfg.lr) && cfg.lr > 0 && cfg.lr <= std::numeric_limits<float>::max(),
          "--lr must be a finite number > 0 (at most 3.4e38)");
  require(std::isfinite(cfg.epochs) && cfg.epochs > 0, "--epochs must be > 0");
  require(!lr_schedule::parse(cfg.lr_schedule).needs_horizon() || cfg.steps > 0,
          "--lr-schedule " + cfg.lr_schedule + " decays over the run's length: give --steps");
  require(cfg.steps >= 0, "--steps must be >= 0 (0: derived from --epochs)");
  require(cfg.threads >= 0 && cfg.threads <= 256, "--threads must be auto or between 1 and 256");
  require(cfg.spin_polls >= 0 && cfg.spin_polls <= 1000000000,
          "--spin-polls must be auto or between 1 and 1e9 (CAF's own default is 100)");
  require(cfg.scheduler == "auto" || cfg.scheduler == "stealing" || cfg.scheduler == "sharing",
          "unknown scheduler '" + cfg.scheduler.substr(0, 40) + "' (valid: auto, stealing, sharing)");
  require(cfg.eval_every >= 0, "--eval-every must be >= 0");
  require(cfg.max_features >= 1 && cfg.max_features <= max_sparse_features,
          "--max-features must be between 1 and " + std::to_string(max_sparse_features));
  require(cfg.target_acc < 0 || cfg.target_acc <= 1, "--target-acc must be in [0, 1]");
  require(cfg.timeout_ms > 0, "--timeout must be > 0");
  regularizer::parse(cfg.reg);  // throws with the valid forms
  require(cfg.backend == "eigen" || cfg.backend == "cuda",
          "unknown backend '" + cfg.backend + "' (valid: eigen, cuda)");
  require(!cfg.devices.empty(), "--devices needs at least one device index");
  for (int d : cfg.devices)
    require(d >= 0, "--devices: a device index must be >= 0 (got " + std::to_string(d) + ")");
  const auto& algo = find_algorithm(cfg.algorithm);  // throws with the valid names
  check_backend(algo, cfg.backend);
  check_cluster_options(cfg);
  auto injections = parse_injections(cfg.workers, cfg.slow, cfg.delay, cfg.link_delay, cfg.crash);
  try {
    link_spec::parse(cfg.link);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(std::string("--link: ") + e.what());
  }
  parse_byzantine(cfg.byzantine, cfg.workers);  // throws with what is wrong
  if (algo.spawn_peer && !cfg.byzantine.empty()) {
    // Decentralized: the peers forge (engines/gossip.hpp); it refuses what they cannot.
    run_context probe;
    probe.workers.resize(static_cast<size_t>(cfg.workers));
    probe.byzantine = cfg.byzantine;
    byzantine_peers(probe);
  }
  check_options(algo, cfg.options);
  check_plan(algo, cfg.options, static_cast<size_t>(cfg.workers));  // e.g. an impossible --f
  // Dataset names are checked here, before any file is read; the data
  // themselves are checked by their loader.
  bool known = false;
  std::string valid;
  for (auto& [name, text] : dataset_names()) {
    auto colon = name.find(':');
    known = known || (colon == std::string::npos ? cfg.dataset == name
                                                 : cfg.dataset.compare(0, colon + 1, name, 0, colon + 1) == 0
                                                     && cfg.dataset.size() > colon + 1);
    valid += (valid.empty() ? "" : ", ") + name;
  }
  require(known, "unknown dataset '" + cfg.dataset + "'; valid: " + valid);
  return injections;
}

partition plan_partition(const experiment_config& cfg, const dataset& train) {
  auto parts = make_partition(train, cfg.workers, cfg.partition, cfg.seed);
  const auto& algo = find_algorithm(cfg.algorithm);
  if (!algo.reshard)
    return parts;
  run_plan plan;
  plan.algorithm = cfg.algorithm;
  plan.options = cfg.options;
  plan.options["seed"] = std::to_string(cfg.seed);
  complete_options(algo, plan);
  return algo.reshard(parts, plan);
}

worker_config make_worker_config(const experiment_config& cfg, const train_test& data,
                                 const partition& parts, const std::vector<injection>& injections,
                                 int32_t rank) {
  const auto i = static_cast<size_t>(rank);
  worker_config wc;
  wc.rank = rank;
  wc.model = cfg.model;
  wc.data = data.train;
  wc.shard = parts.at(i);
  wc.batch = batch_of(cfg, rank);
  wc.seed = cfg.seed * 1000003 + static_cast<uint64_t>(rank);
  wc.inject = injections.at(i);
  wc.backend = cfg.backend;
  wc.device = cfg.devices[i % cfg.devices.size()];
  // labelflip is a data attack: the worker computes honestly on its shard
  // with permuted labels (engines/byzantine.hpp).
  auto byz = parse_byzantine(cfg.byzantine, cfg.workers);
  if (byz.is_byzantine(rank) && byz.atk.data) {
    wc.data = flip_labels(*data.train, wc.shard);
    wc.shard.clear();
  }
  return wc;
}

run_context make_context(const experiment_config& cfg, const train_test& data,
                         const partition& parts) {
  run_context ctx;
  const int64_t train_size = data.train->size();
  ctx.plan.algorithm = cfg.algorithm;
  ctx.plan.steps = cfg.steps;
  ctx.plan.max_samples = max_samples_for(cfg, train_size);
  ctx.plan.eval_every = cfg.eval_every;
  ctx.plan.eval_every_samples = cfg.eval_every > 0 ? 0 : std::max<int64_t>(1, train_size / 2);
  ctx.plan.target_acc = cfg.target_acc;
  ctx.plan.lr = static_cast<float>(cfg.lr);
  ctx.plan.schedule = lr_schedule::parse(cfg.lr_schedule);
  ctx.plan.reg = regularizer::parse(cfg.reg);
  ctx.plan.train_size = train_size;
  ctx.plan.timeout = std::chrono::milliseconds(cfg.timeout_ms);
  ctx.plan.options = cfg.options;
  ctx.plan.options["seed"] = std::to_string(cfg.seed);
  complete_options(find_algorithm(cfg.algorithm), ctx.plan);
  for (auto& p : parts)
    ctx.shard_sizes.push_back(static_cast<int64_t>(p.size()));
  ctx.shards = std::make_shared<const partition>(parts);
  ctx.backend = cfg.backend;
  ctx.device = cfg.devices.front();
  ctx.combine_shards = static_cast<size_t>(std::max(cfg.combine_shards, 0));
  ctx.link = link_spec::parse(cfg.link);
  // Decentralized protocols carry --byzantine out in their peers; the
  // others get attack decorators around their workers (run_checked).
  if (find_algorithm(cfg.algorithm).spawn_peer)
    ctx.byzantine = cfg.byzantine;
  // w_0 from the seed: every process that builds this context gets the
  // same floats.
  auto net = make_model(cfg.model, data.train->num_features, data.train->num_classes);
  mutable_buffer w0(static_cast<size_t>(net->num_params()));
  std::mt19937_64 rng(cfg.seed);
  net->init(w0.data(), rng);
  ctx.initial = std::move(w0).freeze();
  return ctx;
}

std::string to_json(const experiment_config& cfg) {
  json_object o;
  o.add("algorithm", cfg.algorithm)
    .add("workers", cfg.workers)
    .add("model", cfg.model)
    .add("dataset", cfg.dataset)
    .add("data_dir", cfg.data_dir)
    .add("max_features", cfg.max_features)
    .add("partition", cfg.partition)
    .add("epochs", cfg.epochs)
    .add("steps", cfg.steps)
    .raw("batch", cfg.batches.empty() ? std::to_string(cfg.batch) : json_quote(batch_spec(cfg)))
    .add("test_fraction", cfg.test_fraction)
    .add("lr", cfg.lr)
    .add("lr_schedule", cfg.lr_schedule)
    .add("reg", cfg.reg)
    .add("seed", cfg.seed)
    .raw("threads", cfg.threads == 0 ? json_quote("auto") : std::to_string(cfg.threads))
    .raw("spin_polls", cfg.spin_polls == 0 ? json_quote("auto") : std::to_string(cfg.spin_polls))
    .add("scheduler", cfg.scheduler)
    .raw("combine_shards",
         cfg.combine_shards == 0 ? json_quote("auto") : std::to_string(cfg.combine_shards))
    .add("eval_every", cfg.eval_every)
    .add("target_acc", cfg.target_acc)
    .add("timeout_ms", cfg.timeout_ms)
    .add("slow", cfg.slow)
    .add("delay", cfg.delay)
    .add("link_delay", cfg.link_delay)
    .add("link", cfg.link)
    .add("crash", cfg.crash)
    .add("byzantine", cfg.byzantine)
    .add("backend", cfg.backend)
    .raw("devices", json_int_array(cfg.devices))
    .add("out", cfg.out_dir);
  if (distributed(cfg)) {
    std::string nodes = "[";
    for (size_t i = 0; i < cfg.nodes.size(); ++i)
      nodes += (i ? "," : "") + json_quote(cfg.nodes[i]);
    o.add("processes", cfg.processes).raw("nodes", nodes + "]").add("placement", cfg.placement);
  }
  json_object opts;
  for (auto& [k, v] : cfg.options)
    opts.add(k, v);
  o.raw("options", opts.str());
  return o.str();
}

int32_t usable_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
    return CPU_COUNT(&set);
  return static_cast<int32_t>(std::max(1u, std::thread::hardware_concurrency()));
}

// Other tasks runnable right now: /proc/loadavg's "running/total" field
// counts this process too. The least of a few samples 2 ms apart, so one
// short-lived task does not count. (The 1-minute load average would count
// the runs that just ended: back-to-back runs on an idle 2-core machine read
// 1.2-2.0 and would never poll.)
double other_runnable_tasks() {
  double least = -1;
  for (int k = 0; k < 5; ++k) {
    if (k > 0)
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    std::ifstream in("/proc/loadavg");
    double a = 0, b = 0, c = 0;
    long running = 0;
    char slash = 0;
    if (!(in >> a >> b >> c >> running >> slash) || slash != '/' || running < 1)
      return 0;  // unknown: as an idle machine
    const double others = static_cast<double>(running - 1);
    least = least < 0 ? others : std::min(least, others);
  }
  return std::max(least, 0.0);
}

scheduling_choice resolve_scheduling(const experiment_config& cfg) {
  return resolve_scheduling(cfg, usable_cores(), other_runnable_tasks());
}

namespace {

// --threads and --spin-polls (resolve_scheduling adds the policy).
scheduling_choice resolve_polling(const experiment_config& cfg, int32_t cores, double load) {
  scheduling_choice out;
  cores = std::max(cores, 1);
  out.threads = cfg.threads > 0 ? cfg.threads : std::clamp(cores, 1, 256);
  std::string threads_why = cfg.threads > 0 ? "--threads" : "auto: the cores this process may use";
  out.reason = std::to_string(out.threads) + " scheduler thread(s) (" + threads_why + "); ";
  if (cfg.spin_polls > 0) {
    out.spin_polls = cfg.spin_polls;
    out.reason += "idle threads poll " + std::to_string(out.spin_polls) + " times (--spin-polls)";
    return out;
  }
  // Polling pays where every step is a barrier and each worker has a thread
  // (a hop to a napping thread waits out CAF's 50 us nap); it costs where
  // threads are shared (async fairness, actors/system.hpp) or where the
  // workers are in other processes (the coordinator's threads would take
  // their cores).
  const bool lockstep = runs_in_lockstep(find_algorithm(cfg.algorithm), cfg.options);
  const bool one_process = !distributed(cfg);
  const bool thread_each = cfg.workers <= out.threads;
  // Polling threads that share their cores with other processes take time
  // from them and from our own workers (measured: 2-worker sync_sgd 0.5-0.8x
  // slower with polling on a 2-core machine at load 10), so only where the
  // workers' cores are idle now: the other runnable tasks leave them free.
  const bool cores_idle = load + static_cast<double>(cfg.workers) <= static_cast<double>(cores) + 0.5;
  if (lockstep && one_process && thread_each && cores_idle) {
    out.spin_polls = lockstep_spin_polls;
    out.reason += "auto: idle threads poll " + std::to_string(out.spin_polls)
                  + " times before they nap (" + cfg.algorithm
                  + " waits for every worker each step, " + std::to_string(cfg.workers)
                  + " worker(s) on " + std::to_string(out.threads) + " thread(s))";
  } else {
    out.spin_polls = static_cast<int64_t>(default_spin_polls);
    out.reason += "auto: idle threads poll " + std::to_string(out.spin_polls)
                  + " times, CAF's default ("
                  + (!lockstep      ? cfg.algorithm + " has no barrier: polling would make it uneven"
                     : !one_process ? std::string("the workers are in other processes")
                     : !thread_each ? std::string("more workers than threads")
                                    : short_number(load) + " other runnable task(s) on "
                                        + std::to_string(cores)
                                        + " cores: polling would take time from them")
                  + ")";
  }
  return out;
}

} // namespace

std::string scheduler_policy(const experiment_config& cfg) {
  if (cfg.scheduler != "auto")
    return cfg.scheduler;
  return distributed(cfg) ? "sharing" : "stealing";
}

scheduling_choice resolve_scheduling(const experiment_config& cfg, int32_t cores, double load) {
  scheduling_choice out = resolve_polling(cfg, cores, load);
  out.policy = scheduler_policy(cfg);
  if (cfg.scheduler == "auto")
    out.reason += "; policy " + out.policy + " (auto: "
                  + (distributed(cfg) ? "the workers are in other processes, idle threads sleep "
                                        "until a message comes"
                                      : "one process")
                  + ")";
  else
    out.reason += "; policy " + out.policy + " (--scheduler)";
  return out;
}

namespace {

#ifndef CHORUS_GIT_DESCRIBE
#define CHORUS_GIT_DESCRIBE "unknown"
#endif
#ifndef CHORUS_BUILD_FLAGS
#define CHORUS_BUILD_FLAGS "unknown"
#endif
// Set by CMake at configure time (git describe; compiler, build type, flags).
const char* const chorus_build_version = CHORUS_GIT_DESCRIBE;
const char* const chorus_build_flags = CHORUS_BUILD_FLAGS;

// The machine a run ran on: name, cores (all, and those this process may
// use), CPU model from /proc/cpuinfo.
std::string host_json() {
  char name[256] = "";
  if (::gethostname(name, sizeof(name) - 1) != 0)
    name[0] = '\0';
  std::string model = "unknown";
  std::ifstream info("/proc/cpuinfo");
  for (std::string line; std::getline(info, line);)
    if (line.rfind("model name", 0) == 0 && line.find(':') != std::string::npos) {
      model = line.substr(line.find(':') + 1);
      model.erase(0, std::min(model.find_first_not_of(' '), model.size()));
      break;
    }
  json_object o;
  o.add("hostname", std::string(name))
    .add("cores", static_cast<int64_t>(std::thread::hardware_concurrency()))
    .add("usable_cores", usable_cores())
    .add("cpu_model", model);
  return o.str();
}

// The experiment proper, on a config validate() accepted.
// Holds the output folder for the run, when there is one.
std::unique_ptr<out_dir_lock> lock_out_dir(const experiment_config& cfg) {
  if (cfg.out_dir.empty())
    return nullptr;
  return std::make_unique<out_dir_lock>(cfg.out_dir, cfg.overwrite);
}

// Detaches the stop switch from the graph before the graph goes.
struct stop_attachment {
  stop_switch* stop;
  ~stop_attachment() {
    if (stop)
      stop->detach();
  }
};

experiment_result run_checked(const experiment_config& cfg, const train_test& data,
                              const std::vector<injection>& injections, const out_dir_lock* lock,
                              stop_switch* stop) {
  const auto& algo = find_algorithm(cfg.algorithm);
  require(data.train && data.test && data.train->size() > 0 && data.test->size() > 0,
          "the dataset has no training or no test samples");
  // A missing GPU is a clear error before any actor exists.
  if (cfg.backend == "cuda")
    for (int d : cfg.devices)
      device::require(d, "--backend cuda");
  auto parts = plan_partition(cfg, *data.train);
  // Built here once to validate the spec and to initialize w_0.
  auto net = make_model(cfg.model, data.train->num_features, data.train->num_classes);
  check_model_memory(cfg, net->num_params());

  experiment_result result;
  result.layout = net->layout();
  result.train_size = data.train->size();
  result.test_size = data.test->size();
  result.steps_planned = cfg.steps;
  result.samples_planned = max_samples_for(cfg, result.train_size);
  result.eval_every = cfg.eval_every;
  result.eval_every_samples = cfg.eval_every > 0 ? 0 : std::max<int64_t>(1, result.train_size / 2);
  for (size_t i = 0; i < injections.size(); ++i)
    if (injections[i].active())
      result.injected += (result.injected.empty() ? "" : "; ") + ("worker " + std::to_string(i) + ": ")
                         + injections[i].describe();
  const auto byz = parse_byzantine(cfg.byzantine, cfg.workers);
  if (byz.active())
    result.injected += (result.injected.empty() ? "" : "; ") + ("byzantine " + cfg.byzantine);

  const auto sched = resolve_scheduling(cfg);
  if (!cfg.out_dir.empty()) {
    json_object effective;
    effective.raw("config", to_json(cfg))
      .add("threads_used", sched.threads)
      .add("spin_polls_used", sched.spin_polls)
      .add("scheduler_used", sched.policy)
      .add("scheduling", sched.reason)
      .add("train_size", result.train_size)
      .add("test_size", result.test_size)
      .add("steps_planned", result.steps_planned)
      .add("samples_planned", result.samples_planned)
      .add("eval_every_steps", result.eval_every)
      .add("eval_every_samples", result.eval_every_samples)
      .add("num_params", net->num_params())
      .raw("model_layout", layout_json(result.layout))
      .add("model_file", "model.npy: flat float32, tensors in model_layout order, "
                         "matrices column-major")
      .add("seed", cfg.seed)
      .add("chorus_version", chorus_build_version)
      .add("build", chorus_build_flags)
      .raw("host", host_json());
    auto path = (std::filesystem::path(cfg.out_dir) / "config.json").string();
    write_atomically(path, [&](const std::string& temp) {
      std::ofstream out(temp);
      out << effective.str() << '\n';
      if (!out.flush())
        throw std::runtime_error("cannot write " + path);
    });
  }

  caf::actor_system_config sys_cfg;
  configure_actor_system(sys_cfg, static_cast<size_t>(sched.threads),
                         static_cast<size_t>(sched.spin_polls));
  configure_scheduler(sys_cfg, sched.policy);
  if (distributed(cfg))
    configure_network(sys_cfg, tls_of(cfg));
  caf::actor_system sys{sys_cfg};
  caf::expected<run_summary> summary{caf::error{}};
  // The nodes outlive the graph: its teardown ends their workers' stand-ins
  // first, then the cluster releases the nodes (and reaps the processes it
  // started).
  std::unique_ptr<cluster> nodes;
  if (distributed(cfg)) {
    use_data_plane(cfg.data_plane, tls_of(cfg).enabled(), nodes_off_host(cfg));
    nodes = std::make_unique<cluster>(sys, cfg);
  }
  {
    monitor_config mon_cfg;
    mon_cfg.out_dir = cfg.out_dir;
    mon_cfg.progress = cfg.progress;
    run_graph graph(sys, mon_cfg);
    auto& ctx = graph.context();
    {
      // The graph keeps its monitor; everything else comes from the config.
      auto base = make_context(cfg, data, parts);
      base.monitor = ctx.monitor;
      ctx = std::move(base);
    }
    for (int32_t i = 0; i < cfg.workers; ++i)
      if (injections[static_cast<size_t>(i)].active())
        graph.log("worker " + std::to_string(i) + " injected: "
                  + injections[static_cast<size_t>(i)].describe());
    if (nodes) {
      // The nodes build the same workers from the same flags and data.
      for (auto& line : nodes->describe())
        graph.log(line);
      // Protocols with peers get them beside the workers, on the nodes.
      const bool peers = static_cast<bool>(algo.spawn_peer);
      for (auto& w : nodes->host(to_args(cfg), cfg.workers, fingerprint(data), peers))
        graph.add_worker(w);
      ctx.uplinks_at_workers = true;  // the nodes put the encoders beside the workers
      // Replica protocols get an agent beside each worker that holds x_i,
      // unless link stages or attack decorators must stand between the
      // engine and the workers (those live here): then the engine keeps
      // every x_i, as in one process.
      const bool agents = algo.spawn_agent && !ctx.link.active() && !byz.active();
      if (peers || agents)
        ctx.beside = nodes->beside(ctx.monitor);
      else if (algo.spawn_agent)
        graph.log("replicas stay in the coordinator: --link and --byzantine act between it and the workers");
      // --allreduce nccl: the nodes all-reduce among themselves; the id
      // from worker 0's node goes to every rank now.
      if (nccl_all_reduce(cfg))
        ctx.reducer = graph.keep(nodes->nccl_reducer());
    } else {
      for (int32_t i = 0; i < cfg.workers; ++i)
        graph.add_worker(make_worker_config(cfg, data, parts, injections, i));
    }
    // --link on a centralized protocol: the compression encoder goes beside
    // each worker (as on a node), so the link below carries the encoded
    // gradient; the protocol then installs only the decoders.
    const bool server_links = ctx.link.active() && !algo.spawn_peer;
    if (server_links && !ctx.uplinks_at_workers
        && std::any_of(algo.options.begin(), algo.options.end(),
                       [](const protocol_option& o) { return o.key == "compress"; })) {
      auto uplink = read_uplink_compression(ctx.plan);
      if (uplink.any()) {
        for (auto& w : ctx.workers)
          w = graph.keep(spawn_encoding_uplink(sys, w, uplink, cfg.seed));
        ctx.uplinks_at_workers = true;
      }
    }
    if (byz.active() && algo.spawn_peer) {
      std::string ranks;
      for (auto r : byz.ranks)
        ranks += (ranks.empty() ? "" : ",") + std::to_string(r);
      graph.log("byzantine peers " + ranks + ": " + byz.atk.spec
                + (byz.atk.data ? " (their workers train on flipped labels)"
                                : " (each forges the models it sends its neighbours)"));
    } else if (byz.active()) {
      // Byzantine decorators (and, for omniscient attacks, the taps on the
      // honest uplinks and the adversary) around the workers, here beside
      // the protocol; the workers themselves stay honest.
      const auto wait = std::chrono::milliseconds(std::min<int64_t>(1000, cfg.timeout_ms / 2));
      auto adv = wrap_byzantine(sys, ctx.workers, byz, cfg.seed, wait);
      if (adv)
        graph.keep(adv);
      for (auto& w : ctx.workers)
        graph.keep(w);
      std::string ranks;
      for (auto r : byz.ranks)
        ranks += (ranks.empty() ? "" : ",") + std::to_string(r);
      graph.log("byzantine workers " + ranks + ": " + byz.atk.spec
                + (byz.atk.omniscient ? " (omniscient: an adversary actor taps the honest uplinks)"
                                      : ""));
    }
    if (ctx.link.active()) {
      // The link model (actors/link.hpp): on a centralized protocol a link
      // stage on the protocol's side of each worker, the protocol's own
      // link shared by all of them; gossip peers put their own messages on
      // their own links (they read ctx.link).
      if (server_links) {
        auto down = std::make_shared<link_queue>(ctx.link);
        for (auto& w : ctx.workers)
          w = graph.keep(spawn_link_stage(sys, w, ctx.link, down));
      }
      graph.log("link model: " + ctx.link.describe() + " per sender"
                + (server_links ? " (the protocol actor's link shared by its requests, one per worker)"
                                : " (one per gossip peer)"));
    }
    worker_config ec;
    ec.rank = -1;
    ec.model = cfg.model;
    ec.data = data.test;
    ec.batch = cfg.batch;
    ec.backend = cfg.backend;
    ec.device = cfg.devices.front();
    graph.set_evaluator(ec);

    graph.log("scheduling: " + sched.reason);
    graph.log("starting " + cfg.algorithm + ": " + std::to_string(cfg.workers) + " workers, "
              + cfg.model + " (" + std::to_string(net->num_params()) + " params) on "
              + data.train->name + " [" + cfg.partition + "], "
              + (cfg.steps > 0 ? std::to_string(cfg.steps) + " steps"
                               : short_number(cfg.epochs) + " epochs"));
    stop_attachment attached{stop};
    if (stop)
      stop->attach([&graph](const std::string& why) {
        graph.log(why + ": stopping after the current step");
        graph.stop();
      });
    summary = graph.run(spawn_algorithm(sys, cfg.algorithm, ctx));
  }
  if (nodes) {
    nodes->collect_traffic();
    result.nodes_json = nodes->report_json();
    nodes.reset();
    report_data_plane("chorus");
  }
  if (!summary)
    throw std::runtime_error("training failed: " + describe(summary.error()));
  result.summary = std::move(*summary);
  // How often each Byzantine worker got through the aggregator (the
  // protocol reports every worker's pass rate and does not know who attacks).
  for (auto r : byz.ranks)
    for (std::string key : {"pass_rate_w", "share_w"}) {
      auto& extra = result.summary.extra;
      auto it = extra.find(key + std::to_string(r));
      if (it != extra.end())
        extra["byz_" + key + std::to_string(r)] = it->second;
    }
  // Only a stop_switch stops a run from here, so "stopped" means that.
  if (stop && stop->requested() && result.summary.stop_reason == "stopped")
    result.summary.stop_reason = "interrupted";
  if (!cfg.out_dir.empty()) {
    auto path = (std::filesystem::path(cfg.out_dir) / "model.npy").string();
    if (lock && !lock->still_held())
      throw std::runtime_error("another run took " + cfg.out_dir
                               + " over (--overwrite); model.npy of this run not written");
    write_atomically(path, [&](const std::string& temp) {
      write_npy(temp, result.summary.final_weights);
    });
    // The summary line, kept: a sweep reads it back, and its presence says
    // the run finished (written last, whole or not at all).
    auto summary_path = (std::filesystem::path(cfg.out_dir) / "summary.json").string();
    write_atomically(summary_path, [&](const std::string& temp) {
      std::ofstream out(temp);
      out << summary_json(cfg, result) << '\n';
      if (!out.flush())
        throw std::runtime_error("cannot write " + summary_path);
    });
  }
  return result;
}

// run_checked, with std::bad_alloc turned into a message that says what
// needed the memory.
experiment_result run_checked_in_memory(const experiment_config& cfg, const train_test& data,
                                        const std::vector<injection>& injections,
                                        const out_dir_lock* lock, stop_switch* stop) {
  try {
    return run_checked(cfg, data, injections, lock, stop);
  } catch (const std::bad_alloc&) {
    throw std::runtime_error(out_of_memory_message(cfg, data));
  }
}

} // namespace

experiment_result run_experiment(const experiment_config& cfg, stop_switch* stop) {
  auto injections = validate(cfg);
  auto lock = lock_out_dir(cfg);  // before a long load, so a busy --out fails fast
  train_test data;
  try {
    data = load_dataset(cfg.dataset, data_options(cfg));
  } catch (const std::bad_alloc&) {
    throw std::runtime_error("out of memory loading dataset " + cfg.dataset);
  }
  return run_checked_in_memory(cfg, data, injections, lock.get(), stop);
}

experiment_result run_experiment(const experiment_config& cfg, const train_test& data,
                                 stop_switch* stop) {
  auto injections = validate(cfg);
  auto lock = lock_out_dir(cfg);
  return run_checked_in_memory(cfg, data, injections, lock.get(), stop);
}

std::string summary_json(const experiment_config& cfg, const experiment_result& r) {
  const auto& s = r.summary;
  double train_s = s.wall_s - s.eval_s;
  json_object o;
  o.add("algorithm", s.algorithm)
    .add("workers", cfg.workers)
    .add("model", cfg.model)
    .add("dataset", cfg.dataset)
    .add("test_acc", s.test_acc)
    .add("test_loss", s.test_loss)
    .add("train_loss", s.train_loss)
    .add("steps", s.steps)
    .add("epochs", s.epochs)
    .add("wall_s", s.wall_s)
    .add("train_s", train_s)
    .add("eval_s", s.eval_s)
    .add("samples", s.samples)
    .add("samples_per_s", train_s > 0 ? s.samples / train_s : 0.0)
    .add("bytes_sent", s.bytes_sent)
    .add("workers_lost", s.workers_lost)
    .add("stop_reason", s.stop_reason);
  for (auto& [key, value] : s.extra)
    o.add(key, value);
  if (cfg.target_acc >= 0) {
    if (s.reached_target)
      o.add("time_to_target_s", s.time_to_target_s);
    else
      o.add_null("time_to_target_s");
  }
  if (!r.injected.empty())
    o.add("injected", r.injected);
  if (!r.nodes_json.empty())
    o.raw("nodes", r.nodes_json);
  if (!cfg.out_dir.empty())
    o.add("out", cfg.out_dir);
  return o.str();
}

} // namespace chorus
