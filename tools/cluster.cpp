#include "tools/cluster.hpp"

#include <algorithm>
#include <climits>
#include <iostream>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <stdexcept>
#include <thread>

#include <caf/all.hpp>
#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "actors/nccl_nodes.hpp"
#include "gpu/device.hpp"
#include "messages/json.hpp"
#include "messages/type_ids.hpp"

namespace chorus {

namespace {

void require(bool ok, const std::string& what) {
  if (!ok)
    throw std::invalid_argument(what);
}

// How long a finished node process may take to exit before it is stopped.
constexpr auto exit_grace = std::chrono::seconds(3);

// Waits for pid until `deadline`; true once it has been reaped.
bool reap(int pid, std::chrono::steady_clock::time_point deadline) {
  for (;;) {
    int status = 0;
    auto r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid || (r < 0 && errno == ECHILD))
      return true;
    if (std::chrono::steady_clock::now() >= deadline)
      return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

// Reads one line from fd before `deadline`; false on EOF, error or timeout.
bool read_line(int fd, std::string& line, std::chrono::steady_clock::time_point deadline) {
  line.clear();
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0)
      return false;
    pollfd p{fd, POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(std::min<long long>(left.count(), 1000)));
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      continue;
    char c;
    auto n = ::read(fd, &c, 1);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return false;
    if (c == '\n')
      return true;
    if (line.size() < 4096)
      line += c;
  }
}

} // namespace

tls_options tls_of(const experiment_config& cfg) {
  return make_tls(cfg.tls_cert, cfg.tls_key, cfg.tls_ca);
}

void check_cluster_options(const experiment_config& cfg) {
  require(cfg.processes >= 0 && cfg.processes <= 256, "--processes must be between 0 and 256");
  require(cfg.processes == 0 || cfg.nodes.empty(),
          "give --processes (nodes started here) or --nodes (nodes already running), not both");
  require(cfg.nodes.size() <= 4096, "--nodes: at most 4096 nodes");
  require(cfg.await_nodes >= 0 && cfg.await_nodes <= 4096, "--await-nodes must be between 0 and 4096");
  require(cfg.await_nodes == 0 || (cfg.processes == 0 && cfg.nodes.empty()),
          "give one of --processes, --nodes and --await-nodes");
  auto tls = tls_of(cfg);
  resolve_data_plane(cfg.data_plane, tls.enabled());  // throws invalid_argument saying why
  if (!distributed(cfg))
    return;
  if (tls.enabled())
    require(!tls.cert.empty() && !tls.key.empty() && !tls.ca.empty(),
            "TLS needs all of --tls-cert, --tls-key and --tls-ca");
  const int count = cfg.processes > 0   ? cfg.processes
                    : cfg.await_nodes > 0 ? cfg.await_nodes
                                          : static_cast<int>(cfg.nodes.size());
  if (cfg.await_nodes > 0) {
    auto ep = parse_endpoint(cfg.listen, "--listen");
    require(is_loopback(ep.host) || tls.enabled() || cfg.insecure,
            "--listen " + cfg.listen + " is reachable from other hosts: use mutual TLS (--tls-cert, "
            "--tls-key, --tls-ca), or say --insecure to accept plain registrations");
  }
  for (auto& n : cfg.nodes) {
    auto ep = parse_endpoint(n, "--nodes");
    require(ep.port != 0, "--nodes " + n + ": port 0 names no running node");
    require(is_loopback(ep.host) || tls.enabled() || cfg.insecure,
            "--nodes " + n + " is not on this host: connect with mutual TLS (--tls-cert, "
            "--tls-key, --tls-ca), or say --insecure to send plain messages over the network");
  }
  // The node processes --processes starts get their devices from here;
  // other nodes report theirs in the handshake (1 each stands in here).
  std::vector<std::vector<int>> devices(static_cast<size_t>(count), std::vector<int>{0});
  if (cfg.processes > 0)
    for (int p = 0; p < count; ++p)
      devices[static_cast<size_t>(p)] = node_devices_of(cfg, p);
  std::vector<int> counts;
  for (auto& d : devices)
    counts.push_back(static_cast<int>(d.size()));
  auto placed = resolve_placement(cfg.placement, cfg.backend, cfg.workers, counts);
  if (!nccl_all_reduce(cfg))
    return;
  // --allreduce nccl across processes: what cannot work is refused here,
  // before any process starts.
  require(cfg.backend == "cuda", "--allreduce nccl across processes needs --backend cuda (NCCL "
                                 "all-reduces the workers' GPU memory)");
  require(cfg.byzantine.empty(),
          "--byzantine with --allreduce nccl across processes: the workers' vectors are averaged "
          "on their nodes before any reply reaches the attack decorators (use --allreduce none)");
  require(cfg.crash.empty(), "--crash with --allreduce nccl across processes: an NCCL "
                             "communicator cannot lose a rank (use --allreduce none)");
  if (cfg.processes > 0)
    check_one_gpu_per_rank(placed, devices, [](size_t p) {
      return "node process " + std::to_string(p);
    });
  require(device::built_with_cuda(),
          "--allreduce nccl across processes needs a build with CUDA and NCCL; this one has "
          "none (configure where nvcc is found, or with -DCHORUS_ENABLE_CUDA=ON)");
}

