// remote_workers: the workers in one process, the protocol in another.
//
// What it shows: an actor graph spans processes without changing its code.
// The SERVE side spawns workers (each with its shard of Fashion-MNIST) and
// publishes each one with CAF's middleman (caf::io::publish). The CONNECT
// side gets their handles with caf::io::remote_actor<worker_actor> (CAF
// checks the typed interface), wraps each in a local stand-in that fails
// requests at once if the other process dies (actors/remote_worker.hpp),
// and runs sync SGD on them exactly as examples/sync_sgd.cpp does on local
// workers. Buffers cross as raw bytes; the protocol cannot tell.
//
// Run:    build/examples/remote_workers                both sides: it starts the
//                                                       serve side as a child
//         build/examples/remote_workers --serve         one side: prints its ports
//         build/examples/remote_workers --connect 127.0.0.1:P1,127.0.0.1:P2
//         [--workers N] [--steps S] [--lr ETA]
// Prints: the serve side's ports, the connect side's progress and summary.
// (chorus train --processes / --nodes does all of this for every protocol;
// see tools/cluster.hpp. This is the same thing by hand, for embedding.)
#include <csignal>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "actors/remote_worker.hpp"
#include "actors/system.hpp"
#include "algorithms/protocols.hpp"
#include "engines/run_graph.hpp"
#include "messages/type_ids.hpp"

using namespace chorus;

