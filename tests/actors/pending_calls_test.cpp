// actors/pending_calls.hpp: each callback runs at most once, by its number
// or with all the others, and may add to the table while it runs.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "actors/pending_calls.hpp"

using chorus::pending_calls;

TEST(pending_calls, each_runs_once_by_its_number) {
  pending_calls<int> table;
  std::vector<std::string> ran;
  auto a = table.add([&](int x) { ran.push_back("a" + std::to_string(x)); });
  auto b = table.add([&](int x) { ran.push_back("b" + std::to_string(x)); });
  EXPECT_NE(a, b);
  EXPECT_EQ(table.size(), 2u);
  EXPECT_TRUE(table.call(b, 7));
  EXPECT_FALSE(table.call(b, 8));  // gone after its call
  EXPECT_TRUE(table.drop(a));
  EXPECT_FALSE(table.call(a, 9));  // dropped: never called
  EXPECT_FALSE(table.drop(a));
  EXPECT_TRUE(table.empty());
  EXPECT_EQ(ran, (std::vector<std::string>{"b7"}));
}

TEST(pending_calls, call_all_runs_every_one_in_order_and_leaves_what_they_add) {
  pending_calls<const std::string&> table;
  std::vector<std::string> ran;
  for (int k = 0; k < 3; ++k)
    table.add([&, k](const std::string& why) {
      ran.push_back(std::to_string(k) + why);
      if (k == 1)  // a callback may queue another (a retry)
        table.add([&](const std::string& again) { ran.push_back("retry" + again); });
    });
  table.call_all("!");
  EXPECT_EQ(ran, (std::vector<std::string>{"0!", "1!", "2!"}));
  ASSERT_EQ(table.size(), 1u);
  table.call_all("?");
  EXPECT_EQ(ran.back(), "retry?");
  EXPECT_TRUE(table.empty());
}

TEST(pending_calls, numbers_are_never_reused) {
  // A late reply must not find a newer callback under its old number.
  pending_calls<> table;
  int old_ran = 0, new_ran = 0;
  auto old_id = table.add([&] { ++old_ran; });
  table.call_all();
  auto new_id = table.add([&] { ++new_ran; });
  EXPECT_NE(old_id, new_id);
  EXPECT_FALSE(table.call(old_id));
  EXPECT_EQ(new_ran, 0);
  EXPECT_TRUE(table.call(new_id));
  EXPECT_EQ(old_ran, 1);
  EXPECT_EQ(new_ran, 1);
}

TEST(pending_calls, a_callback_may_add_to_the_table_it_was_called_from) {
  pending_calls<> table;
  uint64_t inner = 0;
  auto outer = table.add([&] { inner = table.add([] {}); });
  EXPECT_TRUE(table.call(outer));
  EXPECT_EQ(table.size(), 1u);
  EXPECT_TRUE(table.call(inner));
}