bool nccl_all_reduce(const experiment_config& cfg) {
  auto it = cfg.options.find("allreduce");
  return it != cfg.options.end() && it->second == "nccl";
}

std::vector<int> place_by_devices(const std::vector<int>& device_counts, int workers) {
  require(!device_counts.empty(), "no node to place workers on");
  int most = 0;
  for (int c : device_counts) {
    require(c >= 1, "a node without devices cannot host cuda workers");
    most = std::max(most, c);
  }
  std::vector<int> slots;  // node of each device slot, in the order they fill
  for (int d = 0; d < most; ++d)
    for (size_t n = 0; n < device_counts.size(); ++n)
      if (d < device_counts[n])
        slots.push_back(static_cast<int>(n));
  std::vector<int> at(static_cast<size_t>(std::max(workers, 0)));
  for (size_t i = 0; i < at.size(); ++i)
    at[i] = slots[i % slots.size()];
  return at;
}

std::vector<int> resolve_placement(const std::string& spec, const std::string& backend,
                                   int workers, const std::vector<int>& device_counts) {
  if (spec == "devices" || (spec == "auto" && backend == "cuda"))
    return place_by_devices(device_counts, workers);
  return place_workers(spec == "auto" ? "round-robin" : spec, workers,
                       static_cast<int>(device_counts.size()));
}

void check_one_gpu_per_rank(const std::vector<int>& placement,
                            const std::vector<std::vector<int>>& node_devices,
                            const std::function<std::string(size_t)>& label) {
  for (size_t n = 0; n < node_devices.size(); ++n) {
    std::vector<int> ranks;
    for (size_t r = 0; r < placement.size(); ++r)
      if (placement[r] == static_cast<int>(n))
        ranks.push_back(static_cast<int>(r));
    auto distinct = node_devices[n];
    std::sort(distinct.begin(), distinct.end());
    distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
    if (ranks.size() <= distinct.size())
      continue;
    std::string workers, gpus;
    for (int r : ranks)
      workers += (workers.empty() ? "" : ",") + std::to_string(r);
    for (int d : node_devices[n])
      gpus += (gpus.empty() ? "" : ",") + std::to_string(d);
    throw std::invalid_argument(
      label(n) + " would host workers " + workers + " on " + std::to_string(distinct.size())
      + " GPU(s) [" + gpus + "]: --allreduce nccl gives every worker an NCCL rank and NCCL "
      "allows one rank per GPU; give that node more --devices, or run fewer --workers");
  }
}

bool nodes_off_host(const experiment_config& cfg) {
  if (cfg.await_nodes > 0)
    return !is_loopback(parse_endpoint(cfg.listen, "--listen").host);
  return std::any_of(cfg.nodes.begin(), cfg.nodes.end(), [](const std::string& n) {
    return !is_loopback(parse_endpoint(n, "--nodes").host);
  });
}

std::vector<int> process_devices(const std::vector<int>& devices, int processes, int p) {
  std::vector<int> share;
  if (processes < 1 || p < 0 || p >= processes || static_cast<int>(devices.size()) < processes)
    return share;  // fewer GPUs than processes: every node keeps them all
  for (size_t j = static_cast<size_t>(p); j < devices.size(); j += static_cast<size_t>(processes))
    share.push_back(devices[j]);
  return share;
}

