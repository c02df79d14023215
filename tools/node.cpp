#include "tools/node.hpp"

#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <stdexcept>
#include <thread>

#include <caf/all.hpp>
#include <unistd.h>

#include "actors/system.hpp"
#include "actors/nccl_group.hpp"
#include "actors/nccl_nodes.hpp"
#include "actors/worker.hpp"
#include "algorithms/compressed_link.hpp"
#include "algorithms/registry.hpp"
#include "messages/errors.hpp"
#include "messages/type_ids.hpp"
#include "tools/cluster.hpp"
#include "tools/experiment.hpp"
#include "tools/interrupt.hpp"
#include "tools/options.hpp"

namespace chorus {

namespace {

// How long a node's actor system may take to shut down after the node ended.
constexpr std::chrono::seconds shutdown_grace{15};

struct node_state {
  node_options opts;
  std::string name;  // "host:pid"
  struct job {
    caf::actor_addr owner;
    std::vector<worker_actor> workers;  // by position in `ranks`
    std::vector<int32_t> ranks;
    std::vector<caf::actor> peers;      // spawned beside the workers (and NCCL ranks)
    // Raised before the job's NCCL ranks are told to exit: a rank blocked
    // in NCCL gives up at once (null without --allreduce nccl).
    std::shared_ptr<std::atomic<bool>> nccl_cancel;
    experiment_config cfg;
    train_test data;
    partition parts;
  };
  std::vector<job> jobs;
  bool served = false;
  // Every worker and peer ever spawned here (weak: ended ones do not stay).
  std::shared_ptr<std::vector<caf::weak_actor_ptr>> spawned
    = std::make_shared<std::vector<caf::weak_actor_ptr>>();
  // The data of the last job, kept for the next one with the same source.
  std::string data_key;
  train_test data;
};

using node_self = node_actor::stateful_pointer<node_state>;

std::string hex(uint64_t x) {
  char text[17];
  std::snprintf(text, sizeof(text), "%016llx", static_cast<unsigned long long>(x));
  return text;
}

void say(const std::string& name, const std::string& line) {
  // One write, so lines of several nodes sharing a terminal do not mix.
  std::cerr << ("chorus node " + name + ": " + line + "\n") << std::flush;
}

// Ends the job of `owner` (if any): its workers get an exit.
void end_job(node_self self, const caf::actor_addr& owner, const std::string& why) {
  auto& st = self->state;
  // A --once node released by the coordinator that started it is done,
  // whether or not a job came (the run may have failed before).
  st.served = st.served || why == "released";
  for (auto it = st.jobs.begin(); it != st.jobs.end(); ++it) {
    if (it->owner != owner)
      continue;
    if (it->nccl_cancel)
      it->nccl_cancel->store(true, std::memory_order_release);
    for (auto& w : it->workers)
      self->send_exit(w, caf::exit_reason::user_shutdown);
    for (auto& p : it->peers)
      self->send_exit(p, caf::exit_reason::user_shutdown);
    say(st.name, "job with " + std::to_string(it->workers.size()) + " worker(s) ended (" + why + ")");
    st.jobs.erase(it);
    break;
  }
  if (st.opts.once && st.served && st.jobs.empty())
    self->quit();
}

hosted_workers take_job(node_self self, const node_job& job) {
  auto& st = self->state;
  bool help = false;
  auto cfg = parse_train_args(job.args, &help);
  if (help)
    throw std::invalid_argument("the job's flags ask for --help");
  if (!st.opts.data_dir.empty())
    cfg.data_dir = st.opts.data_dir;
  if (!st.opts.devices.empty())
    cfg.devices = st.opts.devices;
  auto injections = validate(cfg);
  auto key = cfg.dataset + "\n" + cfg.data_dir + "\n" + std::to_string(cfg.seed) + "\n"
             + std::to_string(cfg.max_features) + "\n" + std::to_string(cfg.test_fraction);
  if (key != st.data_key) {
    st.data = {};
    st.data = load_dataset(cfg.dataset, data_options(cfg));
    st.data_key = key;
  }
  auto parts = plan_partition(cfg, *st.data.train);
  uplink_compression uplink;
  const auto& algo = find_algorithm(cfg.algorithm);
  // Gradient protocols only: a gossip protocol's --compress (choco_gossip)
  // compresses what its peers send each other, not the worker's gradient.
  if (!algo.spawn_peer && std::any_of(algo.options.begin(), algo.options.end(),
                  [](const protocol_option& o) { return o.key == "compress"; }))
    uplink = read_uplink_compression(make_context(cfg, st.data, parts).plan);
  hosted_workers out;
  out.node = st.name;
  out.fingerprint = fingerprint(st.data);
  // --allreduce nccl (the coordinator refused it where it cannot work): one
  // NCCL rank per worker on the worker's GPU, a stage in front of each
  // worker, and the unique id made here when this node hosts worker 0.
  const bool nccl = nccl_all_reduce(cfg);
  std::shared_ptr<std::atomic<bool>> cancel;
  std::vector<caf::actor> ranks;
  if (nccl) {
    // Every worker of this job is on this node (node index 0 here).
    check_one_gpu_per_rank(std::vector<int>(job.ranks.size(), 0), {cfg.devices},
                           [&](size_t) { return "node " + st.name; });
    if (std::find(job.ranks.begin(), job.ranks.end(), 0) != job.ranks.end())
      out.nccl_id.push_back(make_nccl_id());  // throws without a GPU: the job is refused
    cancel = std::make_shared<std::atomic<bool>>(false);
  }
  const nccl_wait wait{nccl_join_timeout(std::chrono::milliseconds(cfg.timeout_ms)), cancel};
  std::vector<worker_actor> spawned;
  try {
    for (size_t k = 0; k < job.ranks.size(); ++k) {
      const auto rank = job.ranks[k];
      if (rank < 0 || rank >= cfg.workers)
        throw std::invalid_argument("rank " + std::to_string(rank) + " outside 0.."
                                    + std::to_string(cfg.workers - 1));
      auto wc = make_worker_config(cfg, st.data, parts, injections, rank);
      // This node's devices go to its own workers in turn: the k-th worker it
      // hosts gets device k (mod their number), whatever the global ranks.
      wc.device = node_device(cfg.devices, k);
      auto w = spawn_worker(self->system(), std::move(wc));
      st.spawned->push_back(caf::actor_cast<caf::weak_actor_ptr>(w));
      // The uplink's encoder goes beside the worker, so the network carries
      // the encoded gradient (the coordinator installs only the decoders).
      if (uplink.any())
        w = spawn_encoding_uplink(self->system(), w, uplink, cfg.seed);
      if (nccl) {
        auto r = spawn_nccl_rank(self->system(), rank, cfg.workers, node_device(cfg.devices, k), wait);
        ranks.push_back(caf::actor_cast<caf::actor>(r));
        st.spawned->push_back(caf::actor_cast<caf::weak_actor_ptr>(r));
        out.nccl_ranks.push_back(caf::actor_cast<caf::strong_actor_ptr>(r));
        w = spawn_all_reduce_stage(self->system(), w, r, rank == 0, wait.timeout);
      }
      spawned.push_back(w);
      st.spawned->push_back(caf::actor_cast<caf::weak_actor_ptr>(w));
      out.workers.push_back(caf::actor_cast<caf::strong_actor_ptr>(w));
    }
  } catch (...) {
    if (cancel)
      cancel->store(true, std::memory_order_release);
    for (auto& w : spawned)
      self->send_exit(w, caf::exit_reason::user_shutdown);
    for (auto& r : ranks)
      self->send_exit(r, caf::exit_reason::user_shutdown);
    throw;
  }
  if (cfg.backend == "cuda") {
    std::string placed;
    for (size_t k = 0; k < job.ranks.size(); ++k)
      placed += (k ? ", " : "") + ("worker " + std::to_string(job.ranks[k]) + " on GPU "
                                   + std::to_string(node_device(cfg.devices, k)));
    std::cerr << "[chorus node " << st.name << "] " << placed << std::endl;
  }
  auto owner = self->current_sender();
  st.jobs.push_back({caf::actor_cast<caf::actor_addr>(owner), std::move(spawned), job.ranks,
                     std::move(ranks), std::move(cancel), cfg, st.data, std::move(parts)});
  self->monitor(owner);
  st.served = true;
  say(st.name, "hosting " + std::to_string(job.ranks.size()) + " worker(s) for " + to_string(owner));
  return out;
}

// The job `owner` gave this node, or null.
node_state::job* job_of(node_self self, const caf::actor_addr& owner) {
  for (auto& j : self->state.jobs)
    if (j.owner == owner)
      return &j;
  return nullptr;
}

caf::actor spawn_peer_beside(node_self self, int32_t rank, const caf::actor& coordinator,
                             const caf::actor& monitor, const caf::actor& owner) {
  auto* job = job_of(self, owner.address());
  if (job == nullptr)
    throw std::invalid_argument("no job of this coordinator here");
  auto at = std::find(job->ranks.begin(), job->ranks.end(), rank);
  if (at == job->ranks.end())
    throw std::invalid_argument("worker " + std::to_string(rank) + " is not hosted here");
  auto ctx = make_context(job->cfg, job->data, job->parts);
  ctx.workers.assign(static_cast<size_t>(job->cfg.workers), worker_actor{});
  ctx.workers[static_cast<size_t>(rank)] = job->workers[static_cast<size_t>(at - job->ranks.begin())];
  ctx.monitor = caf::actor_cast<monitor_actor>(monitor);
  ctx.report_models = false;  // the coordinator fetches models when it evaluates
  auto peer = spawn_algorithm_peer(self->system(), job->cfg.algorithm, std::move(ctx), rank, coordinator);
  job->peers.push_back(peer);
  self->state.spawned->push_back(caf::actor_cast<caf::weak_actor_ptr>(peer));
  return peer;
}

node_actor::behavior_type node_behavior(node_self self, node_options opts) {
  auto& st = self->state;
  st.opts = std::move(opts);
  char host[256] = "?";
  ::gethostname(host, sizeof(host) - 1);
  st.name = std::string(host) + ":" + std::to_string(::getpid());
  self->set_down_handler([self](caf::down_msg& msg) {
    end_job(self, msg.source, "its coordinator is gone: " + to_string(msg.reason));
  });
  // However the node ends, what it spawned ends with it. An attached
  // functor runs after the state is gone (CAF destroys a stateful actor's
  // state before it runs them), so it holds its own list.
  self->attach_functor([spawned = st.spawned](const caf::error&) {
    for (auto& weak : *spawned)
      if (auto strong = weak.lock())
        caf::anon_send_exit(caf::actor_cast<caf::actor>(strong), caf::exit_reason::user_shutdown);
  });
  return {
    [self](hello_atom, const std::string& their_version, uint64_t their_types)
      -> caf::result<std::string> {
      auto& st = self->state;
      if (their_version != version || their_types != type_table_hash()) {
        auto why = "version mismatch: this node runs Chorus " + std::string(version)
                   + " (message types " + hex(type_table_hash()) + "), the coordinator "
                   + their_version + " (message types " + hex(their_types)
                   + "); run the same build everywhere";
        say(st.name, "refused a coordinator: " + why);
        return make_error(errc::bad_request, "node " + st.name + " refused: " + why);
      }
      return st.name;
    },
    [self](devices_atom) {
      auto& d = self->state.opts.devices;
      return node_devices{std::vector<int32_t>(d.begin(), d.end())};
    },
    [self](host_atom, node_job& job) -> caf::result<hosted_workers> {
      try {
        return take_job(self, job);
      } catch (const std::exception& e) {
        say(self->state.name, std::string("refused a job: ") + e.what());
        return make_error(errc::bad_request, "node " + self->state.name + ": " + e.what());
      }
    },
    [self](peer_atom, int32_t rank, caf::actor& coordinator, caf::actor& monitor,
           caf::actor& owner) -> caf::result<caf::strong_actor_ptr> {
      // Asked by the run's protocol actor; `owner` names the job.
      try {
        return caf::actor_cast<caf::strong_actor_ptr>(
          spawn_peer_beside(self, rank, coordinator, monitor, owner));
      } catch (const std::exception& e) {
        return make_error(errc::bad_request, "node " + self->state.name + ": peer " + std::to_string(rank)
                                               + ": " + e.what());
      }
    },
    [self](mesh_atom, const std::string& endpoints) -> caf::result<ok_atom> {
      // Blocks this node actor while it connects; it serves nothing else
      // during a run's setup anyway.
      auto& st = self->state;
      size_t at = 0;
      while (at < endpoints.size()) {
        auto comma = std::min(endpoints.find(',', at), endpoints.size());
        auto text = endpoints.substr(at, comma - at);
        at = comma + 1;
        try {
          auto ep = parse_endpoint(text, "mesh");
          auto ptr = connect_actor(self->system(), ep, st.opts.tls, std::chrono::seconds(30));
          if (!ptr)
            return make_error(errc::worker_lost, "node " + st.name + " cannot reach node " + text
                                                   + ": " + describe(ptr.error()));
        } catch (const std::exception& e) {
          return make_error(errc::bad_request, "node " + st.name + ": " + e.what());
        }
      }
      return ok_atom_v;
    },
    [self](release_atom) {
      end_job(self, caf::actor_cast<caf::actor_addr>(self->current_sender()), "released");
    },
    [](traffic_atom) -> caf::result<uint64_t, uint64_t> {
      return {buffer_stats::bytes_sent(), buffer_stats::bytes_received()};
    },
  };
}

// The rank a cluster launcher gave this process, or -1.
int32_t launcher_rank() {
  for (const char* name : {"SLURM_PROCID", "OMPI_COMM_WORLD_RANK", "PMI_RANK"})
    if (const char* v = std::getenv(name)) {
      char* end = nullptr;
      long r = std::strtol(v, &end, 10);
      if (end != v && *end == '\0' && r >= 0 && r < 1000000)
        return static_cast<int32_t>(r);
    }
  return -1;
}

// Registers `node` (listening at `listen`) at the registrar published at
// `coordinator`; returns the registrar to watch.
caf::expected<caf::actor> register_at(caf::actor_system& sys, caf::scoped_actor& self,
                                      const node_actor& node, const std::string& coordinator,
                                      endpoint listen, const tls_options& tls) {
  auto at = parse_endpoint(coordinator, "--coordinator");
  auto ptr = connect_actor(sys, at, tls, std::chrono::seconds(60));
  if (!ptr)
    return make_error(errc::worker_lost, "cannot register at coordinator " + at.str() + ": "
                                           + describe(ptr.error()));
  // Others reach this node at its listen address; a wildcard one is
  // advertised by host name.
  if (listen.host == "0.0.0.0" || listen.host == "::" || listen.host.empty()) {
    char host[256] = "localhost";
    ::gethostname(host, sizeof(host) - 1);
    listen.host = host;
  }
  auto registrar = caf::actor_cast<caf::actor>(*ptr);
  caf::error refused;
  self->request(registrar, std::chrono::seconds(60), register_atom_v, launcher_rank(),
                caf::actor_cast<caf::actor>(node), listen.str())
    .receive([](ok_atom) {}, [&](caf::error& err) { refused = std::move(err); });
  if (refused)
    return make_error(errc::bad_request, "coordinator " + at.str() + " refused this node: "
                                           + describe(refused));
  return registrar;
}

int32_t to_count(const std::string& flag, const std::string& v) {
  if (v.empty() || v.size() > 6 || v.find_first_not_of("0123456789") != std::string::npos)
    throw std::invalid_argument(flag + " needs a whole number, got '" + v.substr(0, 40) + "'");
  return std::stoi(v);
}

} // namespace

node_actor spawn_node(caf::actor_system& sys, node_options opts) {
  return sys.spawn(node_behavior, std::move(opts));
}

std::string node_help() {
  return "usage: chorus node [--listen HOST:PORT] [options]\n\n"
         "Hosts workers for `chorus train --nodes HOST:PORT,...` run elsewhere (or started by\n"
         "`chorus train --processes N`). Loads the data itself: give it the same files.\n"
         "Prints 'chorus node: listening on HOST:PORT' once it serves.\n\noptions:\n"
         "  --listen HOST:PORT    where to listen [127.0.0.1:0, port 0: any free port]; an\n"
         "                        address off this host needs --tls-* (or --insecure)\n"
         "  --data-dir DIR        where this host keeps Fashion-MNIST [the coordinator's]\n"
         "  --devices I[,I...]    GPUs for cuda workers on this host [the coordinator's]\n"
         "  --threads T           CAF scheduler threads [all cores]\n"
         "  --scheduler NAME      CAF scheduler: auto | stealing | sharing [auto: sharing,\n"
         "                        since a node's coordinator and peers are other processes;\n"
         "                        `chorus train --processes` passes its own choice]\n"
         "  --spin-polls N        idle scheduler threads poll N times before they nap [100]\n"
         "  --data-plane NAME     how buffers of >= 256 KiB leave this node: caf | ucx | auto\n"
         "                        (ucx when built with it, caf with TLS) [auto]\n"
         "  --once                exit when the first run's job ends\n"
         "  --coordinator H:P     register at `chorus train --await-nodes N --listen H:P` and\n"
         "                        exit when its run ends; the rank comes from SLURM_PROCID,\n"
         "                        OMPI_COMM_WORLD_RANK or PMI_RANK when set (else: arrival)\n"
         "  --tls-cert FILE       this node's certificate (PEM): mutual TLS\n"
         "  --tls-key FILE        its key (passphrase from CHORUS_TLS_PASSPHRASE)\n"
         "  --tls-ca FILE         the CA a coordinator's certificate must come from\n"
         "  --insecure            listen off loopback without TLS: anyone who reaches the\n"
         "                        port can send it messages, and a forged header can make it\n"
         "                        allocate up to 4 GiB (CAF 0.17 has no size limit)\n";
}

int node_main(const std::vector<std::string>& args) {
  node_options opts;
  std::string cert, key, ca;
  std::string data_plane_choice = "auto";
  try {
    for (size_t i = 0; i < args.size(); ++i) {
      const auto& a = args[i];
      auto value = [&]() -> std::string {
        if (i + 1 >= args.size())
          throw std::invalid_argument(a + " needs a value");
        return args[++i];
      };
      if (a == "--help" || a == "-h") {
        std::cout << node_help();
        return 0;
      } else if (a == "--listen") {
        opts.listen = parse_endpoint(value(), "--listen");
      } else if (a == "--data-dir") {
        opts.data_dir = value();
      } else if (a == "--devices") {
        auto v = value();
        size_t at = 0;
        while (at <= v.size()) {
          auto comma = std::min(v.find(',', at), v.size());
          opts.devices.push_back(to_count("--devices", v.substr(at, comma - at)));
          at = comma + 1;
        }
      } else if (a == "--threads") {
        opts.threads = to_count("--threads", value());
        if (opts.threads < 1 || opts.threads > 256)
          throw std::invalid_argument("--threads must be between 1 and 256");
      } else if (a == "--spin-polls") {
        opts.spin_polls = to_count("--spin-polls", value());
        if (opts.spin_polls < 1)
          throw std::invalid_argument("--spin-polls must be between 1 and 999999");
      } else if (a == "--scheduler") {
        opts.scheduler = value();
        if (opts.scheduler == "auto")
          opts.scheduler = "sharing";
        if (opts.scheduler != "stealing" && opts.scheduler != "sharing")
          throw std::invalid_argument("unknown scheduler '" + opts.scheduler.substr(0, 40)
                                      + "' (valid: auto, stealing, sharing)");
      } else if (a == "--data-plane") {
        data_plane_choice = value();
        data_plane::parse(data_plane_choice == "auto" ? "caf" : data_plane_choice);
      } else if (a == "--once") {
        opts.once = true;
      } else if (a == "--tls-cert") {
        cert = value();
      } else if (a == "--tls-key") {
        key = value();
      } else if (a == "--tls-ca") {
        ca = value();
      } else if (a == "--insecure") {
        opts.insecure = true;
      } else if (a == "--coordinator") {
        opts.coordinator = value();
        parse_endpoint(opts.coordinator, "--coordinator");
        opts.once = true;
      } else {
        throw std::invalid_argument("unknown option '" + a.substr(0, 80) + "' (see chorus node --help)");
      }
    }
    opts.tls = make_tls(cert, key, ca);
    resolve_data_plane(data_plane_choice, opts.tls.enabled());
    if (!is_loopback(opts.listen.host) && !opts.tls.enabled() && !opts.insecure)
      throw std::invalid_argument(
        "--listen " + opts.listen.str() + " is reachable from other hosts: anyone who can connect "
        "could send this node messages. Use mutual TLS (--tls-cert, --tls-key, --tls-ca), or "
        "--insecure to accept that");
  } catch (const std::invalid_argument& e) {
    std::cerr << "chorus node: " << e.what() << "\n";
    return 2;
  }
  if (opts.insecure && !opts.tls.enabled() && !is_loopback(opts.listen.host))
    std::cerr << "chorus node: WARNING: --insecure: plain CAF port on " << opts.listen.str()
              << "; anyone who reaches it can send this node messages or make it allocate up to "
                 "4 GiB per connection\n";
  stop_switch stop;
  signal_watch signals(stop);
  try {
    use_data_plane(data_plane_choice, opts.tls.enabled(), !is_loopback(opts.listen.host));
    caf::actor_system_config cfg;
    auto threads = opts.threads > 0 ? static_cast<size_t>(opts.threads)
                                    : std::max(1u, std::thread::hardware_concurrency());
    configure_actor_system(cfg, threads, static_cast<size_t>(opts.spin_polls));
    configure_scheduler(cfg, opts.scheduler);
    configure_network(cfg, opts.tls);
    caf::actor_system sys{cfg};
    auto listen = opts.listen;
    auto tls = opts.tls;
    auto coordinator = opts.coordinator;
    auto node = spawn_node(sys, std::move(opts));
    auto port = publish_actor(sys, caf::actor_cast<caf::strong_actor_ptr>(node), listen, tls);
    if (!port) {
      caf::anon_send_exit(node, caf::exit_reason::user_shutdown);
      std::cerr << "chorus node: cannot listen on " << listen.str() << ": " << describe(port.error())
                << "\n";
      return 1;
    }
    listen.port = *port;
    std::cout << "chorus node: listening on " << listen.str() << std::endl;
    stop.attach([node](const std::string&) { caf::anon_send_exit(node, caf::exit_reason::user_shutdown); });
    {
      caf::scoped_actor self{sys};
      self->monitor(node);
      if (!coordinator.empty()) {
        auto registered = register_at(sys, self, node, coordinator, listen, tls);
        if (!registered) {
          caf::anon_send_exit(node, caf::exit_reason::user_shutdown);
          self->receive([](caf::down_msg&) {});
          std::cerr << "chorus node: " << describe(registered.error()) << "\n";
          stop.detach();
          return 1;
        }
        // The run ends with its registrar: end this node then, job or not.
        self->monitor(*registered);
      }
      bool node_ended = false;
      while (!node_ended)
        self->receive([&](caf::down_msg& msg) {
          if (msg.source == node.address())
            node_ended = true;
          else
            caf::anon_send_exit(node, caf::exit_reason::user_shutdown);
        });
    }
    stop.detach();
    report_data_plane("chorus node");
    // The actor system's destructor waits for every actor. The node's end
    // sent an exit to each one it spawned; an actor that still does not end
    // (stuck in a computation, or a user's actor that ignores exits) must not
    // leave a node process behind its coordinator: give up after a while.
    const int status = signals.exit_status();
    std::thread([status] {
      std::this_thread::sleep_for(shutdown_grace);
      std::cerr << "chorus node: actors still running " << shutdown_grace.count()
                << " s after the node ended; exiting without waiting for them\n";
      std::_Exit(status == 0 ? 1 : status);
    }).detach();
    return status;
  } catch (const std::exception& e) {
    std::cerr << "chorus node: " << e.what() << "\n";
    return signals.signal() ? signals.exit_status() : 1;
  }
}

} // namespace chorus
