#include "harness/timeouts.hpp"

#include <gtest/gtest.h>

#include <cmath>

namespace {

using harness::timeouts::parse_scale;

TEST(Timeouts, ParsesScale) {
  EXPECT_EQ(parse_scale("2"), 2.0);
  EXPECT_EQ(parse_scale("0.5"), 0.5);
  EXPECT_EQ(parse_scale("10"), 10.0);
}

TEST(Timeouts, RejectsBadScale) {
  EXPECT_FALSE(parse_scale(nullptr));
  EXPECT_FALSE(parse_scale(""));
  EXPECT_FALSE(parse_scale("0"));
  EXPECT_FALSE(parse_scale("-1"));
  EXPECT_FALSE(parse_scale("2x"));
  EXPECT_FALSE(parse_scale("nan"));
  EXPECT_FALSE(parse_scale("inf"));
  EXPECT_FALSE(parse_scale("abc"));
}

TEST(Timeouts, ScaledUsesTheProcessScale) {
  // The test programs run with the scale of their environment (default 1).
  const double s = harness::timeouts::scale();
  ASSERT_GT(s, 0.0);
  EXPECT_EQ(harness::timeouts::scaled(std::chrono::milliseconds(1000)).count(),
            static_cast<long>(std::ceil(1000 * s)));
  // Saturates instead of overflowing.
  EXPECT_GT(harness::timeouts::scaled(std::chrono::milliseconds::max()).count(), 0);
}

}  // namespace