std::vector<int> node_devices_of(const experiment_config& cfg, int p) {
  auto share = process_devices(cfg.devices, cfg.processes, p);
  return share.empty() ? cfg.devices : share;
}

std::chrono::milliseconds nccl_join_timeout(std::chrono::milliseconds timeout) {
  return std::max<std::chrono::milliseconds>(timeout, std::chrono::minutes(2));
}

int node_device(const std::vector<int>& devices, size_t k) {
  return devices.empty() ? 0 : devices[k % devices.size()];
}

std::vector<int> place_workers(const std::string& spec, int workers, int nodes) {
  require(nodes >= 1, "no node to place workers on");
  std::vector<int> at(static_cast<size_t>(workers));
  if (spec == "round-robin") {
    for (int i = 0; i < workers; ++i)
      at[static_cast<size_t>(i)] = i % nodes;
    return at;
  }
  if (spec == "block") {
    // Contiguous ranks, the first (workers mod nodes) nodes one more.
    int base = workers / nodes, extra = workers % nodes, rank = 0;
    for (int n = 0; n < nodes; ++n)
      for (int k = 0; k < base + (n < extra ? 1 : 0); ++k)
        at[static_cast<size_t>(rank++)] = n;
    return at;
  }
  std::vector<int> given;
  std::string item;
  for (size_t i = 0; i <= spec.size(); ++i) {
    if (i == spec.size() || spec[i] == ',') {
      require(!item.empty() && item.size() <= 6
                && item.find_first_not_of("0123456789") == std::string::npos,
              "--placement '" + spec.substr(0, 80)
                + "': expected round-robin, block, or one node index per worker (0,0,1,1)");
      given.push_back(std::stoi(item));
      item.clear();
    } else {
      item += spec[i];
    }
  }
  require(static_cast<int>(given.size()) == workers,
          "--placement names " + std::to_string(given.size()) + " node(s) for "
            + std::to_string(workers) + " workers: give one per worker");
  for (int n : given)
    require(n < nodes, "--placement: node index " + std::to_string(n) + " but there are only "
                         + std::to_string(nodes) + " node(s) (indices from 0)");
  return given;
}

// While the run is set up, the coordinator waits for one node's reply at a
// time, and CAF answers a request to a node that died only when the
// request's own timeout expires (FACTS.md §2): a node killed while it loads
// its data would be noticed after --timeout plus the two minutes that
// loading may take. So the cluster's actor monitors every node as soon as it
// has its handle (CAF reports a closed connection at once, a silent one after
// the heartbeats' connection timeout, network.hpp), and every wait for a
// reply looks at its down messages between short slices of waiting: a node
// gone at any point of the set-up ends it with an error naming that node.
namespace {
constexpr auto watch_slice = std::chrono::milliseconds(100);
} // namespace

void cluster::watch(size_t i) {
  (*self_)->monitor(members_[i].handle);
}

bool cluster::next_down(size_t& node, caf::error& reason) {
  caf::actor_addr source;
  // A blocking actor keeps the down messages it skipped while it waited for
  // a reply; one look at the mailbox, without waiting.
  (*self_)->receive(
    [&](caf::down_msg& dm) {
      source = dm.source;
      reason = std::move(dm.reason);
    },
    caf::after(std::chrono::seconds(0)) >> [] {});
  if (!source)
    return false;
  node = members_.size();
  for (size_t i = 0; i < members_.size(); ++i)
    if (members_[i].handle && members_[i].handle.address() == source)
      node = i;
  return true;
}

void cluster::throw_if_a_node_is_gone() {
  size_t i = 0;
  caf::error reason;
  while (next_down(i, reason))
    if (i < members_.size())
      throw std::runtime_error(label(i) + " is gone while the run was being set up ("
                               + chorus::describe(reason)
                               + "): its process ended or its connection dropped");
}

template <class Handle, class OnReply>
caf::error cluster::await_reply(Handle& request, OnReply on_reply) {
  caf::error failed;
  for (;;) {
    throw_if_a_node_is_gone();
    bool sliced = false;
    caf::blocking_actor::accept_one_cond once;
    (*self_)->varargs_receive(once, request.id(), on_reply,
                              [&](caf::error& err) { failed = std::move(err); },
                              caf::after(watch_slice) >> [&] { sliced = true; });
    if (!sliced)
      return failed;
  }
}

