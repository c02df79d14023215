// Injected heterogeneity: its flags refuse values that no time type holds and
// workers named twice, and an injected wait is a reply held back on the
// actor clock, never a sleep: the worker answers in the order and no earlier
// than a serial worker would, and still ends at once when told to.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <unistd.h>

#include "actors/injection.hpp"
#include "actors/worker.hpp"
#include "tests/test_util.hpp"

using namespace chorus;

namespace {

// The message parse_injections throws for these flags, or "" if it accepts them.
std::string refusal(const std::string& slow, const std::string& delay, const std::string& link,
                    const std::string& crash) {
  try {
    parse_injections(4, slow, delay, link, crash);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

dataset_ptr tiny_regression() {
  auto d = std::make_shared<dataset>();
  d->name = "tiny";
  d->task = task_kind::regression;
  d->num_features = 2;
  d->x = {1, 0, 0, 1, 1, 1, 2, -1};
  d->y = {2, -1, 1, 5};
  return d;
}

worker_config delayed_worker(const std::string& delay) {
  worker_config cfg;
  cfg.model = "linear";
  cfg.data = tiny_regression();
  cfg.batch = 4;
  cfg.order = sampling::sequential;
  cfg.inject.step_delay = delay_spec::parse(delay);
  return cfg;
}

} // namespace

TEST(injection, values_past_what_a_time_type_holds_are_refused_by_flag) {
  auto says = [](const std::string& text, const std::string& part) {
    EXPECT_NE(text.find(part), std::string::npos) << "'" << text << "' should say '" << part << "'";
  };
  says(refusal("", "", "", "0:1e300"), "--crash: step 1e+300 must be a whole number between 0 and 2^53");
  says(refusal("", "", "", "1:1e16"), "between 0 and 2^53");
  says(refusal("", "fixed:1e300", "", ""), "--delay: duration '1e300' is too long (at most 1e15 ms)");
  says(refusal("", "uniform:1ms,1e13s", "", ""), "--delay: duration '1e13s' is too long");
  says(refusal("", "exp:1e300us", "", ""), "too long");
  says(refusal("", "", "1e300", ""), "--link-delay: duration '1e300' is too long");
  says(refusal("0:1e300", "", "", ""), "--slow: factor 1e+300 must be between 1 and 1e12");
  says(refusal("", "", "", "1e300:5"), "--crash: worker 1e300 does not exist");
  // The limits themselves are accepted.
  EXPECT_EQ(refusal("0:1e12", "fixed:1e15ms", "1e15", "1:9007199254740992"), "");
  auto inj = parse_injections(4, "", "", "", "1:9007199254740992");
  EXPECT_EQ(inj[1].crash_at_step, max_crash_step);
}

TEST(injection, each_worker_is_named_at_most_once_per_flag) {
  auto twice = refusal("", "", "", "0:5,0:10");
  EXPECT_NE(twice.find("--crash: worker 0 is given twice ('0:5' and '0:10')"), std::string::npos)
    << twice;
  EXPECT_NE(refusal("1:2,3:4,1:3", "", "", "").find("--slow: worker 1 is given twice"),
            std::string::npos);
  // Several workers, each once, and the same worker in different flags.
  auto inj = parse_injections(4, "0:3,2:2", "", "", "0:5,3:10,1:0");
  EXPECT_EQ(inj[0].slowdown, 3);
  EXPECT_EQ(inj[2].slowdown, 2);
  EXPECT_EQ(inj[0].crash_at_step, 5);
  EXPECT_EQ(inj[3].crash_at_step, 10);
  EXPECT_EQ(inj[1].crash_at_step, 0);
  EXPECT_EQ(inj[2].crash_at_step, -1);
}

TEST(injection, extra_time_adds_its_parts_and_stops_at_the_cap) {
  std::mt19937_64 rng(1);
  injection inj;
  inj.slowdown = 3;
  inj.step_delay = delay_spec::parse("fixed:2ms");
  inj.link_delay_ms = 1;
  // 1 ms of compute: 2 ms more for the slowdown, 2 ms of delay, 1 ms each way.
  EXPECT_EQ(inj.extra_time(std::chrono::milliseconds(1), rng).count(), 6000);
  EXPECT_TRUE(inj.delays());
  inj.slowdown = max_slowdown;
  EXPECT_EQ(inj.extra_time(std::chrono::hours(24 * 365), rng), max_injected_wait);
  injection tail;
  tail.step_delay = delay_spec::parse("exp:1e15ms");
  for (int k = 0; k < 1000; ++k) {
    auto us = tail.extra_time(std::chrono::nanoseconds(0), rng);
    EXPECT_GE(us.count(), 0);
    EXPECT_LE(us, max_injected_wait);
  }
  injection crash_only;
  crash_only.crash_at_step = 3;
  EXPECT_TRUE(crash_only.active());
  EXPECT_FALSE(crash_only.delays());
}

// Three requests sent at once to a worker with a fixed 40 ms delay: a serial
// worker answers the k-th no earlier than k * 40 ms after they were sent, in
// the order they were sent, with what it would compute without the delay.
TEST(injection, held_back_replies_come_in_order_and_no_earlier_than_a_serial_workers) {
  test::test_system ts;
  test::actor_guard guard;
  auto slow = guard.add(spawn_worker(ts.sys, delayed_worker("fixed:40ms")));
  auto plain_cfg = delayed_worker("none");
  auto plain = guard.add(spawn_worker(ts.sys, plain_cfg));
  caf::scoped_actor self{ts.sys};
  const auto w = buffer::from({0.5f, 0.5f});
  auto sent = std::chrono::steady_clock::now();
  for (int64_t k = 0; k < 3; ++k)
    self->send(slow, compute_atom_v, weights{-1, k, w});
  // Plain sends: the replies come back as ordinary messages, in arrival order.
  for (int64_t k = 0; k < 3; ++k) {
    self->receive(
      [&](gradient& g) {
        auto after = std::chrono::steady_clock::now() - sent;
        EXPECT_EQ(g.step, k);
        EXPECT_GE(after, std::chrono::milliseconds(40 * (k + 1))) << "reply " << k;
      },
      [&](caf::error& e) { ADD_FAILURE() << describe(e); },
      caf::after(std::chrono::seconds(60)) >> [&] { ADD_FAILURE() << "no reply " << k; });
  }
  // Requests are held back the same way and answered with the same values.
  for (int64_t k = 0; k < 2; ++k) {
    gradient held, direct;
    self->request(slow, std::chrono::seconds(60), compute_atom_v, weights{-1, k, w})
      .receive([&](gradient& g) { held = std::move(g); },
               [&](caf::error& e) { ADD_FAILURE() << describe(e); });
    self->request(plain, std::chrono::seconds(60), compute_atom_v, weights{-1, k, w})
      .receive([&](gradient& g) { direct = std::move(g); },
               [&](caf::error& e) { ADD_FAILURE() << describe(e); });
    ASSERT_EQ(held.values.size(), direct.values.size());
    for (size_t j = 0; j < held.values.size(); ++j)
      EXPECT_EQ(held.values[j], direct.values[j]);
  }
}

// A worker holding back a reply for 31,700 years: the request times out, and
// the worker and its actor system end as soon as they are told to (before the
// fix the worker slept in its handler and the system's destructor waited for
// it for ever). Run in a child process; the alarm only turns a hang into a
// failure.
TEST(injection, a_worker_holding_back_a_huge_wait_ends_when_told) {
  testing::FLAGS_gtest_death_test_style = "threadsafe";
  EXPECT_EXIT(
    {
      alarm(120);
      {
        test::test_system ts;
        auto w = spawn_worker(ts.sys, delayed_worker("fixed:1e15ms"));
        caf::scoped_actor self{ts.sys};
        bool timed_out = false;
        self->request(w, std::chrono::milliseconds(100), compute_atom_v,
                      weights{-1, 0, buffer::from({0.5f, 0.5f})})
          .receive([](gradient&) {},
                   [&](caf::error& e) { timed_out = e == caf::sec::request_timeout; });
        if (!timed_out)
          std::_Exit(3);
        self->send_exit(w, caf::exit_reason::user_shutdown);
        self->wait_for(w);
      }
      std::_Exit(0);
    },
    testing::ExitedWithCode(0), "");
}
