#include "tools/options.hpp"

#include "algorithms/registry.hpp"
#include "messages/checked.hpp"
#include "messages/lr_schedule.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

namespace chorus {

namespace {

using setter = std::function<void(experiment_config&, const std::string&)>;

struct option_spec {
  std::string name;   // long name without dashes
  std::string arg;    // metavariable, empty for a switch
  std::string help;
  setter set;
};

// User input as an error message quotes it: at most ~80 characters.
std::string shown(const std::string& v) {
  constexpr size_t most = 80;
  if (v.size() <= most)
    return v;
  return v.substr(0, most) + "... (" + std::to_string(v.size()) + " characters)";
}

double to_double(const std::string& flag, const std::string& v) {
  auto x = parse_finite(v);
  if (!x)
    throw usage_error("--" + flag + ": '" + shown(v) + "' is not a number");
  return *x;
}

int64_t to_int(const std::string& flag, const std::string& v) {
  size_t used = 0;
  long long x = 0;
  try {
    x = std::stoll(v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != v.size() || v.empty())
    throw usage_error("--" + flag + ": '" + shown(v) + "' is not an integer");
  return x;
}

int32_t to_int32(const std::string& flag, const std::string& v) {
  auto x = to_int(flag, v);
  if (x < INT32_MIN || x > INT32_MAX)
    throw usage_error("--" + flag + ": '" + shown(v) + "' is out of range");
  return static_cast<int32_t>(x);
}

// "auto" (0, resolved when the run starts) or a count in [1, most].
int32_t auto_or_count(const std::string& flag, const std::string& v, int32_t most) {
  if (v == "auto")
    return 0;
  auto x = to_int(flag, v);
  if (x < 1 || x > most)
    throw usage_error("--" + flag + " must be auto or between 1 and " + std::to_string(most)
                      + " (got '" + shown(v) + "')");
  return static_cast<int32_t>(x);
}

// The longest duration a flag may give: 30 days. Longer is a typo or a way
// of saying "never"; it is refused before the cast to an integer, which
// would be undefined for values past 2^63, and before any clock arithmetic
// in nanoseconds could overflow.
constexpr double max_millis = 30.0 * 24 * 3600 * 1000;

// Parses "250ms", "2s", "1.5s", or plain milliseconds.
int64_t to_millis(const std::string& flag, const std::string& v) {
  std::string num = v;
  double scale = 1;
  if (v.size() > 2 && v.compare(v.size() - 2, 2, "ms") == 0) {
    num = v.substr(0, v.size() - 2);
  } else if (v.size() > 1 && v.back() == 's') {
    num = v.substr(0, v.size() - 1);
    scale = 1000;
  }
  const double ms = to_double(flag, num) * scale;
  if (!(std::fabs(ms) <= max_millis))
    throw usage_error("--" + flag + ": '" + v + "' is out of range (at most 30 days, 2592000s)");
  return static_cast<int64_t>(ms);
}

std::vector<std::string> split_list(const std::string& v) {
  std::vector<std::string> out;
  std::string item;
  for (size_t at = 0; at <= v.size(); ++at) {
    if (at == v.size() || v[at] == ',') {
      if (!item.empty())
        out.push_back(item);
      item.clear();
    } else if (v[at] != ' ') {
      item += v[at];
    }
  }
  return out;
}

std::vector<std::string> read_nodes_file(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec))
    throw usage_error("--nodes-file " + shown(path) + ": not a readable regular file");
  if (std::filesystem::file_size(path, ec) > (1u << 20))
    throw usage_error("--nodes-file " + shown(path) + " is larger than 1 MiB");
  std::ifstream in(path);
  std::vector<std::string> out;
  std::string line;
  while (std::getline(in, line)) {
    line.resize(std::min(line.find('#'), line.size()));
    for (auto& item : split_list(line))
      out.push_back(item);
  }
  if (out.empty())
    throw usage_error("--nodes-file " + shown(path) + " names no node");
  return out;
}

std::string cuda_list() {
  std::string list;
  for (auto& a : cuda_algorithms())
    list += (list.empty() ? "" : ", ") + a;
  return list;
}

// The options every run has, in --help order.
std::vector<option_spec> general_options() {
  return {
    {"config", "FILE", "read options from FILE first (key = value lines; flags override)", {}},
    {"algorithm", "NAME", "protocol to run (see `chorus list`) [sync_sgd]",
     [](auto& c, auto& v) { c.algorithm = v; }},
    {"workers", "N", "number of workers, each with its own shard [4]",
     [](auto& c, auto& v) { c.workers = to_int32("workers", v); }},
    {"model", "SPEC", "linear | logistic | softmax | mlp:H1[,H2...] | cnn[:C1,C2] [mlp:256]",
     [](auto& c, auto& v) { c.model = v; }},
    {"dataset", "SPEC", "fashion-mnist | libsvm:PATH[,TEST] | npy:X,Y[,XTEST,YTEST] | idx:DIR | "
                            "synthetic-lsq | synthetic-logistic (chorus list) [fashion-mnist]",
     [](auto& c, auto& v) { c.dataset = v; }},
    {"data-dir", "DIR", "where the Fashion-MNIST .gz files are [/usr/share/datasets/fashion-mnist]",
     [](auto& c, auto& v) { c.data_dir = v; }},
    {"max-features", "N", "libsvm: refuse a feature index above N (data is stored sparse) [16777216]",
     [](auto& c, auto& v) { c.max_features = to_int("max-features", v); }},
    {"partition", "SPEC", "iid | dirichlet:ALPHA | shards:K: how data is split over workers [iid]",
     [](auto& c, auto& v) { c.partition = v; }},
    {"epochs", "E", "passes over the training set (may be fractional) [10]",
     [](auto& c, auto& v) { c.epochs = to_double("epochs", v); }},
    {"steps", "S", "protocol steps to run; overrides --epochs when > 0 [0]",
     [](auto& c, auto& v) { c.steps = to_int("steps", v); }},
    {"batch", "B|B1,B2,...", "mini-batch size per worker, or one per worker (as many as --workers; "
                             "sync_sgd then weights each gradient by its samples) [64]",
     [](auto& c, auto& v) {
       c.batches.clear();
       if (v.find(',') == std::string::npos) {
         c.batch = to_int32("batch", v);
         return;
       }
       for (auto& item : split_list(v))
         c.batches.push_back(to_int32("batch", item));
       if (c.batches.empty())
         throw usage_error("--batch: '" + shown(v) + "' names no batch size");
       c.batch = c.batches.front();
     }},
    {"test-fraction", "F", "share of the samples held out as the test set when the data has no "
                           "test file (libsvm:PATH, npy:X,y); 0 < F < 1 [0.2]",
     [](auto& c, auto& v) { c.test_fraction = to_double("test-fraction", v); }},
    {"lr", "ETA", "step size [0.2]", [](auto& c, auto& v) { c.lr = to_double("lr", v); }},
    {"lr-schedule", "SPEC", std::string("step size eta_t = ETA s(t): ") + lr_schedule_forms
                              + "; s = 1, 1/(1+t/T0), 1/sqrt(1+t/T0) [T0 1], (1+cos(pi t/T))/2 "
                              "with T the run's --steps, FACTOR^floor(t/EVERY); t counts the "
                              "server's steps (sync/async protocols) or local steps (local_sgd, "
                              "ri_sgd, gossip peers) from 0 [const]",
     [](auto& c, auto& v) {
       try {
         lr_schedule::parse(v);
       } catch (const std::invalid_argument& e) {
         throw usage_error(e.what());
       }
       c.lr_schedule = v;
     }},
    {"reg", "SPEC", "none | l1:LAMBDA | l2:LAMBDA | elastic:L1,L2, applied by a proximal step [none]",
     [](auto& c, auto& v) { c.reg = v; }},
    {"seed", "S", "seed for data order, partitions and initialization [1]",
     [](auto& c, auto& v) {
       auto s = to_int("seed", v);
       if (s < 0)
         throw usage_error("--seed must be >= 0");
       c.seed = static_cast<uint64_t>(s);
     }},
    {"threads", "T|auto", "CAF scheduler threads; auto: every core this process may use [auto]",
     [](auto& c, auto& v) { c.threads = auto_or_count("threads", v, 256); }},
    {"spin-polls", "N|auto", "idle scheduler threads poll N times before they nap (CAF's default: 100); auto: 100000 for a protocol that waits for every worker each step, in one process, with a thread per worker (sync rounds 1.3-1.5x faster), else 100, which keeps async protocols even [auto]",
     [](auto& c, auto& v) { c.spin_polls = auto_or_count("spin-polls", v, 1000000000); }},
    {"combine-shards", "K|auto", "split a synchronous round's combine (w - eta mean g, the model mean) by coordinates over K actors, one of them the server, so it runs on K cores; auto: one per scheduler thread while each slice keeps >= 32768 floats, 1: never split [auto]",
     [](auto& c, auto& v) { c.combine_shards = auto_or_count("combine-shards", v, 256); }},
    {"scheduler", "NAME", "CAF scheduler: stealing | sharing (one queue, idle threads sleep) | "
                          "auto: sharing when the workers are in other processes (--processes, "
                          "--nodes, --await-nodes), stealing in one process; --processes passes "
                          "the policy to the nodes [auto]",
     [](auto& c, auto& v) { c.scheduler = v; }},
    {"eval-every", "STEPS", "evaluate on the test set every STEPS steps; 0: twice per epoch [0]",
     [](auto& c, auto& v) { c.eval_every = to_int("eval-every", v); }},
    {"target-acc", "A", "stop at the first evaluation with test accuracy >= A; reports time_to_target_s",
     [](auto& c, auto& v) { c.target_acc = to_double("target-acc", v); }},
    {"timeout", "T", "longest wait for one worker reply, e.g. 500ms, 30s; a worker that exceeds it is dropped [60s]",
     [](auto& c, auto& v) { c.timeout_ms = to_millis("timeout", v); }},
    // Then every protocol option of the registry (protocol_options()).
    {"slow", "R:F[,R:F]", "inject: worker R computes F times slower, e.g. --slow 3:4; repeats add workers",
     [](auto& c, auto& v) { c.slow += (c.slow.empty() ? "" : ",") + v; }},
    {"delay", "SPEC", "inject: extra time per step on every worker: fixed:2ms | uniform:1ms,3ms | exp:2ms",
     [](auto& c, auto& v) { c.delay = v; }},
    {"link-delay", "T", "inject: one-way delay on every worker-server link, e.g. 1ms",
     [](auto& c, auto& v) { c.link_delay = v; }},
    {"link", "BW[,LAT]", "link model: every message takes LAT + bytes/BW, a sender's messages queue "
                         "(bit|kbit|mbit|gbit or B|KB|MB|GB per s), e.g. 1gbit,100us [none]",
     [](auto& c, auto& v) { c.link = v; }},
    {"crash", "R:S[,R:S]", "inject: worker R dies at protocol step S (the step of metrics.jsonl: a round "
                           "for sync and local protocols, an update for async ones), e.g. --crash 2:500; "
                           "repeats add workers",
     [](auto& c, auto& v) { c.crash += (c.crash.empty() ? "" : ",") + v; }},
    {"byzantine", "RANKS:ATTACK", "attack: workers RANKS send forged vectors, e.g. --byzantine 0,3:alie "
                                  "(attacks: chorus list; defend with --aggregator); on gossip "
                                  "protocols peers RANKS send forged models to their neighbours",
     [](auto& c, auto& v) { c.byzantine = v; }},
    {"backend", "NAME", "where workers compute: eigen (CPU) | cuda (GPU; " + cuda_list() + ") [eigen]",
     [](auto& c, auto& v) { c.backend = v; }},
    {"devices", "I[,I...]", "cuda: GPU indices; worker i runs on the (i mod count)-th, so several share one [0]",
     [](auto& c, auto& v) {
       c.devices.clear();
       std::string item;
       for (size_t at = 0; at <= v.size(); ++at) {
         if (at == v.size() || v[at] == ',') {
           c.devices.push_back(to_int32("devices", item));
           item.clear();
         } else {
           item += v[at];
         }
       }
     }},
    {"processes", "P", "run the workers in P node processes on this host (loopback), placed by --placement [0: in this process]",
     [](auto& c, auto& v) { c.processes = to_int32("processes", v); }},
    {"nodes", "H:P[,H:P...]", "run the workers on these running nodes (`chorus node --listen H:P` on each host)",
     [](auto& c, auto& v) { c.nodes = split_list(v); }},
    {"nodes-file", "FILE", "as --nodes, one H:P per line ('#' starts a comment)",
     [](auto& c, auto& v) { c.nodes = read_nodes_file(v); }},
    {"await-nodes", "N", "wait for N nodes to register (`chorus node --coordinator H:P`, e.g. from srun/mpirun) at --listen",
     [](auto& c, auto& v) { c.await_nodes = to_int32("await-nodes", v); }},
    {"listen", "H:P", "with --await-nodes: where nodes register [127.0.0.1:0: a free port, printed]",
     [](auto& c, auto& v) { c.listen = v; }},
    {"placement", "SPEC", "which node hosts which worker: auto | devices | round-robin | block | N,N,... (node index per worker); auto: on cuda one worker per device of each node, else round-robin [auto]",
     [](auto& c, auto& v) { c.placement = v; }},
    {"data-plane", "NAME", "how buffers of >= 256 KiB cross processes: caf (CAF's serializer, ~1 GB/s) | ucx (a descriptor on CAF, the floats fetched through UCX: shared memory on one host, TCP/RDMA between hosts; ~2x faster at 1 MiB, ~6x at 16 MiB) | auto: ucx when built with it, caf with TLS (UCX does not go through TLS); --processes passes it to the nodes [auto]",
     [](auto& c, auto& v) { c.data_plane = v; }},
    {"tls-cert", "FILE", "with --nodes: this side's certificate (PEM) for mutual TLS",
     [](auto& c, auto& v) { c.tls_cert = v; }},
    {"tls-key", "FILE", "its private key (PEM; passphrase from CHORUS_TLS_PASSPHRASE if encrypted)",
     [](auto& c, auto& v) { c.tls_key = v; }},
    {"tls-ca", "FILE", "the CA (PEM) a node's certificate must come from",
     [](auto& c, auto& v) { c.tls_ca = v; }},
    {"insecure", "", "with --nodes off this host: plain connections (anyone who reaches a node's port can send it messages)",
     [](auto& c, auto&) { c.insecure = true; }},
    {"out", "DIR", "write config.json, metrics.jsonl, log.txt, model.npy and summary.json to DIR",
     [](auto& c, auto& v) { c.out_dir = v; }},
    {"overwrite", "", "with --out: take DIR over even while another run writes to it (that run then writes nothing more there)",
     [](auto& c, auto&) { c.overwrite = true; }},
    {"quiet", "", "no progress lines (the summary line is still printed)",
     [](auto& c, auto&) { c.progress = false; }},
  };
}

constexpr size_t help_indent = 24;
constexpr size_t max_value_size = 4096;              // PATH_MAX on Linux
constexpr std::uintmax_t max_config_size = 1 << 20;  // 1 MiB

// One flag per option key of the registry (--tau for "tau", --post-local for
// "post_local"); its help lists the protocols that read it with their
// meaning and default, straight from the registry's table ("local_sgd,
// ri_sgd: ... [8]" where protocols agree, one line each where they differ).
std::vector<option_spec> protocol_options() {
  struct usage {
    std::string text;  // meaning and default
    std::string names;
  };
  std::vector<option_spec> out;
  std::vector<std::vector<usage>> uses;  // per flag in `out`
  for (auto& algo : algorithm_registry())
    for (auto& o : algo.options) {
      std::string flag = o.key;
      std::replace(flag.begin(), flag.end(), '_', '-');
      std::string text = o.help + (o.arg.empty() ? "" : " [" + o.fallback + "]");
      auto same = std::find_if(out.begin(), out.end(), [&](auto& x) { return x.name == flag; });
      if (same == out.end()) {
        const std::string key = o.key;
        setter set;
        if (o.arg.empty())
          set = [key](experiment_config& c, const std::string&) { c.options[key] = "1"; };
        else
          set = [key](experiment_config& c, const std::string& v) { c.options[key] = v; };
        out.push_back({flag, o.arg, "", set});
        uses.emplace_back();
        same = out.end() - 1;
      }
      auto& flag_uses = uses[static_cast<size_t>(same - out.begin())];
      auto use = std::find_if(flag_uses.begin(), flag_uses.end(),
                              [&](auto& u) { return u.text == text; });
      if (use == flag_uses.end())
        flag_uses.push_back({text, algo.name});
      else
        use->names += ", " + algo.name;
    }
  for (size_t i = 0; i < out.size(); ++i)
    for (auto& u : uses[i])
      out[i].help += (out[i].help.empty() ? "" : "\n" + std::string(help_indent, ' ')) + u.names
                     + ": " + u.text;
  return out;
}

const std::vector<option_spec>& option_table() {
  static const std::vector<option_spec> table = [] {
    auto all = general_options();
    // The protocol options go after --timeout, before the injections.
    auto at = std::find_if(all.begin(), all.end(), [](auto& o) { return o.name == "slow"; });
    auto protocol = protocol_options();
    all.insert(at, protocol.begin(), protocol.end());
    return all;
  }();
  return table;
}

const option_spec* find_option(const std::string& name) {
  for (auto& o : option_table())
    if (o.name == name)
      return &o;
  return nullptr;
}

std::string trim(const std::string& s) {
  auto b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos)
    return {};
  auto e = s.find_last_not_of(" \t\r");
  return s.substr(b, e - b + 1);
}

