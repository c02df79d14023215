// Overflow-checked arithmetic: exact results where they fit, nullopt where
// the true result does not, for signed and unsigned types at their limits.
#include "messages/checked.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>

namespace {

using chorus::checked_add;
using chorus::checked_mul;
using chorus::checked_product;

constexpr int64_t i_max = std::numeric_limits<int64_t>::max();
constexpr int64_t i_min = std::numeric_limits<int64_t>::min();
constexpr uint64_t u_max = std::numeric_limits<uint64_t>::max();

TEST(checked, signed_products_at_the_limits) {
  EXPECT_EQ(checked_mul<int64_t>(0, i_min), 0);
  EXPECT_EQ(checked_mul<int64_t>(i_max, 1), i_max);
  EXPECT_EQ(checked_mul<int64_t>(i_min, 1), i_min);
  EXPECT_EQ(checked_mul<int64_t>(-1, i_max), -i_max);
  EXPECT_EQ(checked_mul<int64_t>(int64_t{1} << 31, int64_t{1} << 31), int64_t{1} << 62);
  EXPECT_EQ(checked_mul<int64_t>(-(int64_t{1} << 31), int64_t{1} << 32), i_min);
  EXPECT_EQ(checked_mul<int64_t>(int64_t{1} << 32, -(int64_t{1} << 31)), i_min);
  EXPECT_FALSE(checked_mul<int64_t>(int64_t{1} << 32, int64_t{1} << 31));
  EXPECT_FALSE(checked_mul<int64_t>(i_min, -1));
  EXPECT_FALSE(checked_mul<int64_t>(-1, i_min));
  EXPECT_FALSE(checked_mul<int64_t>(-(int64_t{1} << 32), -(int64_t{1} << 31)));
  EXPECT_FALSE(checked_mul<int64_t>(i_max, 2));
  EXPECT_FALSE(checked_mul<int64_t>(2, i_min));
  // 2^16 * 2^48 wraps to exactly 0 in 64 bits: the case that must not pass.
  EXPECT_FALSE(checked_mul<int64_t>(int64_t{1} << 16, int64_t{1} << 48));
}

TEST(checked, unsigned_products_and_sums) {
  EXPECT_EQ(checked_mul<uint64_t>(u_max, 1), u_max);
  EXPECT_EQ(checked_mul<uint64_t>(0xFFFFFFFFu, 0x100000001u), u_max);
  EXPECT_FALSE(checked_mul<uint64_t>(uint64_t{1} << 32, uint64_t{1} << 32));
  EXPECT_EQ(checked_add<uint64_t>(u_max - 1, 1), u_max);
  EXPECT_FALSE(checked_add<uint64_t>(u_max, 1));
  EXPECT_EQ(checked_add<int64_t>(i_min, -0), i_min);
  EXPECT_FALSE(checked_add<int64_t>(i_max, 1));
  EXPECT_FALSE(checked_add<int64_t>(i_min, -1));
  EXPECT_EQ(checked_add<int64_t>(i_max, i_min), -1);
}

TEST(checked, products_of_several_factors) {
  EXPECT_EQ(checked_product<uint64_t>({}), 1u);
  EXPECT_EQ(checked_product<uint64_t>({60000, 28, 28}), 47040000u);
  EXPECT_FALSE(checked_product<uint64_t>({1u << 16, 1u << 24, 1u << 24}));
  static_assert(*checked_product<int64_t>({2, 3, 7}) == 42);
}

} // namespace
