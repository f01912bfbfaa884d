// R12: before it is ready, the server writes 10 MiB (to stderr, or stdout), and its
// port-in-use message — one of the ecosystems' real ones, from a genuine EADDRINUSE —
// comes at the end of the flood or buried in the middle of it, more flood following.
// Nothing deadlocks (the start ends, respawned, within its deadline), the collision is
// still detected, and memory stays within the bounds: the in-memory tails, and the log
// file within its cap.
#include <random>

#include "battery.hpp"
#include "harness/session.hpp"

namespace {

using namespace std::chrono_literals;

constexpr std::uint64_t ten_mib = 10u << 20;

TEST(R12, TenMebibytesBeforeReadyWithTheCollisionBuriedInThem) {
  const unsigned seed = harness_test::test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  const harness_test::temp_dir scratch{"harness-r12"};
  const std::string token = harness_test::unique_token("r12");
  // Every style that prints a message (the silent one is for structural detection).
  const std::vector<std::string> styles = {"c", "python", "go", "node", "rust", "rust-panic", "nginx",
                                           "redis", "memcached", "postgres", "java", "ruby"};

  harness_test::bounded_rounds(8, 20s, 3, [&](int round) {
    const std::string style = styles[rng() % styles.size()];
    const bool on_stdout = rng() % 3 == 0;
    const bool buried = rng() % 2 == 0;
    const std::uint64_t before = buried ? ten_mib / 2 + rng() % 4096 : ten_mib;
    SCOPED_TRACE("round " + std::to_string(round) + ": style " + style + (on_stdout ? ", stdout" : ", stderr") +
                 (buried ? ", buried in the middle" : ", at the end"));
    const std::string counter = (scratch.path() / ("count-" + std::to_string(round))).string();
    const std::string flood = std::string(on_stdout ? "--stdout-bytes=" : "--stderr-bytes=") + std::to_string(before);
    // The fixture floods, then fails its bind (first run only) with the style's message;
    // when buried, the shell floods the rest after it, on the same stream.
    const std::string rest = std::to_string(ten_mib - before);
    const std::string tail = buried ? "yes xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx | head -c " + rest +
                                          (on_stdout ? "" : " >&2") + "; "
                                    : "";
    const harness::output_options limits{.tail_bytes = 16 * 1024, .max_line = 16 * 1024, .log_max_bytes = 1 << 20};
    const auto t0 = harness_test::steady_clock::now();
    auto r = harness::session::try_start(
        {.command = {"/bin/sh", "-c", "\"$0\" \"$@\"; s=$?; " + tail + "exit $s", harness_test::fixture_server(),
                     "--print=" + token, flood, "--port={port}", "--fail-binds=1", "--fail-state=" + counter,
                     "--style=" + style},
         .ready = {.timeout = 60s},
         .respawn = {.backoff_base = 1ms},
         .output = limits});
    const auto took = harness_test::steady_clock::now() - t0;
    ASSERT_TRUE(r) << r.error().message();
    ASSERT_EQ(r->attempts().size(), 2u) << harness::format_attempts(r->attempts());
    EXPECT_EQ(r->attempts()[0].outcome, harness::attempt::result::collision) << harness::format_attempts(r->attempts());
    EXPECT_EQ(harness_test::tcp_request(r->port(), "x").value_or("(none)"), "pong: x");
    EXPECT_LE(r->output().memory_bytes(), limits.tail_bytes * 2 + limits.max_line * 2);
    r->stop();
    EXPECT_LE(std::filesystem::file_size(r->log_path()), limits.log_max_bytes + 4096);
    std::cout << "round " << round << ": " << style << ", ready after "
              << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms\n";
  });
  harness_test::expect_gone(token, 2s, "after the rounds");
}

}  // namespace