cluster::cluster(caf::actor_system& sys, const experiment_config& cfg)
  : sys_(sys), timeout_(cfg.timeout_ms), tls_(tls_of(cfg)), scheduler_(scheduler_policy(cfg)),
    data_plane_(data_plane::name(resolve_data_plane(cfg.data_plane, tls_.enabled()))),
    devices_(cfg.devices), backend_(cfg.backend), nccl_(nccl_all_reduce(cfg)) {
  self_ = std::make_unique<caf::scoped_actor>(sys_);
  const int count = cfg.processes > 0   ? cfg.processes
                    : cfg.await_nodes > 0 ? cfg.await_nodes
                                          : static_cast<int>(cfg.nodes.size());
  members_.resize(static_cast<size_t>(count));
  try {
    if (cfg.processes > 0) {
      // Their devices come from here: placed before they start (each gets
      // as many scheduler threads as workers).
      for (int p = 0; p < count; ++p)
        members_[static_cast<size_t>(p)].devices = node_devices_of(cfg, p);
      place(cfg);
      start_processes(count, cfg.node_program.empty() ? "/proc/self/exe" : cfg.node_program);
    } else if (cfg.await_nodes > 0) {
      await_registrations(parse_endpoint(cfg.listen, "--listen"));
    } else {
      for (size_t i = 0; i < members_.size(); ++i)
        members_[i].at = parse_endpoint(cfg.nodes[i], "--nodes");
    }
    for (size_t i = 0; i < members_.size(); ++i) {
      auto& m = members_[i];
      if (!m.handle) {  // registered nodes came with their handle
        auto ptr = connect_actor(sys_, m.at, tls_, timeout_);
        if (!ptr)
          throw std::runtime_error("node " + std::to_string(i) + ": " + chorus::describe(ptr.error()));
        m.handle = caf::actor_cast<node_actor>(*ptr);
      }
      watch(i);
      auto hello = (*self_)->request(m.handle, timeout_, hello_atom_v, std::string{version},
                                     type_table_hash());
      auto refused = await_reply(hello, [&](std::string& name) { m.name = std::move(name); });
      if (refused == caf::sec::request_timeout)
        throw std::runtime_error("node " + std::to_string(i) + " at " + m.at.str()
                                 + " did not answer hello within " + std::to_string(timeout_.count())
                                 + " ms (is a Chorus node listening there, and not stopped?)");
      if (refused)
        throw std::runtime_error("node " + std::to_string(i) + " at " + m.at.str() + ": "
                                 + chorus::describe(refused));
      // Same version from here on: the node says which GPUs it has.
      auto devices = (*self_)->request(m.handle, timeout_, devices_atom_v);
      refused = await_reply(devices, [&](node_devices& d) {
        m.devices.assign(d.devices.begin(), d.devices.end());
        if (m.devices.empty())
          m.devices = devices_;  // it takes the coordinator's list
      });
      if (refused)
        throw std::runtime_error(label(i) + " did not say which devices it has: "
                                 + chorus::describe(refused));
    }
    if (cfg.processes == 0)
      place(cfg);
    if (nccl_) {
      std::vector<int> placed(static_cast<size_t>(cfg.workers));
      std::vector<std::vector<int>> devices;
      for (size_t n = 0; n < members_.size(); ++n) {
        devices.push_back(members_[n].devices);
        for (auto r : members_[n].ranks)
          placed[static_cast<size_t>(r)] = static_cast<int>(n);
      }
      check_one_gpu_per_rank(placed, devices, [this](size_t n) { return label(n); });
    }
  } catch (...) {
    stop_processes();
    throw;
  }
}

void cluster::place(const experiment_config& cfg) {
  std::vector<int> counts;
  for (auto& m : members_)
    counts.push_back(std::max<int>(1, static_cast<int>(m.devices.size())));
  auto placed = resolve_placement(cfg.placement, cfg.backend, cfg.workers, counts);
  for (int r = 0; r < cfg.workers; ++r)
    members_[static_cast<size_t>(placed[static_cast<size_t>(r)])].ranks.push_back(r);
}

