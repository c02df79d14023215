// A gossip peer on a node reports without its model and keeps the models the
// coordinator may still fetch: from the last answered report on (the
// coordinator fetches a step only right after counting it, and answers in
// order), so at most window + 1 of them, not the last 2 window + 4.
#include <gtest/gtest.h>

#include "engines/gossip_peer.hpp"

using namespace chorus;

TEST(gossip_peer, an_answer_drops_the_models_of_older_reports_and_keeps_the_rest) {
  peer_base p;
  std::vector<buffer> xs;
  for (int k = 0; k < 6; ++k) {
    xs.push_back(buffer::from(std::vector<float>(4, static_cast<float>(k))));
    p.recent.emplace_back(k, xs.back());
  }
  p.answered(3);
  ASSERT_EQ(p.recent.size(), 3u);  // steps 3, 4, 5
  EXPECT_EQ(p.recent.front().first, 3);
  // A fetch of the answered step gets that step's model, not a later one.
  {
    auto at3 = p.model_at(3, xs[5], 5);
    EXPECT_EQ(at3.step, 3);
    EXPECT_TRUE(at3.x.same_storage(xs[3]));
  }
  EXPECT_TRUE(p.model_at(4, xs[5], 5).x.same_storage(xs[4]));
  // The dropped models are released (only this test's handles are left).
  EXPECT_EQ(xs[0].use_count(), 1);
  EXPECT_EQ(xs[2].use_count(), 1);
  EXPECT_EQ(xs[3].use_count(), 2);  // xs and recent
  // A late answer of an older report drops nothing more.
  p.answered(1);
  EXPECT_EQ(p.recent.size(), 3u);
  p.answered(5);
  ASSERT_EQ(p.recent.size(), 1u);
  EXPECT_TRUE(p.model_at(5, xs[5], 5).x.same_storage(xs[5]));
}
