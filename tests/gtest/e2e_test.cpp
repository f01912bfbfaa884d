// The gtest layer end to end: runs the test programs that fail on purpose
// (programs/failing_program.cpp, programs/unavailable_program.cpp) as child processes
// with --gtest_output=xml and checks their exit status, what they printed (the
// listener's report, the library's full error texts) and their XML report (harness.*
// properties on <testcase>, failures, skips). The programs are located with
// $<TARGET_FILE:...> (compile definitions), never by a guessed path.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "../support.hpp"
#include "harness/gtest/gtest.hpp"
#include "harness/timeouts.hpp"
#include "programs/missing_server.hpp"

namespace {

using namespace std::chrono_literals;
using harness::gtest::ExitedWith;
using testing::HasSubstr;
using testing::Not;

struct run_output {
  std::optional<harness::exit_status> status;
  std::string out;
  std::string err;
  std::string xml;
};

// What a program printed about one of its servers ("E2E <tag> port=... ").
struct server_facts {
  std::string port, attempts, ready_ms, pid, log;
};

std::map<std::string, server_facts> facts_of(const std::string& out) {
  std::map<std::string, server_facts> facts;
  static const std::regex line(R"(E2E (\w+) port=(\d+) attempts=(\d+) ready_ms=(\d+) pid=(\d+) log=(.*))");
  for (std::sregex_iterator it(out.begin(), out.end(), line), end; it != end; ++it) {
    facts[(*it)[1]] = {(*it)[2], (*it)[3], (*it)[4], (*it)[5], (*it)[6]};
  }
  return facts;
}

std::size_t count(const std::string& text, const std::string& part) {
  std::size_t n = 0;
  for (auto at = text.find(part); !part.empty() && at != std::string::npos; at = text.find(part, at + part.size())) ++n;
  return n;
}

// The <testcase> element of suite.name in a gtest XML report ("" when absent).
std::string testcase(const std::string& xml, const std::string& suite, const std::string& name) {
  const std::string open = "<testcase name=\"" + name + "\"";
  for (auto at = xml.find(open); at != std::string::npos; at = xml.find(open, at + 1)) {
    const auto tag_end = xml.find('>', at);
    if (tag_end == std::string::npos) break;
    const std::string tag = xml.substr(at, tag_end - at + 1);
    if (tag.find(" classname=\"" + suite + "\"") == std::string::npos) continue;
    if (xml[tag_end - 1] == '/') return tag;  // no children
    const auto close = xml.find("</testcase>", tag_end);
    return xml.substr(at, close == std::string::npos ? std::string::npos : close + 11 - at);
  }
  return {};
}

std::string property(const std::string& key, const std::string& value) {
  return "<property name=\"" + key + "\" value=\"" + value + "\"/>";
}

// The child's "[  SKIPPED ]" lines, renamed. gtest_discover_tests marks a CTest test as
// skipped when its output contains "[  SKIPPED ]", and a failing check here prints the
// child's output: the failure would then be reported as a skip (and pass the run).
const std::string child_skipped = "[ child SKIPPED ]";
std::string defuse(std::string out) {
  const std::string tag = "[  SKIPPED ]";
  for (auto at = out.find(tag); at != std::string::npos; at = out.find(tag, at + child_skipped.size())) {
    out.replace(at, tag.size(), child_skipped);
  }
  return out;
}

bool alive(int pid) { return ::kill(pid, 0) == 0 || errno != ESRCH; }

// The library's text for a missing program, up to the attempts if it lists any (they
// name a leased port that differs from run to run).
std::string missing_program_text() {
  auto r = harness::session::try_start(e2e::missing_server("probe"));
  EXPECT_FALSE(r);
  if (r) return {};
  const std::string text = r.error().message();
  return text.substr(0, text.find("attempts:"));
}

class GtestLayerEndToEnd : public testing::Test {
 protected:
  const harness_test::temp_dir tmp_{"harness-gtest-e2e"};
  const std::filesystem::path& dir_ = tmp_.path();

