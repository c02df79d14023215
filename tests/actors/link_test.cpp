// The link model (--link BW[,LATENCY], actors/link.hpp):
//  - specs parse, and bad ones are refused naming the valid forms;
//  - a sender's messages queue: the second of two back-to-back messages
//    arrives one transmit time after the first;
//  - a synchronous round lasts at least the configured time of its bytes
//    (the protocol's N requests queue on its own link, then one reply), the
//    time grows with bytes / bandwidth (4x slower link, about 4x longer
//    rounds, within generous bounds), and the weights are those of a run
//    without a link, bit for bit;
//  - compression shortens the round: the encoded gradient is what the link
//    carries;
//  - gossip messages go over the peers' own links, and async_gossip's
//    exchanges over both partners' links;
//  - a huge configured delay never hangs the run: it fails by its timeout
//    and the process goes on at once.
#include <gtest/gtest.h>

#include <chrono>
#include <stdexcept>

#include "actors/link.hpp"
#include "tests/algorithms/harness.hpp"

using namespace chorus;

namespace {

std::string refusal(const std::string& spec) {
  try {
    link_spec::parse(spec);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

experiment_config linear_run(const std::string& algo, int workers, int64_t steps) {
  experiment_config cfg;
  cfg.algorithm = algo;
  cfg.workers = workers;
  cfg.model = "linear";
  cfg.lr = 0.01;
  cfg.batch = 16;
  cfg.steps = steps;
  cfg.eval_every = steps;
  cfg.progress = false;
  return cfg;
}

} // namespace

TEST(link_spec, parses_bandwidth_units_and_latency) {
  auto s = link_spec::parse("1gbit,100us");
  EXPECT_DOUBLE_EQ(s.bytes_per_s, 1.25e8);
  EXPECT_EQ(s.latency, std::chrono::microseconds(100));
  EXPECT_DOUBLE_EQ(link_spec::parse("100mbit").bytes_per_s, 12.5e6);
  EXPECT_EQ(link_spec::parse("100mbit").latency.count(), 0);
  EXPECT_DOUBLE_EQ(link_spec::parse("50MB,2ms").bytes_per_s, 5e7);
  EXPECT_DOUBLE_EQ(link_spec::parse("8kbit").bytes_per_s, 1000);
  EXPECT_DOUBLE_EQ(link_spec::parse("3KB").bytes_per_s, 3000);
  EXPECT_DOUBLE_EQ(link_spec::parse("2B").bytes_per_s, 2);
  EXPECT_FALSE(link_spec::parse("").active());
  EXPECT_FALSE(link_spec::parse("none").active());
  EXPECT_TRUE(link_spec::parse("1gbit").active());
  // 1 MB at 1 MB/s: one second.
  EXPECT_EQ(link_spec::parse("1MB").transmit_time(1000000), std::chrono::seconds(1));
  EXPECT_NE(refusal("1g").find("valid forms"), std::string::npos) << refusal("1g");
  EXPECT_NE(refusal("fast").find("has no unit"), std::string::npos);
  EXPECT_NE(refusal("-1mbit").find("not a positive number"), std::string::npos);
  EXPECT_NE(refusal("0gbit").find("not a positive number"), std::string::npos);
  EXPECT_NE(refusal("1e30GB").find("out of range"), std::string::npos);
  EXPECT_NE(refusal("1gbit,-3ms").find("negative"), std::string::npos);
  EXPECT_NE(refusal("1gbit,1e300s").find("too long"), std::string::npos);
  EXPECT_NE(refusal("1gbit,fast").find("not a number"), std::string::npos);
}

TEST(link_queue, a_senders_messages_queue_behind_each_other) {
  link_queue q(link_spec::parse("1MB,5ms"));  // 100 KB: 100 ms on the wire
  const auto t0 = std::chrono::steady_clock::now();
  const auto first = q.send(100000);
  const auto second = q.send(100000);
  const auto elapsed = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(first, std::chrono::milliseconds(105) - elapsed);
  EXPECT_LE(first, std::chrono::milliseconds(105));
  // The second leaves when the first has left: one transmit time later.
  EXPECT_GE(second + elapsed, first + std::chrono::milliseconds(100));
  EXPECT_LE(second, first + std::chrono::milliseconds(100));
  // A huge message is cut to the longest wait any injection makes.
  link_queue slow(link_spec::parse("1e-9B"));
  EXPECT_LE(slow.send(size_t{1} << 60), std::chrono::duration_cast<std::chrono::nanoseconds>(max_injected_wait));
}

// sync_sgd, N workers, d floats (wire bytes b = 4d + 8). Per round the
// protocol's N requests queue on its one link (N b / BW), the last worker's
// reply then takes b / BW on its own: a round lasts at least (N + 1) b / BW.
TEST(link_model, a_rounds_time_grows_with_bytes_over_bandwidth) {
  const int64_t d = 2000;
  auto data = make_least_squares(512, 64, d, 0.1, 41);
  const int n = 3;
  const int64_t rounds = 4;
  auto cfg = linear_run("sync_sgd", n, rounds);
  auto plain = run_experiment(cfg, data).summary;
  const double b = static_cast<double>(plain.final_weights.wire_bytes());
  double last_bound = 0, last_wall = 0;
  for (double bw : {400e3, 100e3}) {
    cfg.link = std::to_string(static_cast<int64_t>(bw)) + "B";
    auto linked = run_experiment(cfg, data).summary;
    ASSERT_EQ(linked.steps, rounds);
    const double bound = rounds * (n + 1) * b / bw;
    std::printf("[ measured ] link %s: %lld rounds of %d workers x %.0f B: %.3f s (at least %.3f s; "
                "no link %.3f s)\n",
                cfg.link.c_str(), static_cast<long long>(rounds), n, b, linked.wall_s, bound,
                plain.wall_s);
    EXPECT_GE(linked.wall_s, bound);
    // Generous: a loaded 2-core machine adds compute and scheduling time.
    EXPECT_LE(linked.wall_s, 3 * bound + plain.wall_s + 2.0);
    // The link moves time, not the math.
    ASSERT_EQ(linked.final_weights.size(), plain.final_weights.size());
    for (size_t j = 0; j < plain.final_weights.size(); ++j)
      ASSERT_EQ(linked.final_weights[j], plain.final_weights[j]) << j;
    if (last_bound > 0)
      EXPECT_GT(linked.wall_s, last_wall) << "a 4x slower link must make the run slower";
    last_bound = bound, last_wall = linked.wall_s;
  }
}

// With --compress the encoder sits beside the worker, so the link carries
// the encoded gradient: qsgd:4 sends about 1/8 of the bytes up.
TEST(link_model, compression_shortens_the_uplink) {
  const int64_t d = 4000;
  auto data = make_least_squares(512, 64, d, 0.1, 42);
  auto cfg = linear_run("sync_sgd", 1, 3);
  cfg.link = "100KB";  // 16 KB of weights: 160 ms each way uncompressed
  auto full = run_experiment(cfg, data).summary;
  cfg.options["compress"] = "qsgd:4";
  auto small = run_experiment(cfg, data).summary;
  const double b = static_cast<double>(full.final_weights.wire_bytes());
  std::printf("[ measured ] 3 rounds at 100 KB/s: uncompressed %.3f s, qsgd:4 %.3f s (%lld vs %lld "
              "bytes)\n",
              full.wall_s, small.wall_s, static_cast<long long>(full.bytes_sent),
              static_cast<long long>(small.bytes_sent));
  EXPECT_GE(full.wall_s, 3 * 2 * b / 100e3);
  EXPECT_GE(small.wall_s, 3 * b / 100e3);  // the weights still go down in full
  // Saved: 3 uplinks of 7/8 b, 0.42 s; half of it must show.
  EXPECT_LT(small.wall_s, full.wall_s - 0.5 * 3 * 0.875 * b / 100e3);
  EXPECT_LT(small.bytes_sent, full.bytes_sent);
}

// A ring: each peer sends its message to 2 neighbours, one after the other
// on its link, and a round needs its in-neighbours' messages: >= 2 b / BW.
TEST(link_model, gossip_messages_go_over_each_peers_link) {
  const int64_t d = 2000;
  auto data = make_least_squares(512, 64, d, 0.1, 43);
  const int64_t rounds = 4;
  auto cfg = linear_run("gossip_sgd", 4, rounds);
  cfg.link = "400KB";
  auto r = run_experiment(cfg, data).summary;
  const double b = static_cast<double>(r.final_weights.wire_bytes());
  std::printf("[ measured ] gossip ring of 4 at 400 KB/s: %lld rounds %.3f s (at least %.3f s)\n",
              static_cast<long long>(rounds), r.wall_s, rounds * 2 * b / 400e3);
  EXPECT_EQ(r.steps, rounds);
  EXPECT_GE(r.wall_s, rounds * 2 * b / 400e3);
  EXPECT_LE(r.wall_s, 3 * rounds * 2 * b / 400e3 + 3.0);
}

// A link whose first message takes years: the run fails by its timeout
// (the workers' replies never come), and ends at once: the waits are timers.
TEST(link_model, a_huge_delay_never_hangs_the_run) {
  auto data = make_least_squares(256, 64, 16, 0.1, 44);
  for (auto algo : {"sync_sgd", "gossip_sgd", "async_gossip"}) {
    auto cfg = linear_run(algo, 2, 5);
    cfg.link = "1gbit,1e12ms";
    cfg.timeout_ms = 200;
    const auto t0 = std::chrono::steady_clock::now();
    bool failed = false;
    try {
      auto r = run_experiment(cfg, data);
      failed = r.summary.workers_lost > 0;
    } catch (const std::runtime_error& e) {
      failed = true;
      std::printf("[ measured ] %s: %s\n", algo, e.what());
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("[ measured ] %s behind a 31-year link: ended after %.2f s\n", algo, s);
    // sync_sgd loses its workers; gossip peers drop their silent neighbours
    // after twice the timeout and go on alone (async_gossip's at once: the
    // request would arrive after its timeout).
    if (std::string(algo) == "sync_sgd")
      EXPECT_TRUE(failed);
    EXPECT_LT(s, 30.0) << algo;
  }
}

// async_gossip: every local step of a peer waits for one exchange, whose
// request crosses the initiator's link and whose reply crosses the
// partner's, before it is reported. The run ends after `steps` reports
// from all peers together, so some peer took at least steps / n of them:
// the run lasts at least (steps / n) x 2 b / BW, and a 4x slower link makes
// it longer.
TEST(link_model, async_gossip_exchanges_cross_both_peers_links) {
  const int64_t d = 2000;
  auto data = make_least_squares(512, 64, d, 0.1, 45);
  const int64_t peers = 4, per_peer = 5, steps = peers * per_peer;
  double last_wall = 0;
  for (double bw : {400e3, 100e3}) {
    auto cfg = linear_run("async_gossip", static_cast<int>(peers), steps);
    cfg.link = std::to_string(static_cast<int>(bw / 1e3)) + "KB";
    auto r = run_experiment(cfg, data).summary;
    const double b = static_cast<double>(r.final_weights.wire_bytes());
    const double bound = per_peer * 2 * b / bw;
    std::printf("[ measured ] async_gossip, 4 peers at %s/s: %.3f s (at least %.3f s), %lld steps\n",
                cfg.link.c_str(), r.wall_s, bound, static_cast<long long>(r.steps));
    EXPECT_GE(r.steps, steps);
    EXPECT_GE(r.wall_s, bound);
    EXPECT_LE(r.wall_s, 3 * bound + 3.0);
    EXPECT_GT(r.wall_s, last_wall) << "a 4x slower link must make the run slower";
    last_wall = r.wall_s;
  }
}

TEST(link_model, a_bad_link_spec_is_refused_by_name) {
  auto data = make_least_squares(256, 64, 16, 0.1, 45);
  auto cfg = linear_run("sync_sgd", 2, 5);
  cfg.link = "1gbit,soon";
  try {
    run_experiment(cfg, data);
    FAIL() << "a bad --link ran";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("--link: "), std::string::npos) << e.what();
  }
}
