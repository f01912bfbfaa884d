#include "harness/gtest/listener.hpp"

#include <algorithm>
#include <cstdio>
#include <chrono>
#include <map>
#include <set>
#include <mutex>
#include <fstream>
#include <thread>

#include "harness/respawn.hpp"

namespace harness::gtest {
namespace {

// What the listener knows about the running test. One per process; the listener and
// note_session() share it.
struct test_state {
  std::mutex m;
  listener* installed = nullptr;
  bool in_test = false;
  std::thread::id test_thread{};
  std::chrono::system_clock::time_point test_start{};
  std::vector<session_info> seen;  // in the order first seen
  // Per server (its HARNESS_SESSION value): sanitizer reports at the test's start, and
  // whether its unexpected exit / its warnings were reported already.
  std::map<std::string, std::size_t> sanitizer_at_start;
  std::set<std::string> exit_reported, warned;
  // Named shared servers this program holds (attach_named()), and those whose end was
  // reported already.
  std::vector<const harness::named_server*> named;
  std::set<const harness::named_server*> named_reported;
};

test_state& state() {
  static auto* s = new test_state();  // outlives static destructors (sessions in statics)
  return *s;
}

// Two snapshots are of one server when name and endpoint agree (a restart keeps both;
// the pid changes).
bool same_server(const session_info& a, const session_info& b) {
  return a.name == b.name && a.endpoint == b.endpoint;
}

// Merges newer snapshots into `seen`; must hold state().m.
void merge(std::vector<session_info>& seen, std::vector<session_info> fresh) {
  for (auto& f : fresh) {
    auto it = std::find_if(seen.begin(), seen.end(), [&](const session_info& s) { return same_server(s, f); });
    if (it != seen.end()) {
      *it = std::move(f);
    } else {
      seen.push_back(std::move(f));
    }
  }
}

// Snapshots every live session, if a test is running and this is its thread.
void observe_live() {
  auto& st = state();
  {
    std::lock_guard lock(st.m);
    if (!st.in_test || st.test_thread != std::this_thread::get_id()) return;
  }
  auto live = live_sessions();  // outside the lock: it reads every session's state
  std::lock_guard lock(st.m);
  if (st.in_test) merge(st.seen, std::move(live));
}

std::string plural(std::size_t n, const char* one, const char* many) {
  return std::to_string(n) + " " + (n == 1 ? one : many);
}

constexpr const char* tag = "[ HARNESS  ] ";

}  // namespace

listener::listener(listener_options options) : options_(options) {}

void listener::OnTestStart(const ::testing::TestInfo&) {
  auto& st = state();
  {
    std::lock_guard lock(st.m);
    st.seen.clear();
    st.in_test = true;
    st.test_thread = std::this_thread::get_id();
    st.test_start = std::chrono::system_clock::now();
  }
  observe_live();
  std::lock_guard lock(st.m);
  st.sanitizer_at_start.clear();
  for (const auto& s : st.seen) st.sanitizer_at_start[s.session] = s.sanitizer_reports;
}

namespace {

// Fails the ending test for what the servers that are still live did during it: an
// exit of their own, a sanitizer report. (A harness::gtest fixture's servers are
// judged by the fixture when it stops them, before this.) Prints their warnings once.
void judge_live_servers(const ::testing::TestInfo& test) {
  auto& st = state();
  const auto live = live_sessions();
  std::vector<std::string> failures, warnings;
  {
    std::lock_guard lock(st.m);
    for (const auto& s : live) {
      const bool seen_here = std::any_of(st.seen.begin(), st.seen.end(),
                                         [&](const session_info& x) { return x.session == s.session; });
      if (!seen_here || !s.problem) continue;
      const bool died_now = s.exited_unexpectedly_at && *s.exited_unexpectedly_at >= st.test_start &&
                            st.exit_reported.insert(s.session).second;
      const auto before = st.sanitizer_at_start.find(s.session);
      const bool new_report =
          s.sanitizer_reports > (before != st.sanitizer_at_start.end() ? before->second : 0);
      if (died_now || new_report) {
        failures.push_back((s.name.empty() ? std::string("a server") : s.name) +
                           (died_now ? " exited during this test:\n" : " printed a sanitizer report during this test:\n") +
                           s.problem->message());
      }
    }
    for (const auto& s : live) {
      for (const auto& w : s.warnings) {
        if (st.warned.insert(s.session + "\n" + w).second) warnings.push_back(w);
      }
    }
  }
  for (const auto& f : failures) ADD_FAILURE_AT(test.file() != nullptr ? test.file() : "unknown file", test.line()) << f;
  for (const auto& w : warnings) {
    std::fputs((std::string(tag) + "warning: " + w + "\n").c_str(), stdout);
  }
  std::fflush(stdout);
}

}  // namespace

void listener::OnTestPartResult(const ::testing::TestPartResult& result) {
  // Snapshot at the moment of failure: the server's state then is what explains it.
  if (result.failed()) observe_live();
}

namespace {

// The last `n` lines of a file (a named server's log: its output is not in this process).
std::string last_lines(const std::filesystem::path& path, std::size_t n) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  const std::streamoff from = std::max<std::streamoff>(0, size - 16 * 1024);
  in.seekg(from);
  std::string text((std::istreambuf_iterator<char>(in)), {});
  std::vector<std::string> lines;
  std::size_t start = 0;
  while (start < text.size()) {
    const auto nl = text.find('\n', start);
    lines.push_back(text.substr(start, nl == std::string::npos ? std::string::npos : nl - start));
    if (nl == std::string::npos) break;
    start = nl + 1;
  }
  if (from > 0 && !lines.empty()) lines.erase(lines.begin());  // cut mid-line
  std::string out;
  for (std::size_t i = lines.size() > n ? lines.size() - n : 0; i < lines.size(); ++i) out += "    " + lines[i] + "\n";
  return out;
}

// Fails the test during which a named server died (once), records its properties, and
// returns its part of a failed test's report.
std::string judge_named(bool record, bool failed, std::size_t output_lines) {
  std::vector<const harness::named_server*> named;
  {
    auto& st = state();
    std::lock_guard lock(st.m);
    named = st.named;
  }
  std::string report;
  for (const auto* s : named) {
    if (auto f = s->check()) {
      bool first;
      {
        auto& st = state();
        std::lock_guard lock(st.m);
        first = st.named_reported.insert(s).second;
      }
      if (first) {
        ADD_FAILURE() << "the shared server " << s->name() << " ended during this test:\n" << f->message();
        failed = true;
      }
    }
    if (record) {
      const std::string prefix = "harness." + s->name() + ".";
      ::testing::Test::RecordProperty(prefix + "port", std::to_string(s->port()));
      ::testing::Test::RecordProperty(prefix + "pid", std::to_string(s->pid()));
      if (!s->log_path().empty()) ::testing::Test::RecordProperty(prefix + "log", s->log_path().string());
    }
    if (failed) {
      report += "[ HARNESS  ] " + s->summary();
      const std::string tail = last_lines(s->log_path(), output_lines);
      if (!tail.empty()) report += "  last lines of its log:\n" + tail;
    }
  }
  return report;
}

}  // namespace

