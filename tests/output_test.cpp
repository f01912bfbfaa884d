// The output machinery without processes: line splitting, tails, the log file, waits.
#include "harness/output.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "harness/detail/proc/output_state.hpp"
#include "support.hpp"

namespace {

using harness::stream;
using harness::detail::output_state;
using namespace std::chrono_literals;

std::shared_ptr<output_state> make_state(harness::output_options o = {}) {
  return std::make_shared<output_state>(std::move(o));
}

std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class TempDir : public testing::Test {
 protected:
  const harness_test::temp_dir tmp_{"harness-output-test"};
  const std::filesystem::path& dir_ = tmp_.path();
};

TEST(Output, SplitsLinesAcrossChunks) {
  auto s = make_state();
  s->feed(stream::out, "hel");
  s->feed(stream::out, "lo\nwor");
  s->feed(stream::out, "ld\r\n\nlast");
  harness::output out(s);
  EXPECT_EQ(out.tail_lines(stream::out), (std::vector<std::string>{"hello", "world", ""}));
  s->close(stream::out);
  EXPECT_EQ(out.tail_lines(stream::out),
            (std::vector<std::string>{"hello", "world", "", "last"}));
  EXPECT_EQ(out.line_count(stream::out), 4u);
  EXPECT_EQ(out.byte_count(stream::out), 18u);
  EXPECT_EQ(out.tail(stream::out), "hello\nworld\n\nlast\n");
  EXPECT_TRUE(out.tail(stream::err).empty());
}

TEST(Output, MergedTailIsInArrivalOrderAcrossStreams) {
  auto s = make_state();
  s->feed(stream::out, "one\n");
  s->feed(stream::err, "two\n");
  s->feed(stream::out, "three\nfour\n");
  s->feed(stream::err, "five\n");
  harness::output out(s);
  using L = harness::output_line;
  EXPECT_EQ(out.merged_tail(), (std::vector<L>{{stream::out, "one"}, {stream::err, "two"}, {stream::out, "three"},
                                               {stream::out, "four"}, {stream::err, "five"}}));
  EXPECT_EQ(out.merged_tail(2), (std::vector<L>{{stream::out, "four"}, {stream::err, "five"}}));
}

TEST(Output, MergedReportCollapsesRunsOfIdenticalLines) {
  auto s = make_state();
  s->feed(stream::out, "warming up on 21205\n");
  for (int i = 0; i < 20; ++i) s->feed(stream::err, "\"GET /health HTTP/1.1\" 404\n");
  s->feed(stream::out, "GET /health 404\n");  // the same text on the other stream is another line
  harness::output out(s);
  EXPECT_EQ(out.merged_report(20),
            "  output (last 3 lines of stdout and stderr, in arrival order):\n"
            "    out| warming up on 21205\n"
            "    err| [x20] \"GET /health HTTP/1.1\" 404\n"
            "    out| GET /health 404\n");
  // n counts the lines shown: a collapsed run is one.
  EXPECT_EQ(out.merged_report(1), "  output (last 1 line of stdout and stderr, in arrival order):\n"
                                  "    out| GET /health 404\n");
  EXPECT_EQ(harness::output(make_state()).merged_report(5), "  output: (none on stdout or stderr)\n");
}

TEST(Output, MergedTailKeepsWhatTheTailsHold) {
  harness::output_options o;
  o.tail_bytes = 9;  // three 2-character lines per stream
  auto s = make_state(o);
  s->feed(stream::out, "o1\no2\no3\n");
  s->feed(stream::err, "e1\ne2\ne3\n");
  harness::output out(s);
  using L = harness::output_line;
  EXPECT_EQ(out.merged_tail(), (std::vector<L>{{stream::out, "o1"}, {stream::out, "o2"}, {stream::out, "o3"},
                                               {stream::err, "e1"}, {stream::err, "e2"}, {stream::err, "e3"}}));
  s->feed(stream::out, "o4\n");
  EXPECT_EQ(out.merged_tail().front(), (L{stream::out, "o2"}));
  EXPECT_EQ(out.merged_tail().back(), (L{stream::out, "o4"}));
}

TEST(Output, CutsOverlongLines) {
  harness::output_options o;
  o.max_line = 4;
  auto s = make_state(o);
  s->feed(stream::err, "abcdefghij\nxy\nabcd\n");
  harness::output out(s);
  EXPECT_EQ(out.tail_lines(stream::err),
            (std::vector<std::string>{"abcd", "efgh", "ij", "xy", "abcd"}));
}

TEST(Output, TailKeepsOnlyTheNewestBytes) {
  harness::output_options o;
  o.tail_bytes = 100;
  auto s = make_state(o);
  for (int i = 0; i < 1000; ++i) s->feed(stream::err, "line " + std::to_string(i) + "\n");
  harness::output out(s);
  auto lines = out.tail_lines(stream::err);
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(lines.back(), "line 999");
  EXPECT_LE(out.memory_bytes(), 100u + 64u);  // tail cap plus the partial-line buffer
  EXPECT_EQ(out.line_count(stream::err), 1000u);
  EXPECT_EQ(out.tail_lines(stream::err, 2), (std::vector<std::string>{"line 998", "line 999"}));
}

TEST(Output, OnLineSeesEveryLineInOrder) {
  std::vector<std::string> seen;
  harness::output_options o;
  o.tail_bytes = 10;  // the callback sees lines the tail drops
  o.on_line = [&](stream s, std::string_view line) {
    seen.push_back(std::string(harness::stream_name(s)) + ":" + std::string(line));
  };
  auto s = make_state(o);
  s->feed(stream::out, "a\nb\n");
  s->feed(stream::err, "c");
  s->close(stream::err);
  EXPECT_EQ(seen, (std::vector<std::string>{"stdout:a", "stdout:b", "stderr:c"}));
}

TEST_F(TempDir, LogFileHoldsBothStreamsAndNotes) {
  auto s = make_state();
  ASSERT_TRUE(s->open_log(dir_ / "x.log", "# header"));
  s->feed(stream::out, "one\n");
  s->feed(stream::err, "two\n");
  s->log_note("stopped");
  EXPECT_EQ(read_file(dir_ / "x.log"), "# header\none\ntwo\n# stopped\n");
  EXPECT_EQ(harness::output(s).log_path(), dir_ / "x.log");
  EXPECT_EQ(std::filesystem::status(dir_ / "x.log").permissions() & std::filesystem::perms::all,
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
}

TEST_F(TempDir, LogFileIsCapped) {
  harness::output_options o;
  o.log_max_bytes = 50;
  auto s = make_state(o);
  ASSERT_TRUE(s->open_log(dir_ / "x.log", "#"));
  for (int i = 0; i < 100; ++i) s->feed(stream::out, "0123456789\n");
  const auto text = read_file(dir_ / "x.log");
  EXPECT_LT(text.size(), 200u);
  EXPECT_NE(text.find("log_max_bytes reached"), std::string::npos);
}

TEST_F(TempDir, LogFileIsNeverOverwrittenOrFollowed) {
  std::ofstream(dir_ / "exists.log") << "keep";
  auto s = make_state();
  auto r = s->open_log(dir_ / "exists.log", "#");
  EXPECT_FALSE(r);
  EXPECT_EQ(read_file(dir_ / "exists.log"), "keep");
  std::filesystem::create_symlink(dir_ / "target", dir_ / "link.log");
  EXPECT_FALSE(s->open_log(dir_ / "link.log", "#"));
  EXPECT_FALSE(std::filesystem::exists(dir_ / "target"));
}

TEST(Output, WaitForLineFindsLinesAlreadyInTheTail) {
  auto s = make_state();
  s->feed(stream::err, "noise\nlistening on port 4242\n");
  auto m = harness::output(s).wait_for_line(R"(port (\d+))", 10ms);
  ASSERT_TRUE(m) << m.error().message();
  EXPECT_EQ(m->source, stream::err);
  EXPECT_EQ(m->line, "listening on port 4242");
  ASSERT_EQ(m->groups.size(), 2u);
  EXPECT_EQ(m->groups[1], "4242");
}

TEST(Output, WaitForLineWakesOnANewLine) {
  auto s = make_state();
  std::thread feeder([&] {
    // Feed only once the waiter is registered, so the match must come from the wake-up.
    for (;;) {
      {
        std::lock_guard lock(s->m);
        if (!s->watchers.empty()) break;
      }
      std::this_thread::yield();
    }
    s->feed(stream::out, "ready\n");
  });
  auto m = harness::output(s).wait_for_line("^ready$", 10s);
  feeder.join();
  ASSERT_TRUE(m) << m.error().message();
  EXPECT_EQ(m->line, "ready");
}

TEST(Output, WaitForLineRespectsTheStreamChoice) {
  auto s = make_state();
  s->feed(stream::out, "ready\n");
  s->close(stream::err);
  auto m = harness::output(s).wait_for_line("ready", 10s, {stream::err});
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error().code, harness::errc::output_closed);
}

TEST(Output, WaitForLineTimesOut) {
  auto s = make_state();
  auto m = harness::output(s).wait_for_line("never", 20ms);
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error().code, harness::errc::timeout);
}

TEST(Output, WaitForLineEndsWhenTheOutputCloses) {
  auto s = make_state();
  s->close(stream::out);
  s->close(stream::err);
  auto m = harness::output(s).wait_for_line("never", 10s);
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error().code, harness::errc::output_closed);
  EXPECT_TRUE(harness::output(s).closed());
}

TEST(Output, BadPatternIsATypedError) {
  auto s = make_state();
  auto m = harness::output(s).wait_for_line("(unclosed", 10s);
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error().code, harness::errc::bad_pattern);
  EXPECT_NE(m.error().message().find("(unclosed"), std::string::npos);
}

TEST(Output, PathologicalPatternOnALongLineDoesNotCrash) {
  harness::output_options o;
  o.max_line = 64 * 1024;
  auto s = make_state(o);
  s->feed(stream::out, std::string(60000, 'a') + "\n");
  // Catastrophic backtracking: Boost.Regex gives up instead of recursing forever.
  auto m = harness::output(s).wait_for_line("(a+)+b", 10ms);
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error().code, harness::errc::timeout);
}

}  // namespace