  // Runs a test program to its end (bounded: the wait is scaled by HARNESS_TIMEOUT_SCALE).
  run_output run(const char* program, std::vector<std::string> args) {
    const auto xml_path = dir_ / "out.xml";
    std::vector<std::string> argv{program, "--gtest_output=xml:" + xml_path.string()};
    argv.insert(argv.end(), args.begin(), args.end());
    // The child is a gtest program: none of the runner's gtest settings may leak in.
    auto p = harness::process::try_spawn(
        {.argv = argv,
         .env = {.unset = {"GTEST_FILTER", "GTEST_OUTPUT", "GTEST_REPEAT", "GTEST_SHUFFLE", "GTEST_RANDOM_SEED",
                           "GTEST_BREAK_ON_FAILURE", "GTEST_FAIL_FAST", "GTEST_ALSO_RUN_DISABLED_TESTS",
                           "GTEST_TOTAL_SHARDS", "GTEST_SHARD_INDEX", "GTEST_SHARD_STATUS_FILE", "GTEST_BRIEF",
                           "GTEST_THROW_ON_FAILURE", "TEST_PREMATURE_EXIT_FILE", "XML_OUTPUT_FILE"},
                 .set = {{"GTEST_COLOR", "no"}}},
         .output = {.tail_bytes = 4u << 20}});
    run_output r;
    if (!p) {
      ADD_FAILURE() << p.error().message();
      return r;
    }
    r.status = p->wait_for(60s);
    EXPECT_TRUE(r.status) << program << " did not finish";
    EXPECT_TRUE(p->output().wait_closed(10s));
    r.out = defuse(p->output().tail(harness::stream::out));
    r.err = p->output().tail(harness::stream::err);
    r.xml = harness_test::read_text(xml_path.string());
    EXPECT_THAT(r.xml, HasSubstr("<testsuites")) << "no XML report from " << program;
    return r;
  }
};

// --- the program that fails on purpose ---------------------------------------------------

TEST_F(GtestLayerEndToEnd, FailingProgramPrintsTheServersOfEachFailedTest) {
  const auto r = run(HARNESS_GTEST_FAILING, {});
  ASSERT_TRUE(r.status);
  EXPECT_THAT(*r.status, ExitedWith(1)) << r.out;
  const auto facts = facts_of(r.out);
  ASSERT_TRUE(facts.contains("single")) << r.out;
  const auto& s = facts.at("single");

  const std::string head = "[ HARNESS  ] Failing.ServerPrintsThenAnAssertionFails failed; 1 server was live during "
                           "the test:\n[ HARNESS  ] 1. e2e-server (exited with status 0)\n      command:  ";
  const auto report = r.out.find(head);
  ASSERT_NE(report, std::string::npos) << r.out;
  const auto block = r.out.substr(report, r.out.find("[  FAILED  ]", report) - report);
  EXPECT_THAT(block, HasSubstr(std::string(HARNESS_FIXTURE_SERVER) + " "));
  EXPECT_THAT(block, HasSubstr(" --port=" + s.port + "\n"));
  EXPECT_THAT(block, HasSubstr("      endpoint: 127.0.0.1:" + s.port + " (lease mode), pid " + s.pid + "\n"));
  EXPECT_THAT(block, HasSubstr("      ready:    in " + s.ready_ms + " ms, 1 attempt\n"));
  EXPECT_THAT(block, HasSubstr("        1. port " + s.port + ": ready"));
  EXPECT_THAT(block, HasSubstr("      output:   last 4 lines of stdout and stderr\n"));
  EXPECT_THAT(block, HasSubstr("        out| PID " + s.pid + "\n"));
  EXPECT_THAT(block, HasSubstr("        err| e2e-stderr: first line\n"
                               "        err| e2e-stderr: second line\n"));
  EXPECT_THAT(block, HasSubstr("      log:      " + s.log + "\n"));
  // The failed test's scratch directory is kept, and named.
  if (const auto at = block.find("      dir:      "); at != std::string::npos) {
    const std::filesystem::path dir = block.substr(at + 16, block.find('\n', at) - at - 16);
    std::ifstream conf(dir / "e2e.conf");
    std::string line;
    EXPECT_TRUE(std::getline(conf, line)) << dir;
    EXPECT_EQ(line, "port " + s.port);
    std::filesystem::remove_all(dir);
  } else {
    ADD_FAILURE() << "no dir line in\n" << block;
  }
  // After the failed assertion, before gtest's verdict on the test.
  EXPECT_LT(r.out.find("failing on purpose"), report);
  EXPECT_EQ(r.out.find("[  FAILED  ] Failing.ServerPrintsThenAnAssertionFails (", report),
            report + block.size());

  // The session started by hand is covered too.
  EXPECT_THAT(r.out, HasSubstr("[ HARNESS  ] Bare.SessionStartedByHandFails failed; 1 server was live during the "
                               "test:\n[ HARNESS  ] 1. bare-server (running)\n"));
  EXPECT_THAT(r.out, HasSubstr("        err| bare-session: stderr line\n"));
  // Nothing for the tests that passed.
  EXPECT_THAT(r.out, Not(HasSubstr("[ HARNESS  ] Failing.TwoServersPass")));
  EXPECT_THAT(r.out, Not(HasSubstr("[ HARNESS  ] Bare.PassesWithoutServers")));
  // And no server outlived the program.
  for (const auto& [tag, f] : facts) EXPECT_FALSE(alive(std::stoi(f.pid))) << tag << " pid " << f.pid;
}

TEST_F(GtestLayerEndToEnd, FailingProgramRecordsServerPropertiesInTheXmlReport) {
  const auto r = run(HARNESS_GTEST_FAILING, {});
  const auto facts = facts_of(r.out);
  ASSERT_EQ(facts.size(), 4u) << r.out;

  const auto single = testcase(r.xml, "Failing", "ServerPrintsThenAnAssertionFails");
  ASSERT_FALSE(single.empty()) << r.xml;
  const auto& s = facts.at("single");
  EXPECT_THAT(single, HasSubstr(property("harness.port", s.port)));
  EXPECT_THAT(single, HasSubstr(property("harness.attempts", "1")));
  EXPECT_THAT(single, HasSubstr(property("harness.ready_ms", s.ready_ms)));
  EXPECT_THAT(single, HasSubstr(property("harness.log", s.log)));
  EXPECT_THAT(single, HasSubstr("<failure message="));

  // Two servers: one prefix per server name, no unprefixed keys.
  const auto two = testcase(r.xml, "Failing", "TwoServersPass");
  ASSERT_FALSE(two.empty()) << r.xml;
  for (const char* name : {"alpha", "beta"}) {
    const auto& f = facts.at(name);
    EXPECT_THAT(two, HasSubstr(property(std::string("harness.") + name + ".port", f.port)));
    EXPECT_THAT(two, HasSubstr(property(std::string("harness.") + name + ".attempts", "1")));
    EXPECT_THAT(two, HasSubstr(property(std::string("harness.") + name + ".ready_ms", f.ready_ms)));
  }
  EXPECT_THAT(two, Not(HasSubstr("name=\"harness.port\"")));
  EXPECT_THAT(two, Not(HasSubstr("<failure")));

  const auto bare = testcase(r.xml, "Bare", "SessionStartedByHandFails");
  EXPECT_THAT(bare, HasSubstr(property("harness.port", facts.at("bare").port)));
  EXPECT_THAT(bare, HasSubstr(property("harness.ready_ms", facts.at("bare").ready_ms)));

  const auto none = testcase(r.xml, "Bare", "PassesWithoutServers");
  ASSERT_FALSE(none.empty()) << r.xml;
  EXPECT_THAT(none, Not(HasSubstr("harness.")));
}

// --- servers that cannot start -------------------------------------------------------------------

TEST_F(GtestLayerEndToEnd, ASuiteServerThatCannotStartFailsEveryTestOfTheSuiteWithTheFullText) {
  const auto r = run(HARNESS_GTEST_UNAVAILABLE, {"--gtest_filter=SuiteServerMissing.*"});
  ASSERT_TRUE(r.status);
  EXPECT_THAT(*r.status, ExitedWith(1)) << r.out;

  // The library's full text, as the program printed it from shared_server::error().
  const auto begin = r.out.find("E2E suite error begin\n");
  const auto end = r.out.find("\nE2E suite error end");
  ASSERT_NE(begin, std::string::npos) << r.out;
  ASSERT_NE(end, std::string::npos) << r.out;
  const std::string text = r.out.substr(begin + 22, end - begin - 22);
  EXPECT_THAT(text, testing::StartsWith(missing_program_text()));
  // Verbatim in each test's failure (and once in the printout).
  EXPECT_EQ(count(r.out, text), 3u) << r.out;
  EXPECT_EQ(count(r.out, "the shared server missing-db of test suite SuiteServerMissing did not start, so this test "
                         "cannot run:\n" + text),
            2u)
      << r.out;
  EXPECT_THAT(r.out, HasSubstr("[  FAILED  ] SuiteServerMissing.First ("));
  EXPECT_THAT(r.out, HasSubstr("[  FAILED  ] SuiteServerMissing.Second ("));
  // Neither SetUp nor a body ran against the missing server.
  EXPECT_THAT(r.out, Not(HasSubstr("E2E SETUP RAN")));
  EXPECT_THAT(r.out, Not(HasSubstr("E2E BODY RAN")));

  for (const char* name : {"First", "Second"}) {
    const auto tc = testcase(r.xml, "SuiteServerMissing", name);
    EXPECT_THAT(tc, HasSubstr("<failure message=")) << r.xml;
    EXPECT_THAT(tc, HasSubstr("program not found: " + std::string(e2e::missing_program)));
  }
}

TEST_F(GtestLayerEndToEnd, SkipIfUnavailableSkipsTheTestsAndThePassesProgram) {
  const auto r = run(HARNESS_GTEST_UNAVAILABLE, {"--gtest_filter=SuiteServerSkipped.*:TestServerSkipped.*"});
  ASSERT_TRUE(r.status);
  EXPECT_THAT(*r.status, ExitedWith(0)) << r.out;
  for (const char* test : {"SuiteServerSkipped.First", "SuiteServerSkipped.Second", "TestServerSkipped.Skips"}) {
    EXPECT_THAT(r.out, HasSubstr(child_skipped + " " + test + " ("));
  }
  EXPECT_EQ(count(r.out, missing_program_text()), 3u) << r.out;
  EXPECT_THAT(r.out, HasSubstr("the shared server optional-db of test suite SuiteServerSkipped is not available here "
                               "(if_unavailable::skip):\n" +
                               missing_program_text()));
  EXPECT_THAT(r.out, Not(HasSubstr("E2E BODY RAN")));
  EXPECT_THAT(r.out, Not(HasSubstr("E2E SETUP CONTINUED")));
  // Each skip names the user's line (the test, or the start_server call), not the library's.
  for (const char* line : {"unavailable_program.cpp:49: Skipped", "unavailable_program.cpp:50: Skipped",
                           "unavailable_program.cpp:56: Skipped"}) {
    EXPECT_THAT(r.out, HasSubstr(line)) << r.out;
  }
  EXPECT_THAT(r.out, Not(HasSubstr("fixture.cpp"))) << r.out;

  for (const auto& [suite, name] : std::vector<std::pair<std::string, std::string>>{
           {"SuiteServerSkipped", "First"}, {"SuiteServerSkipped", "Second"}, {"TestServerSkipped", "Skips"}}) {
    const auto tc = testcase(r.xml, suite, name);
    EXPECT_THAT(tc, HasSubstr("result=\"skipped\"")) << r.xml;
    EXPECT_THAT(tc, HasSubstr("<skipped message=")) << tc;
    EXPECT_THAT(tc, HasSubstr("program not found: " + std::string(e2e::missing_program))) << tc;
    EXPECT_THAT(tc, Not(HasSubstr("<failure")));
  }
}

TEST_F(GtestLayerEndToEnd, AProgramServerThatCannotStartFailsEveryTest) {
  const auto r = run(HARNESS_GTEST_UNAVAILABLE, {"--env=fail", "--gtest_filter=Plain.*"});
  ASSERT_TRUE(r.status);
  EXPECT_THAT(*r.status, ExitedWith(1)) << r.out;
  EXPECT_THAT(r.out, HasSubstr("the server missing-env of the test program did not start, so this test cannot "
                               "run:\n" + missing_program_text()));
  EXPECT_THAT(r.out, HasSubstr("[  FAILED  ] Plain.Passes ("));
  EXPECT_THAT(r.out, Not(HasSubstr("E2E PLAIN RAN")));
  EXPECT_THAT(testcase(r.xml, "Plain", "Passes"), HasSubstr("<failure message="));
  // A failed start leaves what CI shows in the XML: which start failed.
  EXPECT_THAT(testcase(r.xml, "Plain", "Passes"), HasSubstr("<property name=\"harness.start_failed\" value=\"program not found"));
}

TEST_F(GtestLayerEndToEnd, AProgramServerThatIsNotInstalledCanSkipEveryTest) {
  const auto r = run(HARNESS_GTEST_UNAVAILABLE, {"--env=skip", "--gtest_filter=Plain.*"});
  ASSERT_TRUE(r.status);
  EXPECT_THAT(*r.status, ExitedWith(0)) << r.out;
  EXPECT_THAT(r.out, HasSubstr(child_skipped + " Plain.Passes ("));
  EXPECT_THAT(r.out, HasSubstr(missing_program_text()));
  EXPECT_THAT(r.out, Not(HasSubstr("E2E PLAIN RAN")));
  EXPECT_THAT(testcase(r.xml, "Plain", "Passes"), HasSubstr("result=\"skipped\""));
}

}  // namespace

