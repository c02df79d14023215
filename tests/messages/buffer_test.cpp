// The payload buffer: immutable, shared, never copied by a hop inside one
// process, and serialized as raw bytes.
#include <gtest/gtest.h>

#include <caf/all.hpp>
#include <caf/binary_deserializer.hpp>
#include <caf/binary_serializer.hpp>

#include "messages/messages.hpp"
#include "tests/test_util.hpp"

using namespace chorus;

namespace {

// Forwards weights to the next actor in a chain; the last one replies with
// the buffer handle it received, so the test can compare storage.
using relay_actor = caf::typed_actor<caf::replies_to<apply_atom, weights>::with<weights>>;

relay_actor::behavior_type relay(relay_actor::pointer self, relay_actor next) {
  return {
    [=](apply_atom, weights& w) -> caf::result<weights> {
      if (!next)
        return std::move(w);
      return self->delegate(next, apply_atom_v, std::move(w));
    },
  };
}

} // namespace

TEST(buffer, freeze_publishes_without_copy) {
  auto m = mutable_buffer::filled(1000, 2.5f);
  const float* before = m.data();
  auto allocs = buffer_stats::allocations();
  buffer b = std::move(m).freeze();
  EXPECT_EQ(b.data(), before);
  EXPECT_EQ(buffer_stats::allocations(), allocs);
  EXPECT_TRUE(m.empty());
  EXPECT_EQ(b.size(), 1000u);
  EXPECT_FLOAT_EQ(b[999], 2.5f);
}

TEST(buffer, copies_share_storage) {
  buffer a = buffer::from(std::vector<float>{1, 2, 3});
  buffer b = a;
  EXPECT_TRUE(a.same_storage(b));
  EXPECT_EQ(a.use_count(), 2);
  buffer c = buffer::from(std::vector<float>{1, 2, 3});
  EXPECT_FALSE(a.same_storage(c));
}

TEST(buffer, blocks_are_aligned_for_simd) {
  for (size_t n : {1u, 7u, 1000u, 100003u}) {
    mutable_buffer m(n);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(m.data()) % 64, 0u) << n;
  }
}

TEST(buffer, hops_between_actors_never_copy_the_floats) {
  test::test_system ts;
  auto& sys = ts.sys;
  test::actor_guard guard;
  // A chain of 8 relays: 8 hops out, the reply comes back through them.
  relay_actor next;
  for (int i = 0; i < 8; ++i)
    next = guard.add(sys.spawn(relay, next));
  auto payload = buffer::from(std::vector<float>(1 << 20, 1.0f));
  auto allocs = buffer_stats::allocations();
  auto floats = buffer_stats::floats_allocated();
  caf::scoped_actor self{sys};
  buffer received;
  self->request(next, caf::infinite, apply_atom_v, weights{-1, 0, payload})
    .receive([&](weights& w) { received = w.values; },
             [&](caf::error& err) { FAIL() << caf::to_string(err); });
  EXPECT_TRUE(received.same_storage(payload));
  EXPECT_EQ(received.data(), payload.data());
  EXPECT_EQ(buffer_stats::allocations(), allocs);
  EXPECT_EQ(buffer_stats::floats_allocated(), floats);
}

TEST(buffer, broadcast_to_many_receivers_shares_one_block) {
  test::test_system ts;
  auto& sys = ts.sys;
  test::actor_guard guard;
  std::vector<relay_actor> receivers;
  for (int i = 0; i < 16; ++i)
    receivers.push_back(guard.add(sys.spawn(relay, relay_actor{})));
  auto payload = buffer::from(std::vector<float>(4096, 3.0f));
  auto floats = buffer_stats::floats_allocated();
  caf::scoped_actor self{sys};
  weights msg{-1, 7, payload};
  int same = 0;
  for (auto& r : receivers)
    self->request(r, caf::infinite, apply_atom_v, msg)
      .receive([&](weights& w) { same += w.values.same_storage(payload) ? 1 : 0; },
               [&](caf::error& err) { FAIL() << caf::to_string(err); });
  EXPECT_EQ(same, 16);
  EXPECT_EQ(buffer_stats::floats_allocated(), floats);
}

