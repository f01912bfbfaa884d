// R8: 8 processes take and give back 500 leases each, all at once, over a pool of 6
// ports (so nearly every try races another process for a port). Each holder
// writes an invariant while it holds a port — an O_EXCL claim file with its pid, read
// back before it is given up (helpers/lease_holder.cpp --churn) — and no claim ever
// finds a second holder.
#include "battery.hpp"
#include "harness/lease.hpp"
#include "harness/process.hpp"

namespace {

using namespace std::chrono_literals;

TEST(R08, EightProcessesTakingThousandsOfLeasesNeverShareAPort) {
  constexpr int processes = 8;
  constexpr int leases = 500;  // each
  const auto block = harness_test::reserve_block(6);
  ASSERT_EQ(block.size(), 6u);
  const std::string range = std::to_string(block.front().port()) + "-" + std::to_string(block.back().port());
  const harness_test::temp_dir pool{"harness-r08-pool"};
  const harness_test::temp_dir claims{"harness-r08-claims"};

  std::vector<harness::process> holders;
  for (int i = 0; i < processes; ++i) {
    holders.push_back(harness::process::spawn({.argv = {HARNESS_LEASE_HOLDER, "--churn", pool.path().string(), range,
                                                        std::to_string(leases), claims.path().string()}}));
  }
  long acquired = 0, busy = 0;
  for (auto& h : holders) {
    auto done = h.output().wait_for_line(R"(^DONE (\d+) (\d+) (\d+)$)", 120s);
    ASSERT_TRUE(done) << done.error().message() << "\n" << h.output().tail(harness::stream::err);
    EXPECT_EQ(done->groups[3], "0") << "two holders of one port:\n" << h.output().tail(harness::stream::err);
    acquired += std::stol(done->groups[1]);
    busy += std::stol(done->groups[2]);
    EXPECT_EQ(h.wait_for(30s), harness::exit_status::exited_with(0)) << h.output().tail(harness::stream::err);
  }
  std::cout << acquired << " leases taken, " << busy << " tries found the pool full\n";
  EXPECT_EQ(acquired, static_cast<long>(processes) * leases) << "a churner gave up: the pool was too rarely free";
  EXPECT_TRUE(std::filesystem::is_empty(claims.path())) << "a claim was left behind";
}

}  // namespace