void apply(experiment_config& cfg, const std::string& name, const std::string& value,
           const std::string& where) {
  auto* opt = find_option(name);
  if (opt == nullptr || name == "config")
    throw usage_error(where + "unknown option '" + shown(name) + "' (see chorus train --help)");
  if (!opt->arg.empty() && value.empty())
    throw usage_error(where + "--" + name + " needs a value " + opt->arg);
  // No value is longer than a path may be; refused here, so no later
  // message can quote a huge one.
  if (value.size() > max_value_size)
    throw usage_error(where + "--" + name + ": the value is " + std::to_string(value.size())
                      + " characters long (at most " + std::to_string(max_value_size) + ")");
  opt->set(cfg, value);
}

} // namespace

std::vector<std::pair<std::string, std::string>> read_config_file(const std::string& path) {
  // A directory, a device (/dev/zero) or a pipe is no config file; a regular
  // one is read up to its bound and no further, even if it grows meanwhile.
  std::error_code ec;
  auto status = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(status))
    throw usage_error("cannot open config file " + shown(path));
  if (!std::filesystem::is_regular_file(status))
    throw usage_error("config file " + shown(path) + " is not a regular file"
                      + (std::filesystem::is_directory(status) ? " (it is a directory)" : ""));
  std::ifstream file(path, std::ios::binary);
  if (!file)
    throw usage_error("cannot open config file " + shown(path));
  std::string text(max_config_size + 1, '\0');
  file.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(file.gcount()));
  if (text.size() > max_config_size)
    throw usage_error("config file " + shown(path) + " is larger than 1 MiB; a config file holds "
                      "'key = value' lines");
  std::istringstream in(text);
  std::vector<std::pair<std::string, std::string>> out;
  std::string line;
  for (int lineno = 1; std::getline(in, line); ++lineno) {
    auto hash = line.find('#');
    if (hash != std::string::npos)
      line.resize(hash);
    line = trim(line);
    if (line.empty())
      continue;
    auto eq = line.find('=');
    if (eq == std::string::npos)
      throw usage_error(shown(path) + ":" + std::to_string(lineno) + ": expected 'key = value'");
    out.emplace_back(trim(line.substr(0, eq)), trim(line.substr(eq + 1)));
  }
  return out;
}