namespace {

struct options {
  bool serve = false;
  std::string connect;  // "host:port,..."
  int workers = 2;
  int64_t steps = 200;
  double lr = 0.1;
};

void configure(caf::actor_system_config& cfg) {
  configure_actor_system(cfg, 2);
  cfg.load<caf::io::middleman>();
  // Heartbeats on both sides: a frozen peer is noticed (FACTS.md §2).
  cfg.set("middleman.heartbeat-interval", caf::timespan{std::chrono::milliseconds(250)});
  cfg.set("middleman.connection-timeout", caf::timespan{std::chrono::seconds(3)});
}

// The serve side: N workers, each published on a port of its own (127.0.0.1
// only: a plain CAF port takes messages from anyone who can connect). Runs
// until stdin closes or SIGTERM; then exits its workers, as a published actor
// must be before the actor system goes (or its destructor waits forever).
int serve(const options& o) {
  caf::actor_system_config cfg;
  configure(cfg);
  caf::actor_system sys{cfg};
  auto data = load_dataset("fashion-mnist", dataset_options{});
  auto shards = partition_iid(*data.train, o.workers, /*seed=*/1);
  std::vector<worker_actor> workers;
  std::string ports;
  for (int i = 0; i < o.workers; ++i) {
    worker_config wc;
    wc.rank = i;
    wc.model = "mlp:64";
    wc.data = data.train;
    wc.shard = shards[i];
    wc.seed = 100 + i;
    workers.push_back(spawn_worker(sys, wc));
    auto port = caf::io::publish(workers.back(), 0, "127.0.0.1");
    if (!port) {
      std::cerr << "serve: cannot publish worker " << i << ": " << describe(port.error()) << "\n";
      for (auto& w : workers)
        caf::anon_send_exit(w, caf::exit_reason::user_shutdown);
      return 1;
    }
    ports += (ports.empty() ? "" : ",") + ("127.0.0.1:" + std::to_string(*port));
  }
  std::cout << ports << std::endl;  // the connect side reads this line
  char c;
  while (::read(0, &c, 1) > 0) {
  }
  for (auto& w : workers)
    caf::anon_send_exit(w, caf::exit_reason::user_shutdown);
  return 0;
}

// The connect side: remote handles in, sync SGD out.
int connect(const options& o) {
  caf::actor_system_config cfg;
  configure(cfg);
  caf::actor_system sys{cfg};
  auto data = load_dataset("fashion-mnist", dataset_options{});
  run_graph graph(sys);
  auto link = std::make_shared<link_counters>();
  size_t at = 0;
  int rank = 0;
  while (at < o.connect.size()) {
    auto comma = std::min(o.connect.find(',', at), o.connect.size());
    auto item = o.connect.substr(at, comma - at);
    at = comma + 1;
    auto colon = item.rfind(':');
    auto remote = caf::io::remote_actor<worker_actor>(
      sys, item.substr(0, colon), static_cast<uint16_t>(std::stoi(item.substr(colon + 1))));
    if (!remote) {
      std::cerr << "connect: no worker at " << item << ": " << describe(remote.error()) << "\n";
      return 1;
    }
    graph.add_worker(spawn_remote_worker(sys, *remote, "worker " + std::to_string(rank++) + " at " + item,
                                         link));
  }
  worker_config ec;  // the evaluator stays here, with the test set
  ec.model = "mlp:64";
  ec.data = data.test;
  graph.set_evaluator(ec);
  auto& ctx = graph.context();
  auto net = make_model("mlp:64", data.train->num_features, data.train->num_classes);
  mutable_buffer w0(net->num_params());
  std::mt19937_64 rng(1);
  net->init(w0.data(), rng);
  ctx.initial = std::move(w0).freeze();
  ctx.plan.algorithm = "sync_sgd";
  ctx.plan.steps = o.steps;
  ctx.plan.eval_every = std::max<int64_t>(1, o.steps / 4);
  ctx.plan.lr = static_cast<float>(o.lr);
  ctx.plan.train_size = data.train->size();
  ctx.plan.timeout = std::chrono::seconds(30);
  auto s = graph.run(spawn_sync_sgd(sys, ctx));
  if (!s) {
    std::cerr << "failed: " << describe(s.error()) << "\n";
    return 1;
  }
  std::cout << "done: " << s->steps << " steps on " << ctx.workers.size()
            << " remote workers, test_acc " << s->test_acc << ", " << link->sent / 1e6
            << " MB sent to them, " << link->received / 1e6 << " MB back\n";
  return s->test_acc > 0.5 ? 0 : 1;
}

// Both sides: the serve side as a child whose stdout is a pipe.
int both(options o, const char* self) {
  int out[2], in[2];
  if (::pipe(out) != 0 || ::pipe(in) != 0)
    return 1;
  const pid_t parent = ::getpid();
  pid_t child = ::fork();
  if (child == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent)
      ::_exit(1);
    ::dup2(out[1], 1);
    ::dup2(in[0], 0);
    ::close(out[0]);
    ::close(in[1]);
    auto workers = std::to_string(o.workers);
    ::execl(self, self, "--serve", "--workers", workers.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(out[1]);
  ::close(in[0]);
  std::string line;
  char c;
  while (::read(out[0], &c, 1) == 1 && c != '\n')
    line += c;
  int rc = 1;
  if (!line.empty()) {
    std::cout << "serve side (pid " << child << ") published workers at " << line << "\n";
    o.connect = line;
    rc = connect(o);
  } else {
    std::cerr << "the serve side did not start\n";
  }
  ::close(in[1]);  // the serve side exits when its stdin closes
  int status = 0;
  ::waitpid(child, &status, 0);
  return rc;
}

} // namespace

int main(int argc, char** argv) try {
  options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--serve")
      o.serve = true;
    else if (a == "--connect")
      o.connect = next();
    else if (a == "--workers")
      o.workers = std::stoi(next());
    else if (a == "--steps")
      o.steps = std::stoll(next());
    else if (a == "--lr")
      o.lr = std::stod(next());
    else {
      std::cerr << "usage: remote_workers [--serve | --connect H:P,...] [--workers N] [--steps S] [--lr ETA]\n";
      return 2;
    }
  }
  if (o.workers < 1 || o.workers > 64 || o.steps < 1) {
    std::cerr << "remote_workers: --workers must be 1..64 and --steps >= 1\n";
    return 2;
  }
  if (o.serve)
    return serve(o);
  if (!o.connect.empty())
    return connect(o);
  return both(o, "/proc/self/exe");
} catch (const std::exception& e) {
  std::cerr << "remote_workers: " << e.what() << "\n";
  return 1;
}