cluster::~cluster() {
  for (auto& m : members_)
    if (m.handle)
      (*self_)->send(m.handle, release_atom_v);
  if (registrar_)  // published: it must end before the actor system does
    caf::anon_send_exit(registrar_, caf::exit_reason::user_shutdown);
  self_.reset();
  stop_processes();
}

namespace {

// What the registrar collects: nodes by rank (-1: none given), in arrival order.
struct registration {
  int32_t rank;
  caf::actor node;
  std::string endpoint;
};

struct registrar_state {
  size_t expected = 0;
  std::vector<registration> got;
  caf::response_promise all;  // the cluster's wait
  bool waiting = false;
};

caf::behavior registrar(caf::stateful_actor<registrar_state>* self, size_t expected) {
  self->state.expected = expected;
  auto complete = [self] {
    auto& st = self->state;
    if (!st.waiting || st.got.size() < st.expected)
      return;
    st.waiting = false;
    std::vector<caf::actor> nodes;
    std::string endpoints;
    for (auto& r : st.got) {
      nodes.push_back(r.node);
      endpoints += (endpoints.empty() ? "" : ",") + std::to_string(r.rank) + "=" + r.endpoint;
    }
    st.all.deliver(nodes, endpoints);
  };
  return {
    [self, complete](register_atom, int32_t rank, caf::actor& node,
                     std::string& endpoint) -> caf::result<ok_atom> {
      auto& st = self->state;
      if (st.got.size() >= st.expected)
        return make_error(errc::bad_request, "this run already has its " + std::to_string(st.expected)
                                               + " nodes");
      if (rank >= static_cast<int32_t>(st.expected))
        return make_error(errc::bad_request, "rank " + std::to_string(rank) + " but the run waits for "
                                               + std::to_string(st.expected) + " nodes (ranks 0.."
                                               + std::to_string(st.expected - 1) + ")");
      for (auto& r : st.got)
        if (rank >= 0 && r.rank == rank)
          return make_error(errc::bad_request, "rank " + std::to_string(rank) + " registered twice");
      st.got.push_back({rank, std::move(node), std::move(endpoint)});
      complete();
      return ok_atom_v;
    },
    [self, complete](await_atom) {
      auto& st = self->state;
      st.all = self->make_response_promise();
      st.waiting = true;
      complete();
      return st.all;
    },
  };
}

} // namespace

void cluster::await_registrations(const endpoint& listen) {
  const size_t count = members_.size();
  registrar_ = sys_.spawn(registrar, count);
  auto port = publish_actor(sys_, caf::actor_cast<caf::strong_actor_ptr>(registrar_), listen, tls_);
  if (!port)
    throw std::runtime_error("cannot listen on " + listen.str() + " for nodes: "
                             + chorus::describe(port.error()));
  endpoint at = listen;
  at.port = *port;
  std::cerr << ("[chorus] waiting for " + std::to_string(count) + " node(s) to register at "
                + at.str() + " (chorus node --coordinator " + at.str() + ")\n")
            << std::flush;
  std::vector<caf::actor> nodes;
  std::string endpoints;
  caf::error failed;
  (*self_)
    ->request(registrar_, timeout_, await_atom_v)
    .receive(
      [&](std::vector<caf::actor>& n, std::string& e) {
        nodes = std::move(n);
        endpoints = std::move(e);
      },
      [&](caf::error& err) { failed = std::move(err); });
  if (failed)
    throw std::runtime_error("not every node registered at " + at.str() + " within "
                             + std::to_string(timeout_.count()) + " ms (" + chorus::describe(failed)
                             + ")");
  // Ranks the launcher gave go first, in rank order; then the others, in
  // the order they came.
  struct entry {
    int32_t rank;
    caf::actor node;
    std::string endpoint;
  };
  std::vector<entry> all;
  size_t at_item = 0;
  for (auto& node : nodes) {
    auto comma = std::min(endpoints.find(',', at_item), endpoints.size());
    auto item = endpoints.substr(at_item, comma - at_item);
    at_item = comma + 1;
    auto eq = item.find('=');
    all.push_back({std::stoi(item.substr(0, eq)), node, item.substr(eq + 1)});
  }
  std::stable_sort(all.begin(), all.end(), [](const entry& a, const entry& b) {
    return (a.rank < 0 ? INT32_MAX : a.rank) < (b.rank < 0 ? INT32_MAX : b.rank);
  });
  for (size_t i = 0; i < all.size(); ++i) {
    members_[i].handle = caf::actor_cast<node_actor>(all[i].node);
    members_[i].at = parse_endpoint(all[i].endpoint, "a registered node");
  }
}