TEST(buffer, serializes_as_raw_bytes_and_round_trips) {
  test::test_system ts;
  auto& sys = ts.sys;
  std::vector<float> values(10000);
  for (size_t i = 0; i < values.size(); ++i)
    values[i] = static_cast<float>(i) * 0.5f - 17.25f;
  gradient g{3, 42, buffer::from(values), 0.75f, 64};
  std::vector<char> bytes;
  caf::binary_serializer sink{sys, bytes};
  ASSERT_FALSE(sink(g));
  // Raw bytes: the floats take exactly 4 bytes each, plus a few header bytes.
  EXPECT_GE(bytes.size(), values.size() * sizeof(float));
  EXPECT_LE(bytes.size(), values.size() * sizeof(float) + 64);
  gradient back;
  caf::binary_deserializer source{sys, bytes};
  ASSERT_FALSE(source(back));
  EXPECT_EQ(back.sender, 3);
  EXPECT_EQ(back.step, 42);
  EXPECT_EQ(back.samples, 64);
  EXPECT_FLOAT_EQ(back.loss, 0.75f);
  EXPECT_EQ(back.values.to_vector(), values);
}

TEST(buffer, empty_buffer_round_trips) {
  test::test_system ts;
  auto& sys = ts.sys;
  weights w{1, 2, buffer{}};
  std::vector<char> bytes;
  caf::binary_serializer sink{sys, bytes};
  ASSERT_FALSE(sink(w));
  weights back{9, 9, buffer::from(std::vector<float>{1})};
  caf::binary_deserializer source{sys, bytes};
  ASSERT_FALSE(source(back));
  EXPECT_EQ(back.values.size(), 0u);
  EXPECT_EQ(back.sender, 1);
}

TEST(buffer, truncated_bytes_fail_to_deserialize) {
  test::test_system ts;
  auto& sys = ts.sys;
  weights w{1, 2, buffer::from(std::vector<float>(100, 1.0f))};
  std::vector<char> bytes;
  caf::binary_serializer sink{sys, bytes};
  ASSERT_FALSE(sink(w));
  bytes.resize(bytes.size() / 2);
  weights back;
  caf::binary_deserializer source{sys, bytes};
  EXPECT_TRUE(static_cast<bool>(source(back)));
}

TEST(buffer, to_string_summarizes_instead_of_printing_floats) {
  weights w{1, 2, buffer::from(std::vector<float>(100000, 1.0f))};
  auto text = caf::deep_to_string(w);
  EXPECT_NE(text.find("floats[100000]"), std::string::npos) << text;
  EXPECT_LT(text.size(), 200u);
}

// A hostile length (2^33 floats = 32 GB) followed by a few bytes must fail
// without allocating: the message cannot hold what it claims.
TEST(buffer, length_past_the_message_fails_without_allocating) {
  weights w{1, 2, buffer::from(std::vector<float>{1, 2, 3})};
  std::vector<char> bytes;
  caf::binary_serializer sink{nullptr, bytes};
  ASSERT_FALSE(sink(w));
  // sender (4 bytes) and step (8 bytes) come first, then the 8-byte length,
  // the floats and the encoded flag (1 byte).
  ASSERT_EQ(bytes.size(), 4u + 8u + 8u + 3 * sizeof(float) + 1u);
  uint64_t huge = uint64_t{1} << 33;
  caf::binary_serializer patch{nullptr, bytes};
  patch.seek(12);
  ASSERT_FALSE(patch(huge));
  auto floats = buffer_stats::floats_allocated();
  weights back;
  caf::binary_deserializer source{nullptr, bytes};
  auto err = source(back);
  EXPECT_TRUE(static_cast<bool>(err));
  EXPECT_LT(buffer_stats::floats_allocated() - floats, 1024u);
}
