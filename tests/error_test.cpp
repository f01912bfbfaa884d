#include "harness/error.hpp"

#include <gtest/gtest.h>

#include <string>

namespace {

using harness::errc;

TEST(Error, CategoryNamesAndMessages) {
  std::error_code ec = errc::program_not_found;
  EXPECT_STREQ(ec.category().name(), "harness");
  EXPECT_EQ(ec.message(), "program not found");
  EXPECT_EQ(std::error_code(errc::ready_timeout).message(), "server did not become ready in time");
  EXPECT_NE(ec, std::error_code(errc::program_is_directory));
  // Every code has a message of its own.
  for (int i = 1; i <= static_cast<int>(errc::output_closed); ++i) {
    auto text = std::error_code(i, harness::harness_category()).message();
    EXPECT_EQ(text.find("unknown"), std::string::npos) << i;
  }
}

TEST(Error, FailureMessageJoinsCodeAndDetail) {
  auto f = harness::make_failure(errc::program_not_found, "my-server");
  EXPECT_EQ(f.message(), "program not found: my-server");
  EXPECT_EQ(harness::make_failure(errc::timeout).message(), "timed out");
  auto sys = harness::make_system_failure(ENOENT, "open x");
  EXPECT_EQ(sys.code, std::error_code(ENOENT, std::system_category()));
}

TEST(Error, ResultHoldsValueOrFailure) {
  harness::result<int> ok = 7;
  ASSERT_TRUE(ok);
  EXPECT_EQ(*ok, 7);
  harness::result<int> bad = harness::make_failure(errc::invalid_argument, "x");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, errc::invalid_argument);
  try {
    (void)bad.value();
    FAIL() << "value() of a failure must throw";
  } catch (const harness::error& e) {
    EXPECT_EQ(e.code(), errc::invalid_argument);
    EXPECT_STREQ(e.what(), "invalid argument: x");
    EXPECT_EQ(e.info().detail, "x");
  }
}

TEST(Error, ResultVoid) {
  harness::result<void> ok;
  EXPECT_TRUE(ok);
  EXPECT_NO_THROW(ok.value());
  harness::result<void> bad = harness::make_failure(errc::not_running);
  EXPECT_FALSE(bad);
  EXPECT_THROW(bad.value(), harness::error);
}

}  // namespace