experiment_config parse_train_args(const std::vector<std::string>& args, bool* help) {
  *help = false;
  experiment_config cfg;
  // Split "--name=value" and "--name value" into pairs first.
  std::vector<std::pair<std::string, std::string>> flags;
  for (size_t i = 0; i < args.size(); ++i) {
    const auto& a = args[i];
    if (a == "--help" || a == "-h") {
      *help = true;
      return cfg;
    }
    if (a.rfind("--", 0) != 0)
      throw usage_error("unexpected argument '" + shown(a) + "' (options start with --)");
    auto name = a.substr(2);
    std::string value;
    auto eq = name.find('=');
    if (eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
    } else if (auto* opt = find_option(name); opt != nullptr && !opt->arg.empty()) {
      if (i + 1 >= args.size())
        throw usage_error("--" + name + " needs a value " + opt->arg);
      value = args[++i];
    }
    if (find_option(name) == nullptr)
      throw usage_error("unknown option --" + shown(name) + " (see chorus train --help)");
    flags.emplace_back(name, value);
  }
  for (auto& [name, value] : flags)
    if (name == "config")
      for (auto& [k, v] : read_config_file(value))
        apply(cfg, k, v, shown(value) + ": ");
  // --slow and --crash add up when repeated; on the command line they
  // replace the config file's lists, as every other flag does.
  for (auto& [name, value] : flags)
    if (name == "slow" || name == "crash")
      (name == "slow" ? cfg.slow : cfg.crash).clear();
  for (auto& [name, value] : flags)
    if (name != "config")
      apply(cfg, name, value, "");
  validate(cfg);
  return cfg;
}