void cluster::start_processes(int count, const std::string& program) {
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  const auto deadline = std::chrono::steady_clock::now() + timeout_;
  const pid_t parent = ::getpid();
  for (int i = 0; i < count; ++i) {
    auto& m = members_[static_cast<size_t>(i)];
    // As many scheduler threads as the node hosts workers (its share of
    // the cores), at least one.
    auto threads = std::to_string(std::clamp<size_t>(m.ranks.size(), 1, cores));
    std::vector<std::string> argv_text{program, "node", "--listen", "127.0.0.1:0", "--once",
                                       "--threads", threads, "--scheduler", scheduler_,
                                       "--data-plane", data_plane_};
    // One host, several processes: each takes its own share of the run's
    // GPUs (process p: devices p, p + P, ...), so `--processes 4 --devices
    // 0,1,2,3` is one process per GPU, as NCCL expects.
    auto share = process_devices(devices_, count, i);
    if (!share.empty()) {
      std::string list;
      for (int d : share)
        list += (list.empty() ? "" : ",") + std::to_string(d);
      argv_text.insert(argv_text.end(), {"--devices", list});
    }
    std::vector<char*> argv;
    for (auto& a : argv_text)
      argv.push_back(a.data());
    argv.push_back(nullptr);
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0)
      throw std::runtime_error(std::string("cannot start node processes: pipe: ") + std::strerror(errno));
    pid_t pid = ::fork();
    if (pid < 0) {
      ::close(fds[0]);
      ::close(fds[1]);
      throw std::runtime_error(std::string("cannot start node processes: fork: ") + std::strerror(errno));
    }
    if (pid == 0) {
      // Only async-signal-safe calls between fork and exec.
      // Its own process group: a Ctrl-C at the terminal reaches only the
      // coordinator, which stops the run after its step and then releases
      // the nodes; they still die with it (PDEATHSIG, and CAF's down).
      ::setpgid(0, 0);
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::getppid() != parent)
        ::_exit(1);
      ::dup2(fds[1], STDOUT_FILENO);  // dup2 clears close-on-exec on the copy
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(fds[1]);
    m.pid = pid;
    m.out_fd = fds[0];
  }
  for (int i = 0; i < count; ++i) {
    auto& m = members_[static_cast<size_t>(i)];
    std::string line;
    const std::string prefix = "chorus node: listening on ";
    if (!read_line(m.out_fd, line, deadline) || line.rfind(prefix, 0) != 0)
      throw std::runtime_error("node process " + std::to_string(i) + " (" + program + " node, pid "
                               + std::to_string(m.pid) + ") did not start listening within "
                               + std::to_string(timeout_.count()) + " ms"
                               + (line.empty() ? "" : ": it said '" + line + "'"));
    m.at = parse_endpoint(line.substr(prefix.size()), "node process " + std::to_string(i));
  }
}

void cluster::stop_processes() {
  auto deadline = std::chrono::steady_clock::now() + exit_grace;
  for (auto& m : members_) {
    if (m.pid <= 0)
      continue;
    if (!reap(m.pid, deadline)) {
      ::kill(m.pid, SIGTERM);
      if (!reap(m.pid, std::chrono::steady_clock::now() + std::chrono::seconds(1))) {
        ::kill(m.pid, SIGKILL);
        reap(m.pid, std::chrono::steady_clock::now() + std::chrono::seconds(5));
      }
    }
    m.pid = -1;
    if (m.out_fd >= 0)
      ::close(m.out_fd);
    m.out_fd = -1;
  }
}

std::string cluster::label(size_t i) const {
  auto& m = members_[i];
  return "node " + std::to_string(i) + " (" + (m.name.empty() ? "?" : m.name) + " at "
         + m.at.str() + ")";
}