void note_named(const harness::named_server& s) {
  auto& st = state();
  std::lock_guard lock(st.m);
  if (std::find(st.named.begin(), st.named.end(), &s) == st.named.end()) st.named.push_back(&s);
}

void listener::OnTestEnd(const ::testing::TestInfo& test) {
  observe_live();
  judge_live_servers(test);
  const std::string named_report = judge_named(options_.record_properties,
                                               test.result() != nullptr && test.result()->Failed(),
                                               options_.output_lines);
  if (options_.print_on_failure && !named_report.empty()) {
    std::fputs(named_report.c_str(), stdout);
    std::fflush(stdout);
  }
  std::vector<session_info> seen;
  {
    auto& st = state();
    std::lock_guard lock(st.m);
    seen = std::move(st.seen);
    st.seen.clear();
    st.in_test = false;
  }
  if (options_.record_properties) {
    // Still attributed to this test's <testcase>: gtest clears the current test only
    // after the test-end event.
    for (const auto& [key, value] : test_properties(seen)) ::testing::Test::RecordProperty(key, value);
  }
  if (test.result() != nullptr && test.result()->Failed()) {
    const auto text = format_report(std::string(test.test_suite_name()) + "." + test.name(), seen,
                                    options_.output_lines);
    // The XML report carries the story too (CI systems show that, not stdout).
    if (options_.record_properties && !text.empty()) ::testing::Test::RecordProperty("harness.report", text);
    if (options_.print_on_failure && !text.empty()) {
      std::fputs(text.c_str(), stdout);
      std::fflush(stdout);
    }
  }
}