std::vector<std::string> to_args(const experiment_config& cfg) {
  auto auto_or = [](int64_t x) { return x == 0 ? std::string("auto") : std::to_string(x); };
  auto number = [](double x) {
    char text[40];
    std::snprintf(text, sizeof(text), "%.17g", x);
    return std::string(text);
  };
  std::vector<std::string> a{"--algorithm", cfg.algorithm, "--workers", std::to_string(cfg.workers),
                             "--model", cfg.model, "--dataset", cfg.dataset, "--data-dir",
                             cfg.data_dir, "--max-features", std::to_string(cfg.max_features),
                             "--partition", cfg.partition, "--epochs", number(cfg.epochs),
                             "--steps", std::to_string(cfg.steps), "--batch",
                             batch_spec(cfg), "--test-fraction", number(cfg.test_fraction),
                             "--lr", number(cfg.lr),
                             "--lr-schedule", cfg.lr_schedule, "--reg", cfg.reg,
                             "--seed", std::to_string(cfg.seed), "--threads",
                             auto_or(cfg.threads), "--spin-polls",
                             auto_or(cfg.spin_polls), "--scheduler", cfg.scheduler,
                             "--eval-every",
                             std::to_string(cfg.eval_every), "--timeout",
                             std::to_string(cfg.timeout_ms) + "ms", "--backend", cfg.backend};
  if (cfg.target_acc >= 0)
    a.insert(a.end(), {"--target-acc", number(cfg.target_acc)});
  std::string devices;
  for (int d : cfg.devices)
    devices += (devices.empty() ? "" : ",") + std::to_string(d);
  a.insert(a.end(), {"--devices", devices});
  for (auto [flag, value] : {std::pair{"--slow", &cfg.slow}, {"--delay", &cfg.delay},
                             {"--link-delay", &cfg.link_delay}, {"--link", &cfg.link}, {"--crash", &cfg.crash},
                             {"--byzantine", &cfg.byzantine}})
    if (!value->empty())
      a.insert(a.end(), {flag, *value});
  for (auto& [key, value] : cfg.options) {
    std::string flag = key;
    std::replace(flag.begin(), flag.end(), '_', '-');
    auto* opt = find_option(flag);
    if (opt == nullptr)
      continue;  // set by the runner itself (seed), not a flag
    a.push_back("--" + flag);
    if (!opt->arg.empty())
      a.push_back(value);
  }
  return a;
}

bool is_train_option(const std::string& name, bool* takes_value) {
  auto* opt = find_option(name);
  if (opt == nullptr || name == "config")
    return false;
  if (takes_value)
    *takes_value = !opt->arg.empty();
  return true;
}

std::string train_help() {
  std::ostringstream out;
  out << "usage: chorus train [--config FILE] [options]\n\n"
         "Trains a model with N worker actors and one protocol, prints a progress line per\n"
         "evaluation and ends with one JSON summary line (test_acc, wall_s, samples_per_s,\n"
         "time_to_target_s when --target-acc is given).\n\noptions:\n";
  for (auto& o : option_table()) {
    std::string head = "  --" + o.name + (o.arg.empty() ? "" : " " + o.arg);
    if (head.size() < help_indent)
      head.append(help_indent - head.size(), ' ');
    else
      head += "\n" + std::string(help_indent, ' ');
    out << head << o.help << "\n";
  }
  out << "\nexample:\n  chorus train --algorithm sync_sgd --workers 4 --model mlp:256 "
         "--dataset fashion-mnist \\\n      --partition dirichlet:0.3 --epochs 2 --lr 0.1 "
         "--reg l1:1e-5 --out runs/demo\n";
  return out.str();
}

} // namespace chorus