std::vector<std::string> cluster::describe() const {
  std::vector<std::string> lines;
  for (size_t i = 0; i < members_.size(); ++i) {
    std::string ranks;
    for (auto r : members_[i].ranks)
      ranks += (ranks.empty() ? "" : ",") + std::to_string(r);
    std::string gpus;
    if (backend_ == "cuda")
      for (auto d : members_[i].devices)
        gpus += (gpus.empty() ? " on GPUs " : ",") + std::to_string(d);
    lines.push_back(label(i) + ": workers " + (ranks.empty() ? "none" : ranks) + gpus);
  }
  return lines;
}

std::vector<worker_actor> cluster::host(const std::vector<std::string>& args, int32_t workers,
                                        const std::string& fingerprint, bool mesh) {
  std::vector<worker_actor> out(static_cast<size_t>(workers));
  // Loading the data can take a while on a node: the plan's timeout plus two
  // minutes. Every node gets its job at once, so they load in parallel.
  const auto wait = timeout_ + std::chrono::minutes(2);
  using handle_t = decltype((*self_)->request(members_[0].handle, wait, host_atom_v, node_job{}));
  std::vector<std::pair<size_t, handle_t>> asked;
  for (size_t i = 0; i < members_.size(); ++i)
    if (!members_[i].ranks.empty())
      asked.emplace_back(i, (*self_)->request(members_[i].handle, wait, host_atom_v,
                                              node_job{args, members_[i].ranks}));
  // On any refusal the stand-ins made so far go: they would otherwise live
  // until their remote workers end.
  struct drop_on_throw {
    std::vector<worker_actor>& made;
    bool armed = true;
    ~drop_on_throw() {
      if (armed)
        for (auto& w : made)
          if (w)
            caf::anon_send_exit(w, caf::exit_reason::user_shutdown);
    }
  } guard{out};
  for (auto& [i, handle] : asked) {
    auto& m = members_[i];
    hosted_workers got;
    auto refused = await_reply(handle, [&](hosted_workers& h) { got = std::move(h); });
    if (refused)
      throw std::runtime_error(label(i) + " did not take its workers: " + chorus::describe(refused));
    if (got.fingerprint != fingerprint)
      throw std::runtime_error(label(i) + " loaded other data than the coordinator: it has ["
                               + got.fingerprint + "], the coordinator [" + fingerprint
                               + "]; give every node the same files (--data-dir)");
    if (got.workers.size() != m.ranks.size())
      throw std::runtime_error(label(i) + " hosted " + std::to_string(got.workers.size())
                               + " workers where " + std::to_string(m.ranks.size())
                               + " were asked for");
    if (nccl_) {
      // One NCCL rank per hosted worker, and the id from worker 0's node.
      if (got.nccl_ranks.size() != m.ranks.size())
        throw std::runtime_error(label(i) + " sent " + std::to_string(got.nccl_ranks.size())
                                 + " NCCL ranks for " + std::to_string(m.ranks.size())
                                 + " workers (--allreduce nccl: one per worker)");
      m.nccl_ranks.clear();
      for (auto& r : got.nccl_ranks) {
        m.nccl_ranks.push_back(caf::actor_cast<nccl_rank_actor>(r));
        if (!m.nccl_ranks.back())
          throw std::runtime_error(label(i) + " sent an invalid NCCL rank handle");
      }
      m.nccl_id = std::move(got.nccl_id);
    }
    for (size_t k = 0; k < m.ranks.size(); ++k) {
      auto remote = caf::actor_cast<worker_actor>(got.workers[k]);
      if (!remote)
        throw std::runtime_error(label(i) + " sent an invalid worker handle");
      out[static_cast<size_t>(m.ranks[k])] = spawn_remote_worker(
        sys_, remote, "worker " + std::to_string(m.ranks[k]) + " on " + label(i), m.link);
    }
  }
  if (mesh) {
    // Node i dials every node after it: one connection per pair (CAF closes
    // a second one between two nodes as redundant).
    for (size_t i = 0; i + 1 < members_.size(); ++i) {
      std::string later;
      for (size_t j = i + 1; j < members_.size(); ++j)
        later += (later.empty() ? "" : ",") + members_[j].at.str();
      auto dialed = (*self_)->request(members_[i].handle, timeout_ + std::chrono::seconds(30),
                                      mesh_atom_v, later);
      auto failed = await_reply(dialed, [](ok_atom) {});
      if (failed)
        throw std::runtime_error(label(i) + " could not connect to the other nodes: "
                                 + chorus::describe(failed));
    }
  }
  guard.armed = false;
  return out;
}