namespace {

// Servers that crash mid-test, print a sanitizer report or end badly fail tests that
// would otherwise pass — per test and per suite — in the output and in the XML; the
// program links GTest::gtest_main, so the fixtures install the listener themselves.
TEST_F(GtestLayerEndToEnd, ServersThatCrashOrLeakFailTheirTestsInTheOutputAndTheXml) {
  const auto r = run(HARNESS_GTEST_VERDICT, {});
  ASSERT_TRUE(r.status);
  EXPECT_THAT(*r.status, ExitedWith(1)) << r.out;
  EXPECT_THAT(r.out, HasSubstr("[ HARNESS  ] installed harness::gtest::listener on first use")) << r.out;
  EXPECT_EQ(count(r.out, "installed harness::gtest::listener"), 1u) << r.out;

  // The mid-test crash: the test fails at the line that started the server, with the
  // status and the stdout line.
  EXPECT_THAT(r.out, HasSubstr("verdict_program.cpp:35: Failure")) << r.out;
  EXPECT_THAT(r.out, HasSubstr("crasher: exited on its own while the test ran: killed by signal 6 (SIGABRT)"))
      << r.out;
  EXPECT_THAT(r.out, HasSubstr("    out| warming up on stdout\n")) << r.out;
  EXPECT_THAT(r.out, HasSubstr("[  FAILED  ] PerTest.ServerCrashesMidTest (")) << r.out;
  // The sanitizer report at stop, quoted.
  EXPECT_THAT(r.out, HasSubstr("leaker: stopped with exited with status 1")) << r.out;
  EXPECT_THAT(r.out, HasSubstr("sanitizer report (first lines):\n    | ==1==ERROR: LeakSanitizer: detected memory "
                               "leaks\n    | Direct leak of 64 byte(s)"))
      << r.out;
  EXPECT_THAT(r.out, HasSubstr("[  FAILED  ] PerTest.ServerLeaksAtStop (")) << r.out;
  // An exit the test announced, and a slow start that says where it stands.
  EXPECT_THAT(r.out, HasSubstr("[       OK ] PerTest.AnnouncedExitPasses (")) << r.out;
  {
    // After 2 s, scaled by HARNESS_TIMEOUT_SCALE (printed with one decimal).
    std::smatch m;
    if (std::regex_search(r.out, m, std::regex(R"(\[ HARNESS  \] still starting slowpoke: (\d+\.\d) s in)"))) {
      const double in = std::stod(m[1]);
      EXPECT_GE(in, static_cast<double>(harness::timeouts::scaled(2s).count()) / 1000.0 - 0.05) << r.out;
      EXPECT_LT(in, static_cast<double>(harness::timeouts::scaled(3s).count()) / 1000.0) << r.out;
    } else {
      ADD_FAILURE() << "no progress line for slowpoke in\n" << r.out;
    }
  }
  EXPECT_THAT(r.out, HasSubstr("[       OK ] PerTest.SlowStartShowsProgress (")) << r.out;
  // The shared server fails the test during which it died, and only that one.
  EXPECT_THAT(r.out, HasSubstr("shared-victim exited during this test:")) << r.out;
  EXPECT_THAT(r.out, HasSubstr("[  FAILED  ] Shared.KillsTheServer (")) << r.out;
  EXPECT_THAT(r.out, HasSubstr("[       OK ] Shared.RunsAfterwards (")) << r.out;

  // The XML: failures with the full text, and the listener's report as a property.
  const auto crash = testcase(r.xml, "PerTest", "ServerCrashesMidTest");
  EXPECT_THAT(crash, HasSubstr("<failure message=")) << crash;
  EXPECT_THAT(crash, HasSubstr("killed by signal 6 (SIGABRT)")) << crash;
  EXPECT_THAT(crash, HasSubstr("<property name=\"harness.report\" value=\"[ HARNESS  ] PerTest.ServerCrashesMidTest "
                               "failed; 1 server was live during the test:"))
      << crash;
  EXPECT_THAT(crash, HasSubstr("out| warming up on stdout")) << crash;
  const auto leak = testcase(r.xml, "PerTest", "ServerLeaksAtStop");
  EXPECT_THAT(leak, HasSubstr("==1==ERROR: LeakSanitizer: detected memory leaks")) << leak;
  EXPECT_THAT(leak, HasSubstr("<failure message=")) << leak;
  EXPECT_THAT(testcase(r.xml, "Shared", "KillsTheServer"), HasSubstr("<failure message=")) << r.xml;
  EXPECT_THAT(testcase(r.xml, "Shared", "RunsAfterwards"), Not(HasSubstr("<failure"))) << r.xml;
  EXPECT_THAT(testcase(r.xml, "PerTest", "AnnouncedExitPasses"), Not(HasSubstr("<failure"))) << r.xml;
}

TEST_F(GtestLayerEndToEnd, ANamedServerThatDiesFailsTheTestDuringWhichItDied) {
  const std::string name = "gtest-named-" + std::to_string(::getpid());
  ::setenv("HARNESS_TEST_NAMED", name.c_str(), 1);
  const auto r = run(HARNESS_GTEST_NAMED, {});
  ::unsetenv("HARNESS_TEST_NAMED");
  ASSERT_TRUE(r.status);
  EXPECT_THAT(*r.status, ExitedWith(1)) << r.out;
  EXPECT_THAT(r.out, HasSubstr("[       OK ] Named.AttachesOnceAndIsShared (")) << r.out;
  EXPECT_THAT(r.out, HasSubstr("the shared server " + name + " ended during this test:")) << r.out;
  EXPECT_THAT(r.out, HasSubstr("it exited on its own (killed by signal 9 (SIGKILL))")) << r.out;
  EXPECT_THAT(r.out, HasSubstr("[  FAILED  ] Named.KillsTheServer (")) << r.out;
  // The report of the failed test: the server and the end of its log.
  EXPECT_THAT(r.out, HasSubstr("[ HARNESS  ] shared server " + name + ": ")) << r.out;
  EXPECT_THAT(r.out, HasSubstr("named server says hello")) << r.out;
  EXPECT_THAT(r.out, HasSubstr("[       OK ] Named.RunsAfterwards (")) << r.out;
  EXPECT_EQ(count(r.out, "[ HARNESS  ] shared server " + name + ": "), 1u) << "reported once, with the failed test\n" << r.out;
  EXPECT_THAT(r.out, HasSubstr("[ child SKIPPED ] Named.UnavailableIsASkip")) << r.out;
  const auto facts = std::regex_search(r.out, std::regex("E2E named port=(\\d+) pid=(\\d+)"));
  EXPECT_TRUE(facts) << r.out;
  const auto first = testcase(r.xml, "Named", "AttachesOnceAndIsShared");
  EXPECT_THAT(first, HasSubstr("<property name=\"harness." + name + ".shared\" value=\"started\"/>")) << first;
  EXPECT_THAT(first, HasSubstr("<property name=\"harness." + name + ".port\"")) << first;
  EXPECT_THAT(testcase(r.xml, "Named", "KillsTheServer"), HasSubstr("<failure message=")) << r.xml;
  EXPECT_THAT(testcase(r.xml, "Named", "RunsAfterwards"), Not(HasSubstr("<failure"))) << r.xml;
}

}  // namespace
