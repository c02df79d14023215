// Chorus across processes: `chorus train --processes N` / `--nodes` against
// real `chorus node` processes on loopback (random free ports), each case
// bounded in time. What they check: the same weights as one process, every
// protocol family over several processes, a killed node's workers counted as
// lost with the run going on, nodes exiting when their coordinator dies,
// refusals (version, data, TLS certificate, passphrase), and a node that
// keeps serving after garbage on its port.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <zlib.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <regex>

#include <caf/all.hpp>
#include <caf/io/all.hpp>

#include "actors/system.hpp"
#include "gpu/device.hpp"
#include "messages/type_ids.hpp"
#include "tests/tools/chorus_process.hpp"
#include "tools/cluster.hpp"
#include "tools/experiment.hpp"
#include "tools/network.hpp"
#include "tools/options.hpp"

namespace chorus {
namespace {

using test::chorus_process;
using test::last_line;
using test::read_text;
using test::temp_path;
using test::wait_for;

// A small run on Fashion-MNIST: every flag that matters for equality.
std::vector<std::string> small_run(const std::string& algorithm, int workers) {
  return {"train", "--algorithm", algorithm, "--workers", std::to_string(workers), "--model", "softmax",
          "--steps", "40", "--eval-every", "20", "--batch", "32", "--lr", "0.1", "--quiet",
          "--timeout", "20s"};
}

std::vector<std::string> operator+(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// A number field of a one-line JSON summary, or NaN.
double field(const std::string& json, const std::string& key) {
  auto at = json.find("\"" + key + "\":");
  if (at == std::string::npos)
    return std::nan("");
  return std::strtod(json.c_str() + at + key.size() + 3, nullptr);
}

// The same run in one process and over `processes` node processes
// (`extra` added to the second only), each into an out dir of its own.
struct one_and_many {
  std::string error;       ///< why a run failed; empty: both exited 0
  std::string model_one;   ///< model.npy of the one-process run
  std::string model_many;  ///< model.npy of the run over the nodes
  std::string summary;     ///< the multi-process run's summary line
  std::string log;         ///< the multi-process run's stderr
  std::string out_dir;     ///< the multi-process run's out dir
};

one_and_many run_one_and_many(const std::string& name, const std::vector<std::string>& args,
                              int processes, const std::vector<std::string>& extra = {}) {
  one_and_many r;
  auto one = temp_path(name + "_one"), many = temp_path(name + "_many");
  chorus_process a(args + std::vector<std::string>{"--out", one}, one + "_log");
  if (a.wait() != 0) {
    r.error = "one process: " + a.err();
    return r;
  }
  chorus_process b(args + std::vector<std::string>{"--out", many, "--processes",
                                                   std::to_string(processes)} + extra,
                   many + "_log");
  if (b.wait() != 0) {
    r.error = std::to_string(processes) + " processes: " + b.err();
    return r;
  }
  r.model_one = read_text(one + "/model.npy");
  r.model_many = read_text(many + "/model.npy");
  r.summary = last_line(b.out());
  r.log = b.err();
  r.out_dir = many;
  if (r.model_one.size() < 1000)
    r.error = "no model.npy from the one-process run";
  return r;
}

// The pids of the node processes a coordinator's log names ("node 1 (host:PID at ...").
std::vector<int> node_pids(const std::string& err) {
  std::vector<int> pids;
  std::regex line(R"(\] node \d+ \([^:]+:(\d+) at )");
  for (std::sregex_iterator it(err.begin(), err.end(), line), end; it != end; ++it)
    pids.push_back(std::stoi((*it)[1]));
  return pids;
}

// Gone, or a zombie nobody reaped yet: either way no longer running.
bool exited(int pid) {
  auto stat = read_text("/proc/" + std::to_string(pid) + "/stat");
  if (stat.empty())
    return true;
  auto close = stat.rfind(')');
  return close != std::string::npos && close + 2 < stat.size() && stat[close + 2] == 'Z';
}

int64_t rss_kb(int pid) {
  auto status = read_text("/proc/" + std::to_string(pid) + "/status");
  auto at = status.find("VmRSS:");
  return at == std::string::npos ? -1 : std::strtoll(status.c_str() + at + 6, nullptr, 10);
}

// A `chorus node` child with its port, once it listens.
struct node_child {
  std::unique_ptr<chorus_process> proc;
  int port = 0;
  explicit node_child(const std::string& name, std::vector<std::string> extra = {}) {
    std::vector<std::string> args{"node", "--listen", "127.0.0.1:0"};
    args.insert(args.end(), extra.begin(), extra.end());
    proc = std::make_unique<chorus_process>(args, temp_path(name));
    const std::string prefix = "chorus node: listening on 127.0.0.1:";
    if (wait_for([&] { return proc->out().find(prefix) != std::string::npos; },
                 std::chrono::seconds(60)))
      port = std::atoi(proc->out().c_str() + proc->out().find(prefix) + prefix.size());
  }
  std::string at() const { return "127.0.0.1:" + std::to_string(port); }
};

// An actor system that talks to nodes, and its handle on the node at
// `port` (none when port is 0; `error` says why when connecting failed).
struct node_client {
  caf::actor_system_config cfg;
  caf::actor_system sys;
  node_actor handle;
  std::string error;
  explicit node_client(int port) : sys(configure(cfg)) {
    if (port == 0)
      return;
    auto ptr = connect_actor(sys, {"127.0.0.1", static_cast<uint16_t>(port)}, {},
                             std::chrono::seconds(20));
    if (ptr)
      handle = caf::actor_cast<node_actor>(*ptr);
    else
      error = describe(ptr.error());
  }
  static caf::actor_system_config& configure(caf::actor_system_config& c) {
    configure_actor_system(c, 2);
    configure_network(c, {});
    return c;
  }
};

TEST(Nodes, SyncSgdOverTwoProcessesGivesTheSameWeightsAsOneProcess) {
  // The round server averages the gradients in rank order wherever they
  // were computed, and buffers cross processes as raw bytes: bit-identical.
  auto r = run_one_and_many("sync", small_run("sync_sgd", 2), 2);
  ASSERT_EQ(r.error, "");
  EXPECT_EQ(r.model_one, r.model_many) << "weights differ between one process and two";
  EXPECT_EQ(field(r.summary, "workers_lost"), 0);
  EXPECT_NE(r.summary.find("\"nodes\":[{\"node\":0"), std::string::npos) << r.summary;
  EXPECT_GT(field(r.summary, "bytes_sent"), 0);
  // Each node hosted one worker, as round-robin places them.
  EXPECT_NE(r.log.find("node 0 ("), std::string::npos);
  EXPECT_NE(r.log.find("): workers 1"), std::string::npos) << r.log;
}

// Nodes of `summary` whose link to the coordinator carried no payload while
// their process sent and received some (node to node).
size_t nodes_talking_only_to_each_other(const std::string& summary) {
  std::regex node(R"("bytes_sent":(\d+),"bytes_received":(\d+),"process_bytes_sent":(\d+),"process_bytes_received":(\d+)\})");
  size_t count = 0;
  for (std::sregex_iterator it(summary.begin(), summary.end(), node), end; it != end; ++it) {
    const auto& m = *it;
    if (m[1] == "0" && m[2] == "0" && std::stoll(m[3]) > 0 && std::stoll(m[4]) > 0)
      ++count;
  }
  return count;
}

TEST(Nodes, GossipPeersLiveBesideTheirWorkersAndMatchOneProcess) {
  // Peers are spawned on the nodes and exchange models node to node; the
  // coordinator only counts reports and fetches models when it evaluates.
  // Synchronous gossip is deterministic, so the model equals the one-process
  // run's bit for bit.
  auto r = run_one_and_many("gossip", small_run("gossip_sgd", 3) + std::vector<std::string>{"--topology", "ring"}, 3);
  ASSERT_EQ(r.error, "");
  EXPECT_EQ(r.model_one, r.model_many) << "gossip over 3 processes differs from one process";
  // No worker traffic went through the coordinator's stand-ins: each peer
  // asks its own worker, in its own process, and sends its model to its
  // neighbours' nodes (counted by each node's process).
  const auto& summary = r.summary;
  for (int n = 0; n < 3; ++n)
    EXPECT_NE(summary.find("\"node\":" + std::to_string(n) + ","), std::string::npos) << summary;
  EXPECT_EQ(nodes_talking_only_to_each_other(summary), 3u) << summary;
}

// model.npy of `chorus train` with `args` (empty when the run failed;
// its stderr then goes to the test's output).
std::string model_of(const std::string& name, const std::vector<std::string>& args) {
  auto out = temp_path(name);
  chorus_process run(args + std::vector<std::string>{"--out", out}, out + "_log");
  if (run.wait() != 0) {
    ADD_FAILURE() << name << ": " << run.err();
    return "";
  }
  return read_text(out + "/model.npy");
}

TEST(Nodes, AllreduceSgdTakesSyncSgdsStepsInOneProcessAndOverTwo) {
  // Every replica sums the gradients in rank order with sync_sgd's own
  // combine: the same floats as the server, wherever the peers live. Unequal
  // batches (weights by samples) and an L1 prox are in the step too.
  auto args = [](const std::string& algorithm, int workers, const std::string& batch) {
    return std::vector<std::string>{"train", "--algorithm", algorithm, "--workers",
                                    std::to_string(workers), "--model", "softmax", "--steps", "30",
                                    "--eval-every", "15", "--batch", batch, "--lr", "0.1",
                                    "--reg", "l1:1e-4", "--quiet", "--timeout", "20s"};
  };
  auto server = model_of("ar_sync3", args("sync_sgd", 3, "16,48,32"));
  ASSERT_GT(server.size(), 1000u);
  EXPECT_EQ(model_of("ar_peers3", args("allreduce_sgd", 3, "16,48,32")), server)
    << "allreduce_sgd's replicas differ from sync_sgd's server (3 workers, one process)";

  auto r = run_one_and_many("allreduce", args("allreduce_sgd", 2, "32"), 2);
  ASSERT_EQ(r.error, "");
  EXPECT_EQ(r.model_many, model_of("ar_sync2", args("sync_sgd", 2, "32")))
    << "allreduce_sgd over 2 processes differs from sync_sgd in one";
  EXPECT_EQ(r.model_one, r.model_many);
  // The gradients went node to node: no payload crossed the coordinator's
  // links to its nodes (it fetches replicas only to evaluate, uncounted
  // there), and each node's process counted what it sent and received.
  EXPECT_EQ(nodes_talking_only_to_each_other(r.summary), 2u) << r.summary;
  EXPECT_EQ(field(r.summary, "consensus_distance"), 0) << r.summary;
}

TEST(Nodes, TheStealingSchedulerReachesTheNodesAndChangesNoWeight) {
  // --scheduler stealing (auto gives sharing across processes) goes to the
  // node processes on their command line (a node that refused it would fail
  // the run); scheduling changes no number.
  auto r = run_one_and_many("stealing", small_run("sync_sgd", 2), 2, {"--scheduler", "stealing"});
  ASSERT_EQ(r.error, "");
  EXPECT_EQ(r.model_one, r.model_many);
  EXPECT_NE(read_text(r.out_dir + "/config.json").find("\"scheduler_used\":\"stealing\""),
            std::string::npos);
  EXPECT_EQ(field(r.summary, "workers_lost"), 0);
}

TEST(Nodes, ANodeRefusesAnUnknownScheduler) {
  chorus_process node({"node", "--scheduler", "fifo"}, temp_path("node_fifo"));
  EXPECT_EQ(node.wait(), 2);
  EXPECT_NE(node.err().find("valid: auto, stealing, sharing"), std::string::npos) << node.err();
}

TEST(Nodes, SyncSgdOverTheUcxDataPlaneGivesTheSameWeightsAsOneProcess) {
  if (!data_plane::available(data_plane::kind::ucx))
    GTEST_SKIP() << "built without UCX";
  // Every buffer, however small, crosses through the data plane (the run's
  // buffers are far below the 256 KiB default): the floats are fetched into
  // the receiver's block byte for byte, so the weights are the same. The
  // MLP's weights and gradients (76 KB) are blocks in shared memory, which
  // the receiver reads in place; the rest is asked for.
  ::setenv("CHORUS_DATA_PLANE_MIN_BYTES", "0", 1);
  auto run = small_run("sync_sgd", 2);
  run[std::find(run.begin(), run.end(), "--model") - run.begin() + 1] = "mlp:24";
  auto r = run_one_and_many("sync_ucx", run, 2, {"--data-plane", "ucx"});
  ::unsetenv("CHORUS_DATA_PLANE_MIN_BYTES");
  ASSERT_EQ(r.error, "");
  EXPECT_EQ(r.model_one, r.model_many) << "weights differ between one process and two over UCX";
  EXPECT_EQ(field(r.summary, "workers_lost"), 0);
  // The coordinator fetched the gradients and each node the weights.
  std::regex line(R"((chorus|chorus node): data plane ucx: (\d+) buffers offered \((\d+) fetched by peers, \d+ expired\), (\d+) fetched \((\d+) read in place in shared memory, (\d+) copied from it\), (\d+) failed)");
  int coordinator = 0, nodes = 0;
  for (std::sregex_iterator it(r.log.begin(), r.log.end(), line), end; it != end; ++it) {
    const auto& m = *it;
    EXPECT_GT(std::stoi(m[2]), 0) << m[0];
    EXPECT_GT(std::stoi(m[4]), 0) << m[0];
    EXPECT_GT(std::stoi(m[5]), 0) << m[0];  // (read in place: weights, gradients)
    EXPECT_EQ(std::stoi(m[7]), 0) << m[0];
    ++(m[1] == "chorus" ? coordinator : nodes);
  }
  EXPECT_EQ(coordinator, 1) << r.log;
  EXPECT_EQ(nodes, 2) << r.log;
}

TEST(Nodes, TheDataPlaneChoiceIsCheckedAndSaid) {
  chorus_process node({"node", "--data-plane", "tcp"}, temp_path("node_plane"));
  EXPECT_EQ(node.wait(), 2);
  EXPECT_NE(node.err().find("valid: caf, ucx"), std::string::npos) << node.err();
  chorus_process train(small_run("sync_sgd", 2) + std::vector<std::string>{"--data-plane", "fast"},
                       temp_path("train_plane"));
  EXPECT_EQ(train.wait(), 2);
  EXPECT_NE(train.err().find("valid: caf, ucx"), std::string::npos) << train.err();
  // UCX does not go through TLS: with TLS, ucx is refused and auto means caf.
  EXPECT_EQ(resolve_data_plane("auto", true), data_plane::kind::caf);
  EXPECT_EQ(resolve_data_plane("caf", false), data_plane::kind::caf);
  EXPECT_EQ(resolve_data_plane("auto", false), data_plane::default_kind());
  if (data_plane::available(data_plane::kind::ucx))
    EXPECT_THROW(resolve_data_plane("ucx", true), std::invalid_argument);
  else
    EXPECT_THROW(resolve_data_plane("ucx", false), std::invalid_argument);
  // A process under TLS fetches no peer's descriptor; one without TLS fetches
  // them whichever plane it sends with (a UCX build).
  use_data_plane("caf", true, false);
  EXPECT_FALSE(data_plane::accepting());
  use_data_plane("caf", false, false);
  EXPECT_EQ(data_plane::accepting(), data_plane::available(data_plane::kind::ucx));
  chorus_process help({"train", "--help"}, temp_path("train_help"));
  EXPECT_EQ(help.wait(), 0);
  EXPECT_NE(help.out().find("--data-plane"), std::string::npos);
}

TEST(Nodes, CompressedGradientsCrossTheNetworkEncoded) {
  // The encoder sits beside each worker on its node, so what the
  // coordinator receives is the payload; the run equals the one-process run
  // with the same compression bit for bit (encode seeds come from the run
  // seed, the rank and the step).
  auto r = run_one_and_many("qsgd", small_run("sync_sgd", 2) + std::vector<std::string>{"--compress", "qsgd:4"}, 2);
  ASSERT_EQ(r.error, "");
  EXPECT_EQ(r.model_one, r.model_many);
  // Weights go out in full (32 bits a value), gradients come back at 4 bits
  // (qsgd:4: sign + 3-bit level) plus headers: well under a quarter.
  const auto& summary = r.summary;
  auto sent = summary.find("\"bytes_sent\":", summary.find("\"nodes\""));
  auto received = summary.find("\"bytes_received\":", sent);
  ASSERT_NE(received, std::string::npos) << summary;
  double out = std::strtod(summary.c_str() + sent + 13, nullptr);
  double back = std::strtod(summary.c_str() + received + 17, nullptr);
  EXPECT_GT(out, 0) << summary;
  EXPECT_LT(back, out / 4) << summary;
}

TEST(Nodes, DoubleCompressedLocalSgdCrossesTheNetworkEncodedBothWays) {
  // local_sgd with --compress and --compress-down: the worker-side stage
  // (error memory, replica of w) sits beside each worker on its node, the
  // coordinator sends and receives payloads; the run equals the one-process
  // run bit for bit.
  auto r = run_one_and_many("dc", small_run("local_sgd", 2)
                                   + std::vector<std::string>{"--compress", "topk:0.05",
                                                              "--compress-down", "qsgd:64",
                                                              "--error-feedback", "ef"},
                            2);
  ASSERT_EQ(r.error, "");
  EXPECT_EQ(r.model_one, r.model_many);
}

TEST(Nodes, ChocoGossipPeersSendTheirEncodedDifferencesAcrossProcesses) {
  // choco_gossip's peers live on the nodes and send each other the encoded
  // q_i = C(x_i - x_hat_i) (a payload buffer, raw bytes on the wire); the
  // encodings are seeded by the run seed, the rank and the round, so three
  // processes give the one-process model bit for bit.
  auto r = run_one_and_many("choco", small_run("choco_gossip", 3)
                                      + std::vector<std::string>{"--topology", "ring", "--compress",
                                                                 "qsgd:4", "--gamma", "0.5"},
                            3);
  ASSERT_EQ(r.error, "");
  EXPECT_EQ(r.model_one, r.model_many) << "choco_gossip over 3 processes differs from one process";
  EXPECT_EQ(field(r.summary, "workers_lost"), 0);
  // The gossip bytes are the encoded ones: under a quarter of gossip_sgd's.
  chorus_process c(small_run("gossip_sgd", 3) + std::vector<std::string>{"--topology", "ring"},
                   temp_path("gossip_bytes_log"));
  ASSERT_EQ(c.wait(), 0) << c.err();
  EXPECT_LT(field(r.summary, "bytes_sent"), field(last_line(c.out()), "bytes_sent") / 4);
}

// A per-node number of the summary's "nodes" array ("bytes_sent" of node 1).
double node_field(const std::string& summary, int node, const std::string& key) {
  auto at = summary.find("{\"node\":" + std::to_string(node) + ",");
  return at == std::string::npos ? std::nan("") : field(summary.substr(at), key);
}

TEST(Nodes, LeaderAndEasgdReplicasLiveBesideTheirWorkersAndMatchOneProcess) {
  // An agent beside each worker holds x_i and takes the local steps there;
  // models cross only at elections / elastic exchanges and evaluations. The
  // steps are the same in the same order: the one-process model bit for bit.
  // softmax on Fashion-MNIST: 7850 floats, 31400 bytes a model.
  const double model = 7850 * 4;
  for (auto [algorithm, workers] : {std::pair<const char*, int>{"leader_sgd", 2}, {"easgd", 4}}) {
    SCOPED_TRACE(algorithm);
    auto r = run_one_and_many(std::string("replicas_") + algorithm, small_run(algorithm, workers), 2);
    ASSERT_EQ(r.error, "");
    EXPECT_EQ(r.model_one, r.model_many) << algorithm << " over 2 processes differs from one process";
    EXPECT_NE(r.log.find("agents beside their workers hold x_i"), std::string::npos) << r.log;
    EXPECT_EQ(field(r.summary, "workers_lost"), 0);
    // With the replicas in the coordinator every one of the 40 steps sent
    // x_i out and took a gradient back: 40 models each way per worker.
    // leader_sgd (tau 8) fetches at most the leader per election and every
    // x_i per evaluation; easgd (tau 4) moves each x_i at 10 exchanges.
    const double per_node = workers / 2;
    for (int n = 0; n < 2; ++n)
      for (const char* key : {"bytes_sent", "bytes_received"}) {
        const double bytes = node_field(r.summary, n, key);
        EXPECT_GT(bytes, 0) << r.summary;
        EXPECT_LE(bytes, 11 * per_node * (model + 8)) << key << " of node " << n << ": " << r.summary;
      }
  }
}

TEST(Nodes, AKilledNodesReplicasCountAsLostAndTheRunFinishes) {
  auto out = temp_path("killed_replicas");
  // leader_sgd, 4 workers on 2 nodes: node 1 hosts workers 1 and 3 and
  // their agents.
  chorus_process run({"train", "--algorithm", "leader_sgd", "--workers", "4", "--processes", "2",
                      "--model", "softmax", "--steps", "400", "--eval-every", "20", "--delay",
                      "fixed:5ms", "--timeout", "60s", "--out", out},
                     out + "_log");
  ASSERT_TRUE(wait_for([&] { return test::has_a_line(out + "/metrics.jsonl"); })) << run.err();
  auto pids = node_pids(run.err());
  ASSERT_EQ(pids.size(), 2u) << run.err();
  ::kill(pids[1], SIGKILL);
  ASSERT_EQ(run.wait(), 0) << run.err();
  auto summary = last_line(run.out());
  EXPECT_EQ(field(summary, "workers_lost"), 2) << summary;
  EXPECT_EQ(field(summary, "steps"), 400) << summary;
  EXPECT_EQ(field(summary, "workers_alive"), 2) << summary;
  EXPECT_NE(run.err().find("agents beside their workers"), std::string::npos) << run.err();
}

// Every protocol family over several processes: gossip (peers talk to
// workers on other nodes), replicas, asynchronous updates.
struct family {
  const char* algorithm;
  int processes;
};
class NodesProtocols : public ::testing::TestWithParam<family> {};

TEST_P(NodesProtocols, TrainsOverSeveralProcesses) {
  auto p = GetParam();
  auto name = temp_path(std::string("family_") + p.algorithm);
  auto args = small_run(p.algorithm, 3)
              + std::vector<std::string>{"--processes", std::to_string(p.processes), "--lr", "0.2"};
  if (std::string(p.algorithm) == "gossip_sgd")
    args = args + std::vector<std::string>{"--topology", "ring"};
  // A slow process (a sanitizer build) makes one worker's gradients arrive
  // dozens of updates late; at lr 0.2 one of them undid the run (0.45 after
  // a staleness-27 gradient in one CI run). eta / (1 + staleness) is how
  // async_sgd is meant to run with uneven workers.
  if (std::string(p.algorithm) == "async_sgd")
    args = args + std::vector<std::string>{"--staleness-lr"};
  chorus_process run(args, name);
  ASSERT_EQ(run.wait(), 0) << run.err();
  auto summary = last_line(run.out());
  EXPECT_EQ(field(summary, "workers_lost"), 0) << summary;
  // Softmax on Fashion-MNIST reaches ~0.7 in a few dozen steps; chance is 0.1.
  EXPECT_GT(field(summary, "test_acc"), 0.5) << summary;
  EXPECT_EQ(std::count(summary.begin(), summary.end(), '@'), 0);
  EXPECT_NE(summary.find("\"node\":" + std::to_string(p.processes - 1)), std::string::npos) << summary;
}

INSTANTIATE_TEST_SUITE_P(Families, NodesProtocols,
                         ::testing::Values(family{"gossip_sgd", 3}, family{"async_gossip", 3},
                                           family{"leader_sgd", 2}, family{"allreduce_sgd", 2},
                                           family{"async_sgd", 2}, family{"local_sgd", 2}),
                         [](const auto& info) { return std::string(info.param.algorithm); });

TEST(Nodes, AKilledNodeLosesItsWorkersAndTheRunGoesOn) {
  auto out = temp_path("killed_node");
  // 4 workers on 2 nodes (round-robin: node 1 hosts workers 1 and 3); slow
  // enough steps that the kill lands mid-run.
  chorus_process run({"train", "--workers", "4", "--processes", "2", "--model", "softmax", "--steps",
                      "400", "--eval-every", "20", "--delay", "fixed:5ms", "--timeout", "60s",
                      "--out", out},
                     out + "_log");
  ASSERT_TRUE(wait_for([&] { return test::has_a_line(out + "/metrics.jsonl"); }))
    << run.err();
  auto pids = node_pids(run.err());
  ASSERT_EQ(pids.size(), 2u) << run.err();
  ::kill(pids[1], SIGKILL);
  auto killed = std::chrono::steady_clock::now();
  ASSERT_EQ(run.wait(), 0) << run.err();
  auto summary = last_line(run.out());
  EXPECT_EQ(field(summary, "workers_lost"), 2) << summary;
  EXPECT_EQ(field(summary, "steps"), 400) << summary;
  EXPECT_NE(run.err().find("worker 1 on node 1"), std::string::npos) << run.err();
  // Noticed from the closed connection, not after the 60 s reply timeout.
  EXPECT_LT(std::chrono::steady_clock::now() - killed, std::chrono::seconds(50));
  EXPECT_TRUE(wait_for([&] { return exited(pids[0]); }, std::chrono::seconds(20)));
}

TEST(Nodes, NodesExitWhenTheirCoordinatorIsKilled) {
  auto out = temp_path("killed_coordinator");
  auto run = std::make_unique<chorus_process>(
    std::vector<std::string>{"train", "--workers", "2", "--processes", "2", "--model", "softmax",
                             "--steps", "100000", "--eval-every", "20", "--delay", "fixed:2ms",
                             "--out", out},
    out + "_log");
  ASSERT_TRUE(wait_for([&] { return test::has_a_line(out + "/metrics.jsonl"); })) << run->err();
  auto pids = node_pids(run->err());
  ASSERT_EQ(pids.size(), 2u) << run->err();
  run->signal(SIGKILL);
  run->wait();
  for (int pid : pids)
    EXPECT_TRUE(wait_for([&] { return exited(pid); }, std::chrono::seconds(30)))
      << "node process " << pid << " outlived its coordinator";
}

TEST(Nodes, RunningNodesServeOneRunAfterAnother) {
  node_child n0("serve_0"), n1("serve_1");
  ASSERT_GT(n0.port, 0);
  ASSERT_GT(n1.port, 0);
  for (int round = 0; round < 2; ++round) {
    chorus_process run(small_run("sync_sgd", 3) + std::vector<std::string>{"--nodes", n0.at() + "," + n1.at(),
                                                                      "--placement", "0,1,1"},
                       temp_path("serve_run_" + std::to_string(round)));
    ASSERT_EQ(run.wait(), 0) << run.err();
    auto summary = last_line(run.out());
    EXPECT_NE(summary.find("\"workers\":[1,2]"), std::string::npos) << summary;
  }
  // Still serving, then a clean exit on SIGTERM.
  n0.proc->signal(SIGTERM);
  EXPECT_EQ(n0.proc->wait(), 143);
}

// A loopback port nobody listens on (bound, then closed).
std::string free_port() {
  int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  socklen_t len = sizeof(addr);
  ::getsockname(s, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(s);
  return std::to_string(ntohs(addr.sin_port));
}

TEST(Nodes, NodesRegisterWithTheirLauncherRanks) {
  // As srun would start them: each node gets SLURM_PROCID and registers at
  // the coordinator; the ranks, not the arrival order, number the nodes.
  auto at = "127.0.0.1:" + free_port();
  chorus_process run(small_run("sync_sgd", 3) + std::vector<std::string>{"--await-nodes", "2", "--listen", at},
                     temp_path("register_run"));
  ASSERT_TRUE(wait_for([&] { return run.err().find("waiting for 2 node(s)") != std::string::npos; }))
    << run.err();
  ::setenv("SLURM_PROCID", "1", 1);
  chorus_process second({"node", "--coordinator", at}, temp_path("register_1"));
  ASSERT_TRUE(wait_for([&] { return second.out().find("listening") != std::string::npos; }));
  ::setenv("SLURM_PROCID", "0", 1);
  chorus_process first({"node", "--coordinator", at}, temp_path("register_0"));
  ::unsetenv("SLURM_PROCID");
  ASSERT_EQ(run.wait(), 0) << run.err();
  auto summary = last_line(run.out());
  const std::string key = "\"node\":0,\"name\":\"";
  auto node0 = summary.find(key);
  ASSERT_NE(node0, std::string::npos) << summary;
  auto begin = node0 + key.size();
  auto name = summary.substr(begin, summary.find('"', begin) - begin);
  EXPECT_EQ(name.substr(name.rfind(':') + 1), std::to_string(first.pid())) << summary;
  // Both nodes end with the run.
  EXPECT_EQ(first.wait(), 0) << first.err();
  EXPECT_EQ(second.wait(), 0) << second.err();
}

TEST(Nodes, ANodeThatNeverAnswersIsAClearErrorAfterTheTimeout) {
  auto port = free_port();
  chorus_process run(small_run("sync_sgd", 2) + std::vector<std::string>{"--nodes", "127.0.0.1:" + port,
                                                                    "--timeout", "1s"},
                     temp_path("no_node"));
  EXPECT_EQ(run.wait(), 1);
  EXPECT_NE(run.err().find("127.0.0.1:" + port), std::string::npos) << run.err();
}

// A node SIGKILLed while the run is set up (connected, its job taken, its
// data loading) is an error naming it, from its closed connection: not
// after the coordinator's wait for the job (--timeout plus two minutes).
// The node's data folder holds a FIFO for the images that nobody writes, so
// it is sure to be inside its set-up when the test kills it.
TEST(Nodes, ANodeKilledDuringTheSetUpIsAnErrorNamingItWithinTheTimeout) {
  auto dir = temp_path("fifo_data");
  std::filesystem::create_directories(dir);
  auto fifo = dir + "/train-images-idx3-ubyte.gz";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0) << std::strerror(errno);
  node_child good("setup_good"), stuck("setup_stuck", {"--data-dir", dir});
  ASSERT_GT(good.port, 0);
  ASSERT_GT(stuck.port, 0);
  chorus_process run(small_run("sync_sgd", 2) + std::vector<std::string>{"--nodes", good.at() + "," + stuck.at(),
                                                                     "--timeout", "10s"},
                     temp_path("setup_kill"));
  // A writer opens a FIFO without blocking only once a reader waits in it:
  // the stuck node, loading its job's data.
  int writer = -1;
  ASSERT_TRUE(wait_for([&] { return (writer = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK)) >= 0; }))
    << run.err();
  stuck.proc->signal(SIGKILL);
  stuck.proc->wait();
  ::close(writer);
  // The bound is generous (a loaded machine), far below the 130 s of a
  // coordinator that waits out its request.
  ASSERT_TRUE(wait_for([&] { return exited(run.pid()); }, std::chrono::seconds(10 + 20)))
    << "the coordinator still waits for a node that is gone: " << run.err();
  EXPECT_EQ(run.wait(), 1) << run.err();
  EXPECT_NE(run.err().find(stuck.at() + ") is gone"), std::string::npos) << run.err();
}

// A CAF actor that takes the connection and never answers hello: the
// coordinator says so, naming where, after --timeout.
TEST(Nodes, ANodeThatNeverAnswersHelloIsNamedAfterTheTimeout) {
  node_client host(0);
  using promises = std::vector<caf::response_promise>;
  // The promises kept (never delivered) are a spawn argument: CAF 0.17
  // dereferences a null argument tuple for a function actor spawned with none.
  auto mute = host.sys.spawn(
    [](caf::event_based_actor* self, std::shared_ptr<promises> kept) -> caf::behavior {
      return {[self, kept](hello_atom, const std::string&, uint64_t) {
        kept->push_back(self->make_response_promise());
        return kept->back();
      }};
    },
    std::make_shared<promises>());
  auto port = publish_actor(host.sys, caf::actor_cast<caf::strong_actor_ptr>(mute),
                            {"127.0.0.1", 0}, {});
  ASSERT_TRUE(port) << describe(port.error());
  auto at = "127.0.0.1:" + std::to_string(*port);
  chorus_process run(small_run("sync_sgd", 2) + std::vector<std::string>{"--nodes", at, "--timeout", "2s"},
                     temp_path("mute_node"));
  EXPECT_TRUE(wait_for([&] { return exited(run.pid()); }, std::chrono::seconds(2 + 20))) << run.err();
  EXPECT_EQ(run.wait(), 1) << run.err();
  EXPECT_NE(run.err().find("node 0 at " + at + " did not answer hello within 2000 ms"), std::string::npos)
    << run.err();
  caf::anon_send_exit(mute, caf::exit_reason::user_shutdown);  // published: before the system ends
}

TEST(Nodes, ANodeRefusesAnotherVersionSayingSo) {
  node_child node("version");
  ASSERT_GT(node.port, 0);
  node_client client(node.port);
  ASSERT_TRUE(client.handle) << client.error;
  auto& handle = client.handle;
  caf::scoped_actor self{client.sys};
  auto ask = [&](const std::string& v, uint64_t types) {
    std::string answer;
    self->request(handle, std::chrono::seconds(20), hello_atom_v, v, types)
      .receive([&](std::string& name) { answer = "ok " + name; },
               [&](caf::error& err) { answer = describe(err); });
    return answer;
  };
  EXPECT_EQ(ask(version, type_table_hash()).rfind("ok ", 0), 0u);
  auto other_version = ask("0.0.0-elsewhere", type_table_hash());
  EXPECT_NE(other_version.find("version mismatch"), std::string::npos) << other_version;
  EXPECT_NE(other_version.find("0.0.0-elsewhere"), std::string::npos) << other_version;
  auto other_types = ask(version, type_table_hash() ^ 1);
  EXPECT_NE(other_types.find("version mismatch"), std::string::npos) << other_types;
  // The node still serves after refusing.
  EXPECT_EQ(ask(version, type_table_hash()).rfind("ok ", 0), 0u);
}

TEST(Nodes, GarbageOnANodesPortLeavesItServing) {
  node_child node("garbage");
  ASSERT_GT(node.port, 0);
  auto before = rss_kb(node.proc->pid());
  std::mt19937 rng(7);
  for (int k = 0; k < 20; ++k) {
    int s = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(node.port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::connect(s, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    std::vector<unsigned char> junk(4096);
    for (auto& b : junk)
      b = static_cast<unsigned char>(rng());
    // A byte that is not a valid BASP operation first, so no header claims
    // a payload (a plain port would allocate whatever one claims: see the
    // TLS test below and the README).
    junk[0] = 0xff;
    (void)!::send(s, junk.data(), junk.size(), MSG_NOSIGNAL);
    ::close(s);
  }
  // Memory first (the run below makes the node load the data), then proof
  // that it still serves.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_LT(rss_kb(node.proc->pid()) - before, 64 * 1024) << "node memory grew after garbage";
  chorus_process run(small_run("sync_sgd", 2) + std::vector<std::string>{"--nodes", node.at()},
                     temp_path("garbage_run"));
  ASSERT_EQ(run.wait(), 0) << run.err();
}

// -- TLS (certificates made with the openssl command line) ------------------------------

struct tls_files {
  std::string dir, ca_a, ca_b, cert_a, key_a, cert_b, key_b, cert_enc, key_enc;
  bool ok = false;
};

// Two CAs, a certificate from each, and one with an encrypted key.
const tls_files& certificates() {
  static tls_files f = [] {
    tls_files t;
    t.dir = temp_path("tls");
    std::filesystem::create_directories(t.dir);
    auto run = [&](const std::string& cmd) {
      return std::system(("cd " + t.dir + " && " + cmd + " >/dev/null 2>&1").c_str()) == 0;
    };
    auto ca = [&](const std::string& n) {
      return run("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=ca-" + n + " -keyout ca-" + n
                 + ".key -out ca-" + n + ".pem");
    };
    auto leaf = [&](const std::string& n, const std::string& ca, const std::string& keyopt) {
      return run("openssl req -newkey rsa:2048 " + keyopt + " -subj /CN=" + n + " -keyout " + n
                 + ".key -out " + n + ".csr")
             && run("openssl x509 -req -in " + n + ".csr -CA ca-" + ca + ".pem -CAkey ca-" + ca
                    + ".key -CAcreateserial -days 2 -out " + n + ".pem");
    };
    t.ok = ca("a") && ca("b") && leaf("a", "a", "-nodes") && leaf("b", "b", "-nodes")
           && leaf("enc", "a", "-passout pass:right-one");
    auto p = [&](const std::string& n) { return t.dir + "/" + n; };
    t.ca_a = p("ca-a.pem"), t.ca_b = p("ca-b.pem");
    t.cert_a = p("a.pem"), t.key_a = p("a.key"), t.cert_b = p("b.pem"), t.key_b = p("b.key");
    t.cert_enc = p("enc.pem"), t.key_enc = p("enc.key");
    return t;
  }();
  return f;
}

TEST(NodesTls, MutualTlsTrainsAndAForeignCertificateIsRefused) {
  auto& t = certificates();
  ASSERT_TRUE(t.ok) << "could not make test certificates with the openssl command";
  node_child node("tls_node", {"--tls-cert", t.cert_a, "--tls-key", t.key_a, "--tls-ca", t.ca_a});
  ASSERT_GT(node.port, 0) << node.proc->err();
  chorus_process good(small_run("sync_sgd", 2)
                        + std::vector<std::string>{"--nodes", node.at(), "--tls-cert", t.cert_a,
                                                   "--tls-key", t.key_a, "--tls-ca", t.ca_a},
                      temp_path("tls_good"));
  EXPECT_EQ(good.wait(), 0) << good.err();
  chorus_process foreign(small_run("sync_sgd", 2)
                           + std::vector<std::string>{"--nodes", node.at(), "--tls-cert", t.cert_b,
                                                      "--tls-key", t.key_b, "--tls-ca", t.ca_a,
                                                      "--timeout", "5s"},
                         temp_path("tls_foreign"));
  EXPECT_EQ(foreign.wait(), 1);
  EXPECT_NE(foreign.err().find(node.at()), std::string::npos) << foreign.err();
  chorus_process plain(small_run("sync_sgd", 2)
                         + std::vector<std::string>{"--nodes", node.at(), "--timeout", "5s"},
                       temp_path("tls_plain"));
  EXPECT_EQ(plain.wait(), 1);
  // A header claiming a 1 GiB payload: a TLS port resets it without
  // allocating, and the node goes on serving.
  auto before = rss_kb(node.proc->pid());
  int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(node.port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(s, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  unsigned char header[32] = {1, 0, 0, 0, 0x40, 0, 0, 0};  // op 1, payload_len 2^30 (big-endian)
  (void)!::send(s, header, sizeof(header), MSG_NOSIGNAL);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ::close(s);
  EXPECT_LT(rss_kb(node.proc->pid()) - before, 256 * 1024);
  chorus_process again(small_run("sync_sgd", 2)
                         + std::vector<std::string>{"--nodes", node.at(), "--tls-cert", t.cert_a,
                                                    "--tls-key", t.key_a, "--tls-ca", t.ca_a},
                       temp_path("tls_again"));
  EXPECT_EQ(again.wait(), 0) << again.err();
}

TEST(NodesTls, AWrongPassphraseIsAClearErrorNotAHang) {
  auto& t = certificates();
  ASSERT_TRUE(t.ok);
  ::setenv("CHORUS_TLS_PASSPHRASE", "wrong-one", 1);
  chorus_process node({"node", "--listen", "127.0.0.1:0", "--tls-cert", t.cert_enc, "--tls-key",
                       t.key_enc, "--tls-ca", t.ca_a},
                      temp_path("tls_pass"));
  ::unsetenv("CHORUS_TLS_PASSPHRASE");
  EXPECT_EQ(node.wait(), 1);
  EXPECT_NE(node.err().find("passphrase"), std::string::npos) << node.err();
  EXPECT_NE(node.err().find(t.key_enc), std::string::npos) << node.err();
}

TEST(NodesTls, ListeningOffLoopbackNeedsTlsOrInsecure) {
  chorus_process node({"node", "--listen", "0.0.0.0:0"}, temp_path("any_addr"));
  EXPECT_EQ(node.wait(), 2);
  EXPECT_NE(node.err().find("--insecure"), std::string::npos) << node.err();
  chorus_process train(small_run("sync_sgd", 2) + std::vector<std::string>{"--nodes", "10.1.2.3:4000"},
                       temp_path("remote_plain"));
  EXPECT_EQ(train.wait(), 2);
  EXPECT_NE(train.err().find("--insecure"), std::string::npos) << train.err();
}

// -- data and placement -------------------------------------------------------------------

void write_idx_gz(const std::string& path, uint32_t magic, std::vector<uint32_t> dims,
                  const std::vector<unsigned char>& body) {
  std::vector<unsigned char> b;
  auto be32 = [&](uint32_t v) {
    for (int s = 24; s >= 0; s -= 8)
      b.push_back(static_cast<unsigned char>(v >> s));
  };
  be32(magic);
  for (auto d : dims)
    be32(d);
  b.insert(b.end(), body.begin(), body.end());
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(gzwrite(f, b.data(), static_cast<unsigned>(b.size())), static_cast<int>(b.size()));
  ASSERT_EQ(gzclose(f), Z_OK);
}

// A tiny Fashion-MNIST-shaped folder; `label_shift` changes its labels.
std::string tiny_fashion(const std::string& name, int label_shift) {
  auto dir = temp_path(name);
  std::filesystem::create_directories(dir);
  for (auto [prefix, n] : {std::pair{"train", 200}, {"t10k", 50}}) {
    std::vector<unsigned char> pixels(static_cast<size_t>(n) * 784), labels(static_cast<size_t>(n));
    for (size_t i = 0; i < pixels.size(); ++i)
      pixels[i] = static_cast<unsigned char>((i * 31) % 251);
    for (size_t i = 0; i < labels.size(); ++i)
      labels[i] = static_cast<unsigned char>((i + static_cast<size_t>(label_shift)) % 10);
    write_idx_gz(dir + "/" + prefix + "-images-idx3-ubyte.gz", 0x803,
                 {static_cast<uint32_t>(n), 28, 28}, pixels);
    write_idx_gz(dir + "/" + prefix + "-labels-idx1-ubyte.gz", 0x801, {static_cast<uint32_t>(n)},
                 labels);
  }
  return dir;
}

TEST(Nodes, ANodeWithOtherDataIsRefusedByName) {
  auto mine = tiny_fashion("data_mine", 0), theirs = tiny_fashion("data_theirs", 3);
  node_child good("data_good", {"--data-dir", mine}), odd("data_odd", {"--data-dir", theirs});
  ASSERT_GT(good.port, 0);
  ASSERT_GT(odd.port, 0);
  chorus_process run({"train", "--workers", "2", "--model", "softmax", "--steps", "5", "--quiet",
                      "--data-dir", mine, "--nodes", good.at() + "," + odd.at()},
                     temp_path("data_run"));
  EXPECT_EQ(run.wait(), 1);
  EXPECT_NE(run.err().find("node 1"), std::string::npos) << run.err();
  EXPECT_NE(run.err().find(odd.at()), std::string::npos) << run.err();
  EXPECT_NE(run.err().find("other data"), std::string::npos) << run.err();
}

// --processes P --devices ...: each node process its own share of the GPUs,
// and each node its devices to its own workers in turn (not by global rank:
// round-robin puts ranks 0 and 2 on node 0, which has devices 0 and 1).
TEST(Nodes, EachProcessGetsItsShareOfTheDevicesAndEachWorkerItsOwn) {
  const std::vector<int> four{0, 1, 2, 3};
  EXPECT_EQ(process_devices(four, 4, 0), (std::vector<int>{0}));
  EXPECT_EQ(process_devices(four, 4, 3), (std::vector<int>{3}));
  EXPECT_EQ(process_devices(four, 2, 0), (std::vector<int>{0, 2}));
  EXPECT_EQ(process_devices(four, 2, 1), (std::vector<int>{1, 3}));
  EXPECT_EQ(process_devices({5, 7}, 2, 1), (std::vector<int>{7}));
  EXPECT_TRUE(process_devices({0}, 2, 0).empty());  // fewer GPUs than processes: keep all
  EXPECT_TRUE(process_devices(four, 2, 2).empty());  // no such process
  // Node 0 of a round-robin placement hosts ranks 0 and 2: GPUs 0 then 1.
  const std::vector<int> two{0, 1};
  EXPECT_EQ(node_device(two, 0), 0);
  EXPECT_EQ(node_device(two, 1), 1);
  EXPECT_EQ(node_device(two, 2), 0);
  EXPECT_EQ(node_device({6}, 3), 6);
}

TEST(Nodes, PlacementSpreadsWorkersAsAsked) {
  EXPECT_EQ(place_workers("round-robin", 5, 2), (std::vector<int>{0, 1, 0, 1, 0}));
  EXPECT_EQ(place_workers("block", 5, 2), (std::vector<int>{0, 0, 0, 1, 1}));
  EXPECT_EQ(place_workers("1,1,0", 3, 2), (std::vector<int>{1, 1, 0}));
  EXPECT_THROW(place_workers("1,2", 2, 2), std::invalid_argument);   // no node 2
  EXPECT_THROW(place_workers("0,1", 3, 2), std::invalid_argument);   // one per worker
  EXPECT_THROW(place_workers("spread", 3, 2), std::invalid_argument);
}

// On cuda a node hosts one worker per device by default: slots go round
// the nodes, each taking its next device while it has one.
TEST(Nodes, CudaPlacementPutsOneWorkerOnEachDeviceOfEachNode) {
  EXPECT_EQ(place_by_devices({2, 1}, 3), (std::vector<int>{0, 1, 0}));
  EXPECT_EQ(place_by_devices({1, 3}, 4), (std::vector<int>{0, 1, 1, 1}));
  EXPECT_EQ(place_by_devices({2, 2}, 4), (std::vector<int>{0, 1, 0, 1}));
  EXPECT_EQ(place_by_devices({2, 1}, 5), (std::vector<int>{0, 1, 0, 0, 1}));  // round again
  EXPECT_THROW(place_by_devices({2, 0}, 2), std::invalid_argument);
  // auto: by devices on cuda, round-robin on the CPU; --placement overrides.
  EXPECT_EQ(resolve_placement("auto", "cuda", 4, {3, 1}), (std::vector<int>{0, 1, 0, 0}));
  EXPECT_EQ(resolve_placement("auto", "eigen", 4, {3, 1}), (std::vector<int>{0, 1, 0, 1}));
  EXPECT_EQ(resolve_placement("devices", "eigen", 3, {1, 2}), (std::vector<int>{0, 1, 1}));
  EXPECT_EQ(resolve_placement("block", "cuda", 4, {3, 1}), (std::vector<int>{0, 0, 1, 1}));
  EXPECT_EQ(resolve_placement("1,1,0", "cuda", 3, {3, 1}), (std::vector<int>{1, 1, 0}));
  EXPECT_THROW(resolve_placement("spread", "cuda", 3, {1, 1}), std::invalid_argument);
}

TEST(Nodes, AllreduceNcclNeedsAGpuOfItsOwnForEveryWorkerOfANode) {
  auto label = [](size_t n) { return "node #" + std::to_string(n); };
  EXPECT_NO_THROW(check_one_gpu_per_rank({0, 1, 0}, {{0, 1}, {0}}, label));
  try {
    check_one_gpu_per_rank({0, 1, 1}, {{0, 1}, {4, 4}}, label);  // a device listed twice is one
    FAIL() << "two workers on one GPU were accepted";
  } catch (const std::invalid_argument& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("node #1 would host workers 1,2 on 1 GPU(s) [4,4]"), std::string::npos)
      << what;
  }
}

// What cannot work across processes is refused before any process starts.
TEST(Nodes, AllreduceNcclAcrossProcessesRefusesWhatCannotWork) {
  auto refusal = [](std::vector<std::string> extra) {
    std::vector<std::string> args{"--algorithm", "sync_sgd", "--processes", "2", "--workers", "2",
                                  "--allreduce", "nccl"};
    args.insert(args.end(), extra.begin(), extra.end());
    bool help = false;
    try {
      validate(parse_train_args(args, &help));
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_NE(refusal({}).find("needs --backend cuda"), std::string::npos) << refusal({});
  const std::vector<std::string> cuda{"--backend", "cuda", "--devices", "0,1"};
  auto crash = refusal(cuda + std::vector<std::string>{"--crash", "1:5"});
  EXPECT_NE(crash.find("cannot lose a rank"), std::string::npos) << crash;
  auto byz = refusal(cuda + std::vector<std::string>{"--byzantine", "1:signflip"});
  EXPECT_NE(byz.find("--byzantine with --allreduce nccl"), std::string::npos) << byz;
  // One device for two processes: each keeps it, and 4 workers put two on it.
  auto few = refusal({"--backend", "cuda", "--devices", "0", "--workers", "4"});
  EXPECT_NE(few.find("node process 0 would host workers 0,2 on 1 GPU(s) [0]"), std::string::npos)
    << few;
  // Placed by hand onto one process: its one GPU cannot take both.
  auto placed = refusal(cuda + std::vector<std::string>{"--placement", "1,1"});
  EXPECT_NE(placed.find("node process 1 would host workers 0,1"), std::string::npos) << placed;
  auto ok = refusal(cuda);
  if (device::built_with_cuda())
    EXPECT_EQ(ok, "accepted");
  else
    EXPECT_NE(ok.find("needs a build with CUDA and NCCL"), std::string::npos) << ok;
}

// Nodes say which GPUs they have after the hello; the coordinator places
// one worker per device of each, and --allreduce nccl refuses a node that
// would get more workers than GPUs, naming it. No GPU is touched: placing
// happens before any worker exists.
TEST(Nodes, NodesReportTheirDevicesInTheHandshakeAndCudaRunsArePlacedByThem) {
  node_child three("devices3", {"--devices", "0,1,2"});
  node_child one("devices1", {"--devices", "5"});
  ASSERT_GT(three.port, 0);
  ASSERT_GT(one.port, 0);
  node_client client(0);
  auto& sys = client.sys;
  auto lines = [&](const std::string& backend, const std::string& placement, int workers) {
    experiment_config cfg;
    cfg.nodes = {three.at(), one.at()};
    cfg.backend = backend;
    cfg.placement = placement;
    cfg.workers = workers;
    cfg.timeout_ms = 20000;
    cluster c(sys, cfg);
    std::string out;
    for (auto& l : c.describe())
      out += l.substr(l.find("): ") + 3) + "|";
    return out;
  };
  EXPECT_EQ(lines("cuda", "auto", 4), "workers 0,2,3 on GPUs 0,1,2|workers 1 on GPUs 5|");
  EXPECT_EQ(lines("cuda", "round-robin", 4), "workers 0,2 on GPUs 0,1,2|workers 1,3 on GPUs 5|");
  EXPECT_EQ(lines("eigen", "auto", 4), "workers 0,2|workers 1,3|");
  experiment_config cfg;
  cfg.nodes = {three.at(), one.at()};
  cfg.backend = "cuda";
  cfg.workers = 5;  // slots 0,1,0,0, then round again: a fourth worker on node 0's three GPUs
  cfg.timeout_ms = 20000;
  cfg.options["allreduce"] = "nccl";
  try {
    cluster c(sys, cfg);
    FAIL() << "a node with one GPU was given two NCCL ranks";
  } catch (const std::exception& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("node 0 ("), std::string::npos) << what;
    EXPECT_NE(what.find("would host workers 0,2,3,4 on 3 GPU(s) [0,1,2]"), std::string::npos) << what;
  }
}

// The node's side of --allreduce nccl: it checks its own GPUs against the
// workers it is asked to host before touching a device, and the node of
// worker 0 makes the unique id (without a GPU: a refusal saying so).
TEST(Nodes, ANodeRefusesAnNcclJobItCannotHostSayingWhy) {
  node_child node("nccl_job", {"--devices", "0"});
  ASSERT_GT(node.port, 0);
  node_client client(node.port);
  ASSERT_TRUE(client.handle) << client.error;
  auto& handle = client.handle;
  caf::scoped_actor self{client.sys};
  std::string said;
  self->request(handle, std::chrono::seconds(20), hello_atom_v, std::string{version}, type_table_hash())
    .receive([](std::string&) {}, [&](caf::error& err) { said = describe(err); });
  ASSERT_TRUE(said.empty()) << said;
  std::vector<int32_t> devices;
  self->request(handle, std::chrono::seconds(20), devices_atom_v)
    .receive([&](node_devices& d) { devices = d.devices; }, [&](caf::error& err) { said = describe(err); });
  EXPECT_EQ(devices, (std::vector<int32_t>{0})) << said;
  auto args = small_run("sync_sgd", 2);
  args.erase(args.begin());  // "train"
  args.insert(args.end(), {"--backend", "cuda", "--allreduce", "nccl"});
  auto host = [&](std::vector<int32_t> ranks) {
    std::string answer = "hosted";
    self->request(handle, std::chrono::seconds(60), host_atom_v, node_job{args, std::move(ranks)})
      .receive([](hosted_workers&) {}, [&](caf::error& err) { answer = describe(err); });
    return answer;
  };
  auto two = host({0, 1});
  EXPECT_NE(two.find("would host workers 0,1 on 1 GPU(s) [0]"), std::string::npos) << two;
  if (device::count() == 0) {
    auto first = host({0});
    EXPECT_NE(first.find("make_nccl_id"), std::string::npos) << first;
  }
}

TEST(Nodes, TheFlagsSentToANodeDescribeTheSameRun) {
  bool help = false;
  auto cfg = parse_train_args({"--algorithm", "local_sgd", "--workers", "6", "--model", "mlp:32,16",
                               "--lr", "0.0123456789", "--epochs", "1.75", "--tau", "3", "--seed",
                               "99", "--crash", "2:7", "--slow", "1:3", "--target-acc", "0.8",
                               "--partition", "dirichlet:0.3", "--reg", "l1:1e-5", "--timeout",
                               "1500ms", "--processes", "3", "--placement", "block",
                               "--scheduler", "sharing"},
                              &help);
  auto back = parse_train_args(to_args(cfg), &help);
  EXPECT_EQ(to_json(back).find("\"processes\""), std::string::npos);  // where is not sent
  back.processes = cfg.processes;
  back.placement = cfg.placement;
  EXPECT_EQ(to_json(back), to_json(cfg));
}

} // namespace
} // namespace chorus
