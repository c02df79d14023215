// The coordinator's side of a run whose workers live in other processes:
// `chorus train --processes P` (P node processes on this host, on loopback)
// or `--nodes H:P,...` (nodes already running, `chorus node --listen H:P`).
//
// The coordinator is the process that runs `chorus train`: it holds the
// protocol actor, the evaluator and the monitor, and gets the workers from the
// nodes (tools/node.hpp). A cluster value, for one run:
//  1. starts the node processes (--processes) and reads the port each one
//     bound from its first line on stdout; each child gets SIGTERM if this
//     process dies (PR_SET_PDEATHSIG), besides noticing it through CAF;
//  2. connects to every node within --timeout and says hello (same Chorus
//     version and message types, or a clear refusal);
//  3. places the workers (round-robin, block, or a node index per worker),
//     sends each node its node_job, checks that every node loaded the same
//     data as the coordinator (the fingerprint; a mismatch names the node),
//     and hands back one stand-in per worker (actors/remote_worker.hpp), in
//     rank order, for the run graph;
//  4. at its end releases the nodes and waits for the processes it started
//     (SIGTERM, then SIGKILL, if one does not exit in time).
// The protocols are untouched: they talk to worker handles.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/scoped_actor.hpp>

#include "actors/interfaces.hpp"
#include "actors/remote_worker.hpp"
#include "engines/protocol.hpp"
#include "tools/experiment.hpp"
#include "tools/network.hpp"

namespace chorus {

/// Checks the cluster flags of cfg (a part of validate()); throws
/// std::invalid_argument.
void check_cluster_options(const experiment_config& cfg);

/// Whether the run's nodes may be on other hosts (--nodes or --listen off
/// loopback): then the UCX data plane may use the network.
bool nodes_off_host(const experiment_config& cfg);

/// The TLS files cfg names (and CHORUS_TLS_PASSPHRASE).
tls_options tls_of(const experiment_config& cfg);

/// The node (index into the node list) that hosts each worker.
/// `spec`: "round-robin", "block" or one node index per worker ("0,0,1,1").
/// Throws std::invalid_argument.
std::vector<int> place_workers(const std::string& spec, int workers, int nodes);

/// One worker per device of each node: worker slots go round the nodes,
/// each node taking its next device until it has no more (counts 2,1:
/// nodes 0,1,0), then round again when there are more workers than devices.
/// `device_counts`: per node, how many GPUs it gives its workers (>= 1).
std::vector<int> place_by_devices(const std::vector<int>& device_counts, int workers);

/// The placement a run gets: `spec` "auto" (the default) places by devices
/// on --backend cuda and round-robin on the CPU; "devices" always by
/// devices; anything else as place_workers. Throws std::invalid_argument.
std::vector<int> resolve_placement(const std::string& spec, const std::string& backend,
                                   int workers, const std::vector<int>& device_counts);

/// Whether cfg all-reduces with NCCL (--allreduce nccl).
bool nccl_all_reduce(const experiment_config& cfg);

/// --allreduce nccl across processes: one NCCL rank per worker, and NCCL
/// allows one rank per GPU, so node n may host at most as many workers as
/// it has GPUs. Throws std::invalid_argument naming the first node that
/// would host more (`label(n)` names it), with its workers and devices.
void check_one_gpu_per_rank(const std::vector<int>& placement,
                            const std::vector<std::vector<int>>& node_devices,
                            const std::function<std::string(size_t)>& label);

/// The GPUs node process p of `processes` started on this host gets:
/// devices p, p + processes, ... (one process per GPU when there are as
/// many); empty when there are fewer devices than processes (each node
/// then keeps the whole list).
std::vector<int> process_devices(const std::vector<int>& devices, int processes, int p);

/// The GPUs node process p of cfg.processes gives its workers:
/// process_devices, or the whole --devices list when that is empty.
std::vector<int> node_devices_of(const experiment_config& cfg, int p);

/// How long an NCCL rank on a node waits for the others (joining, an
/// all-reduce) in a run whose reply timeout is `timeout`: at least two
/// minutes, since joining takes seconds.
std::chrono::milliseconds nccl_join_timeout(std::chrono::milliseconds timeout);

/// The device of the k-th worker a node hosts: its devices in turn.
int node_device(const std::vector<int>& devices, size_t k);

/// One run's nodes (see above).
class cluster {
public:
  /// Steps 1 and 2 above. Throws std::runtime_error naming the node that
  /// did not start, answer or agree.
  cluster(caf::actor_system& sys, const experiment_config& cfg);
  cluster(const cluster&) = delete;
  cluster& operator=(const cluster&) = delete;
  /// Step 4.
  ~cluster();