listener& install_listener(listener_options options) {
  auto* unit = ::testing::UnitTest::GetInstance();
  // Asked before taking our lock: current_test_info() takes GoogleTest's mutex, which
  // GoogleTest holds while it calls OnTestPartResult, which takes our lock.
  const bool in_a_test = unit->current_test_info() != nullptr;
  auto& st = state();
  std::lock_guard lock(st.m);
  if (st.installed == nullptr) {
    st.installed = new listener(options);
    unit->listeners().Append(st.installed);  // takes ownership
    if (in_a_test) {
      // Installed from inside a test (a fixture's first use): this test counts from now.
      st.in_test = true;
      st.test_thread = std::this_thread::get_id();
      st.test_start = std::chrono::system_clock::now();
      st.seen.clear();
    }
  }
  return *st.installed;
}

bool listener_installed() {
  auto& st = state();
  std::lock_guard lock(st.m);
  return st.installed != nullptr;
}

void note_session(const harness::session& s) {
  if (!s.valid()) return;
  auto& st = state();
  {
    std::lock_guard lock(st.m);
    if (st.installed == nullptr || !st.in_test) return;
  }
  auto info = snapshot(s);
  std::lock_guard lock(st.m);
  if (st.in_test) merge(st.seen, {std::move(info)});
}

session_info snapshot(const harness::session& s) { return s.info(); }

std::vector<std::pair<std::string, std::string>> test_properties(const std::vector<session_info>& servers) {
  std::vector<std::pair<std::string, std::string>> out;
  std::map<std::string, int> uses;
  for (const auto& s : servers) {
    std::string prefix = "harness.";
    if (servers.size() > 1) {
      const std::string name = s.name.empty() ? "server" : s.name;
      const int n = ++uses[name];
      prefix += name + (n > 1 ? "#" + std::to_string(n) : std::string()) + ".";
    }
    out.emplace_back(prefix + "port", std::to_string(s.port));
    out.emplace_back(prefix + "attempts", std::to_string(s.attempts.size()));
    out.emplace_back(prefix + "ready_ms", std::to_string(s.ready_time.count()));
    out.emplace_back(prefix + "log", s.log.string());
  }
  return out;
}

std::string format_report(const std::string& test_name, const std::vector<session_info>& servers,
                          std::size_t output_lines) {
  if (servers.empty()) return {};
  std::string out = std::string(tag) + test_name + " failed; " +
                    plural(servers.size(), "server was", "servers were") + " live during the test:\n";
  for (std::size_t i = 0; i < servers.size(); ++i) {
    const auto& s = servers[i];
    const std::string state =
        s.running ? std::string("running") : (s.status ? s.status->str() : std::string("not running"));
    out += std::string(tag) + std::to_string(i + 1) + ". " + (s.name.empty() ? "server" : s.name) + " (" +
           state + ")\n";
    out += "      command:  " + s.command + "\n";
    out += "      endpoint: " + s.endpoint + " (" + to_string(s.mode) + " mode), pid " + std::to_string(s.pid) +
           "\n";
    out += "      ready:    in " + std::to_string(s.ready_time.count()) + " ms, " +
           plural(s.attempts.size(), "attempt", "attempts") + "\n";
    out += format_attempts(s.attempts, "        ");
    const std::string tail = format_output_tail(s.output_tail, output_lines, "        ");
    if (tail.empty()) {
      out += "      output:   (nothing on stdout or stderr)\n";
    } else {
      const auto n = static_cast<std::size_t>(std::count(tail.begin(), tail.end(), '\n'));
      out += "      output:   last " + plural(n, "line", "lines") + " of stdout and stderr\n" + tail;
    }
    out += "      log:      " + (s.log.empty() ? std::string("(none)") : s.log.string()) + "\n";
    if (!s.dir.empty()) out += "      dir:      " + s.dir.string() + "\n";
  }
  return out;
}

}  // namespace harness::gtest