std::function<beside_site(int32_t)> cluster::beside(const monitor_actor& monitor) {
  // The protocol actor asks the node itself (spawn_all_beside), so nothing
  // here waits: a blocking request from inside an actor could hold the only
  // scheduler thread that would run its answer. The node finds the run's job
  // by its owner, this cluster's actor.
  caf::actor owner{*self_};
  return [this, monitor, owner](int32_t rank) {
    for (size_t i = 0; i < members_.size(); ++i) {
      auto& ranks = members_[i].ranks;
      if (std::find(ranks.begin(), ranks.end(), rank) != ranks.end())
        return beside_site{members_[i].handle, owner, caf::actor_cast<caf::actor>(monitor), label(i),
                           members_[i].link};
    }
    return beside_site{};
  };
}

reducer_actor cluster::nccl_reducer() {
  if (!nccl_)
    throw std::runtime_error("this run does not all-reduce with NCCL");
  std::vector<nccl_rank_actor> ranks;
  std::vector<int32_t> order;
  const nccl_unique_id* id = nullptr;
  for (size_t i = 0; i < members_.size(); ++i) {
    auto& m = members_[i];
    if (m.nccl_ranks.size() != m.ranks.size())
      throw std::runtime_error(label(i) + " has no NCCL ranks (host() first)");
    for (size_t k = 0; k < m.ranks.size(); ++k) {
      order.push_back(m.ranks[k]);
      ranks.push_back(m.nccl_ranks[k]);
    }
    if (!m.nccl_id.empty()) {
      if (id != nullptr || std::find(m.ranks.begin(), m.ranks.end(), 0) == m.ranks.end())
        throw std::runtime_error(label(i) + " sent an NCCL id but does not host worker 0");
      id = &m.nccl_id.front();
    }
  }
  if (id == nullptr)
    throw std::runtime_error("the node of worker 0 sent no NCCL unique id");
  // Rank order: the reducer names ranks by index.
  std::vector<nccl_rank_actor> by_rank(ranks.size());
  for (size_t j = 0; j < ranks.size(); ++j)
    by_rank[static_cast<size_t>(order[j])] = ranks[j];
  distribute_nccl_id(by_rank, *id);
  // The ranks wait on each other in NCCL for up to this long (node.cpp).
  return spawn_nodes_reducer(sys_, std::move(by_rank), nccl_join_timeout(timeout_));
}

void cluster::collect_traffic() {
  // The down messages that came meanwhile (a node killed mid-run): those
  // nodes are not asked (a request to a dead peer ends only by its timeout).
  size_t i = 0;
  caf::error reason;
  while (next_down(i, reason))
    if (i < members_.size())
      members_[i].gone = true;
  for (auto& m : members_) {
    if (!m.handle || m.gone)
      continue;
    (*self_)
      ->request(m.handle, std::chrono::seconds(2), traffic_atom_v)
      .receive(
        [&](uint64_t sent, uint64_t received) {
          m.traffic_sent = static_cast<int64_t>(sent);
          m.traffic_received = static_cast<int64_t>(received);
        },
        [](caf::error&) {});  // (an older node, or one that went silent: none)
  }
}

std::string cluster::report_json() const {
  std::string out = "[";
  for (size_t i = 0; i < members_.size(); ++i) {
    auto& m = members_[i];
    json_object o;
    o.add("node", static_cast<int64_t>(i))
      .add("name", m.name)
      .add("at", m.at.str())
      .raw("workers", json_int_array(m.ranks))
      .add("bytes_sent", static_cast<int64_t>(m.link->sent.load()))
      .add("bytes_received", static_cast<int64_t>(m.link->received.load()));
    if (m.traffic_sent >= 0)
      o.add("process_bytes_sent", m.traffic_sent)
        .add("process_bytes_received", m.traffic_received);
    out += (i ? "," : "") + o.str();
  }
  return out + "]";
}

} // namespace chorus