  /// One log line per node: where it is and which workers it hosts.
  std::vector<std::string> describe() const;

  /// Step 3: the stand-ins of workers 0 .. workers-1, in rank order. Throws
  /// std::runtime_error (a node refused the job or has other data).
  /// With `mesh`, every node then connects to every other one directly, so
  /// peers spawned beside the workers (beside()) talk node to node.
  std::vector<worker_actor> host(const std::vector<std::string>& args, int32_t workers,
                                 const std::string& fingerprint, bool mesh = false);

  /// The run_context::beside of this run: the node that hosts worker
  /// `rank`, to be asked (by the protocol actor, without blocking) for the
  /// protocol's peer there, logging to `monitor`. Valid while this cluster
  /// lives; called from the protocol actor.
  std::function<beside_site(int32_t)> beside(const monitor_actor& monitor);

  /// Asks every node still there for its process's payload bytes each way
  /// (node to node included), waiting at most 2 s for each; a node that is
  /// gone or does not answer has none. Call at the end of the run.
  void collect_traffic();
  /// Per node: name, address, workers, payload bytes each way over its link
  /// to the coordinator, and in all (collect_traffic) (JSON array).
  std::string report_json() const;

  /// With --allreduce nccl, after host(): sends the unique id that worker
  /// 0's node made to every rank on every node and returns the reducer the
  /// protocol takes the round's mean from (actors/nccl_nodes.hpp). Throws
  /// std::runtime_error when a node sent no ranks or no id came.
  reducer_actor nccl_reducer();

private:
  struct member {
    endpoint at;
    std::string name;  // "host:pid", from its hello
    node_actor handle;
    int pid = -1;      // a process this cluster started, or -1
    int out_fd = -1;   // its stdout
    std::vector<int32_t> ranks;
    std::vector<int> devices;  // the GPUs it gives its workers (handshake)
    std::vector<nccl_rank_actor> nccl_ranks;  // with --allreduce nccl: one per rank
    std::vector<nccl_unique_id> nccl_id;      // from the node of worker 0
    std::shared_ptr<link_counters> link = std::make_shared<link_counters>();
    bool gone = false;            // its down message came (collect_traffic)
    int64_t traffic_sent = -1;    // collect_traffic's answer; -1: none
    int64_t traffic_received = -1;
  };

  void place(const experiment_config& cfg);
  // Waits for the reply to `request` (a request to a node), calling
  // `on_reply` with it; returns the error that came instead (the node's
  // own, or the request's timeout). Throws std::runtime_error naming the
  // node as soon as any node of this cluster is gone (see cluster.cpp).
  template <class Handle, class OnReply>
  caf::error await_reply(Handle& request, OnReply on_reply);
  // Watches node i's connection from now on (its handle is set).
  void watch(size_t i);
  // Throws std::runtime_error naming the first node whose down message
  // came (its process died, its connection dropped or went silent).
  void throw_if_a_node_is_gone();
  // The next down message in the mailbox, without waiting: false if none,
  // else `node` is the member it names (members_.size(): another actor's).
  bool next_down(size_t& node, caf::error& reason);
  void start_processes(int count, const std::string& program);
  void await_registrations(const endpoint& listen);
  void stop_processes();
  std::string label(size_t i) const;

  caf::actor_system& sys_;
  std::chrono::milliseconds timeout_;
  tls_options tls_;
  // CAF scheduler policy of the node processes it starts. Their threads
  // keep CAF's default polling whatever --spin-polls says: node processes
  // share the host's cores with the coordinator, and polling there made a
  // 2-process MLP run slower (22-23k against 35-50k samples/s, 2 cores).
  std::string scheduler_;
  // The data plane (caf | ucx) of the node processes it starts.
  std::string data_plane_;
  // The run's --devices, shared out among the node processes it starts.
  std::vector<int> devices_;
  std::string backend_;
  bool nccl_ = false;  // --allreduce nccl: ranks beside the workers
  std::vector<member> members_;
  std::unique_ptr<caf::scoped_actor> self_;  // the nodes watch it: its end ends the jobs
  caf::actor registrar_;  // with --await-nodes: where nodes register
};

} // namespace chorus
