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
  place_workers(cfg.placement, cfg.workers, count);
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

cluster::cluster(caf::actor_system& sys, const experiment_config& cfg)
  : sys_(sys), timeout_(cfg.timeout_ms), tls_(tls_of(cfg)), scheduler_(cfg.scheduler),
    data_plane_(data_plane::name(resolve_data_plane(cfg.data_plane, tls_.enabled()))),
    devices_(cfg.devices) {
  self_ = std::make_unique<caf::scoped_actor>(sys_);
  const int count = cfg.processes > 0   ? cfg.processes
                    : cfg.await_nodes > 0 ? cfg.await_nodes
                                          : static_cast<int>(cfg.nodes.size());
  auto placed = place_workers(cfg.placement, cfg.workers, count);
  members_.resize(static_cast<size_t>(count));
  for (int r = 0; r < cfg.workers; ++r)
    members_[static_cast<size_t>(placed[static_cast<size_t>(r)])].ranks.push_back(r);
  try {
    if (cfg.processes > 0) {
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
      caf::error refused;
      (*self_)
        ->request(m.handle, timeout_, hello_atom_v, std::string{version}, type_table_hash())
        .receive([&](std::string& name) { m.name = std::move(name); },
                 [&](caf::error& err) { refused = std::move(err); });
      if (refused)
        throw std::runtime_error("node " + std::to_string(i) + " at " + m.at.str() + ": "
                                 + chorus::describe(refused));
    }
  } catch (...) {
    stop_processes();
    throw;
  }
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
    lines.push_back(label(i) + ": workers " + (ranks.empty() ? "none" : ranks));
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
    caf::error refused;
    handle.receive([&](hosted_workers& h) { got = std::move(h); },
                   [&](caf::error& err) { refused = std::move(err); });
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
      caf::error failed;
      (*self_)
        ->request(members_[i].handle, timeout_ + std::chrono::seconds(30), mesh_atom_v, later)
        .receive([](ok_atom) {}, [&](caf::error& err) { failed = std::move(err); });
      if (failed)
        throw std::runtime_error(label(i) + " could not connect to the other nodes: "
                                 + chorus::describe(failed));
    }
  }
  guard.armed = false;
  return out;
}

std::function<caf::actor(int32_t, const caf::actor&)> cluster::beside(const monitor_actor& monitor) {
  return [this, monitor](int32_t rank, const caf::actor& coordinator) -> caf::actor {
    for (size_t i = 0; i < members_.size(); ++i) {
      auto& ranks = members_[i].ranks;
      if (std::find(ranks.begin(), ranks.end(), rank) == ranks.end())
        continue;
      caf::actor peer;
      (*self_)
        ->request(members_[i].handle, timeout_, peer_atom_v, rank, coordinator,
                  caf::actor_cast<caf::actor>(monitor))
        .receive([&](caf::strong_actor_ptr& ptr) { peer = caf::actor_cast<caf::actor>(ptr); },
                 [&](caf::error& err) {
                   caf::anon_send(monitor, log_atom_v,
                                  label(i) + ": no peer " + std::to_string(rank) + ": "
                                    + chorus::describe(err));
                 });
      return peer;
    }
    return caf::actor{};
  };
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
    out += (i ? "," : "") + o.str();
  }
  return out + "]";
}

} // namespace chorus
