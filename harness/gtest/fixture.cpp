#include "harness/gtest/fixture.hpp"

#include <map>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <stdexcept>

#include "harness/gtest/listener.hpp"

namespace harness::gtest {
namespace {

// A shared server that did not start, and the tests it takes down with it.
struct failed_server {
  const shared_server* owner = nullptr;
  std::string label;  // "the shared server fixture-server of test suite DbTest"
  std::string suite;  // empty: every test of the program
  failure error;
  if_unavailable unavailable = if_unavailable::fail;
};

struct guard_state {
  std::mutex m;
  bool installed = false;
  std::vector<failed_server> failed;
};

guard_state& guard() {
  static auto* g = new guard_state();  // outlives static destructors (shared_server statics)
  return *g;
}

bool skippable(const failure& f, if_unavailable unavailable) {
  return unavailable == if_unavailable::skip && is_unavailable(f);
}

std::string skip_text(const std::string& message) {
  return "the server's program is not available here (if_unavailable::skip):\n" + message;
}

void record_failed_start(const failure& f);

// Fails (or skips) the running test because of these servers.
void report(const std::vector<failed_server>& hits, const char* file, int line) {
  if (hits.empty()) return;
  const bool all_skip =
      std::all_of(hits.begin(), hits.end(), [](const failed_server& h) { return skippable(h.error, h.unavailable); });
  if (all_skip) {
    std::string text;
    for (const auto& h : hits) {
      text += (text.empty() ? "" : "\n") + h.label + " is not available here (if_unavailable::skip):\n" +
              h.error.message();
    }
    // At the test's own line, as the failures below.
    GTEST_MESSAGE_AT_(file != nullptr ? file : "unknown file", line, text.c_str(), ::testing::TestPartResult::kSkip);
    return;
  }
  for (const auto& h : hits) {
    if (skippable(h.error, h.unavailable)) continue;
    record_failed_start(h.error);
    GTEST_FAIL_AT(file != nullptr ? file : "unknown file", line)
        << h.label << " did not start, so this test cannot run:\n"
        << h.error.message();
  }
}

// Fails (or skips) each test of the scope of a failed shared server when it starts,
// before its fixture's SetUp: gtest runs neither SetUp nor the body of a test that has
// a fatal failure or a skip by then.
class failed_server_guard final : public ::testing::EmptyTestEventListener {
 public:
  void OnTestStart(const ::testing::TestInfo& test) override {
    std::vector<failed_server> hits;
    {
      auto& g = guard();
      std::lock_guard lock(g.m);
      for (const auto& f : g.failed) {
        if (f.suite.empty() || f.suite == test.test_suite_name()) hits.push_back(f);
      }
    }
    report(hits, test.file(), test.line());
  }
};

void register_failure(failed_server f) {
  auto& g = guard();
  std::lock_guard lock(g.m);
  if (!g.installed) {
    // Not inside an event: shared servers start in SetUpTestSuite / Environment::SetUp.
    ::testing::UnitTest::GetInstance()->listeners().Append(new failed_server_guard());
    g.installed = true;
  }
  g.failed.push_back(std::move(f));
}

// A slow start prints where it stands, so that a 30 s postgres start does not look
// like a hung test (unless the spec has its own on_progress).
void with_progress(server_spec& spec) {
  if (spec.ready.on_progress) return;
  spec.ready.on_progress = [label = server_label(spec)](const start_progress& p) {
    std::fputs(("[ HARNESS  ] still starting " + label + ": " + to_string(p) + "\n").c_str(), stdout);
    std::fflush(stdout);
  };
}

result<session> try_start(server_spec spec) {
  with_progress(spec);
  try {
    return session::try_start(std::move(spec));
  } catch (const std::exception& e) {  // e.g. std::bad_alloc, a thread that cannot start
    return make_failure(errc::spawn_failed, e.what());
  }
}

// A skip recorded at the user's line (GTEST_SKIP() would name this file).
void skip_at(const call_site& where, const std::string& text) {
  GTEST_MESSAGE_AT_(where.file, where.line, text.c_str(), ::testing::TestPartResult::kSkip);
}

// What a failed start leaves in the XML report: its log and attempts, as properties
// (the failure message has the full text).
void record_failed_start(const failure& f) {
  const std::string text = f.detail;
  ::testing::Test::RecordProperty("harness.start_failed", f.message().substr(0, f.message().find('\n')));
  if (const auto at = text.find("\n  log: "); at != std::string::npos) {
    const auto start = at + 8;
    ::testing::Test::RecordProperty("harness.log", text.substr(start, text.find('\n', start) - start));
  }
  if (const auto at = text.find("\n  attempts:\n"); at != std::string::npos) {
    ::testing::Test::RecordProperty("harness.attempts", text.substr(at + 14));
  }
}

// Reports a failed start in the running test, at the user's line.
void report_start_failure(const failure& f, if_unavailable unavailable, const call_site& where) {
  if (skippable(f, unavailable)) return skip_at(where, skip_text(f.message()));
  record_failed_start(f);
  GTEST_FAIL_AT(where.file, where.line) << f.message();
}

// The listener is what prints a failed test's servers and judges shared servers at
// each test's end: a program whose main() did not install it (GTest::gtest_main
// instead of harness::gtest_main) gets it on first use, and is told once.
void ensure_listener() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (listener_installed()) return;
    install_listener();
    std::fputs("[ HARNESS  ] installed harness::gtest::listener on first use; link harness::gtest_main (or call "
               "harness::gtest::install_listener() in main) to have it from the first test\n",
               stdout);
    std::fflush(stdout);
  });
}

// Fails the running test (or the suite, in TearDownTestSuite) when a server it stopped
// did not end as its spec expects; prints its warnings.
void judge_stopped(const harness::session& s, const call_site* where, const std::string& label) {
  if (auto f = s.check()) {
    if (where != nullptr) {
      ADD_FAILURE_AT(where->file, where->line) << label << ":\n" << f->message();
    } else {
      ADD_FAILURE() << label << ":\n" << f->message();
    }
  }
  for (const auto& w : s.warnings()) {
    std::fputs(("[ HARNESS  ] warning: " + w + "\n").c_str(), stdout);
    std::fflush(stdout);
  }
}

void note(const session& s) noexcept {
  try {
    note_session(s);
  } catch (...) {  // a report detail is not worth an exception out of a destructor
  }
}

}  // namespace

harness::named_server* attach_named(std::string name, server_spec spec, if_unavailable unavailable,
                                    named_options options, call_site where) {
  ensure_listener();
  // One hold per name per process, kept until the program exits (leaked on purpose:
  // static destructors run in no useful order; the keeper drops the hold when we end).
  static std::mutex m;
  static auto* held = new std::map<std::string, std::unique_ptr<harness::named_server>>();
  std::lock_guard lock(m);
  if (auto it = held->find(name); it != held->end()) return it->second.get();
  auto r = [&]() -> result<harness::named_server> {
    try {
      return harness::named_server::try_attach(name, std::move(spec), options);
    } catch (const std::exception& e) {
      return make_failure(errc::spawn_failed, e.what());
    }
  }();
  if (!r) {
    report_start_failure(r.error(), unavailable, where);
    return nullptr;
  }
  auto* s = held->emplace(name, std::make_unique<harness::named_server>(std::move(*r))).first->second.get();
  ::testing::Test::RecordProperty("harness." + name + ".shared", s->started_here() ? "started" : "attached");
  note_named(*s);
  return s;
}

bool is_unavailable(const failure& f) {
  return f.code == errc::program_not_found || f.code == errc::program_not_executable ||
         f.code == errc::program_is_directory;
}

// --- server_test --------------------------------------------------------------------

server_test::~server_test() {
  // Newest first; snapshot each for the listener (its last look at a fixture's server),
  // stop it and judge how it ended, at the line that started it.
  // A failed test keeps its servers' scratch directories ({dir}) for the post-mortem.
  const bool failed = ::testing::Test::HasFailure();
  while (!servers_.empty()) {
    auto& s = *servers_.back();
    note(s);
    if (failed) s.keep_dir();
    s.stop();
    note(s);
    judge_stopped(s, &sites_.back(), "the server " + s.name() + " started here did not end as expected");
    servers_.pop_back();
    sites_.pop_back();
  }
}

harness::session* server_test::start_server(server_spec spec, if_unavailable unavailable,
                                            call_site where) {
  ensure_listener();
  auto r = try_start(std::move(spec));
  if (!r) {
    report_start_failure(r.error(), unavailable, where);
    return nullptr;
  }
  servers_.push_back(std::make_unique<harness::session>(std::move(*r)));
  sites_.push_back(where);
  note(*servers_.back());
  return servers_.back().get();
}

std::vector<harness::session*> server_test::start_servers(std::vector<server_spec> specs,
                                                          if_unavailable unavailable,
                                                          call_site where) {
  ensure_listener();
  std::vector<result<session>> results;
  try {
    for (auto& spec : specs) with_progress(spec);
    results = harness::start_all(std::move(specs));
  } catch (const std::exception& e) {
    GTEST_FAIL_AT(where.file, where.line) << "could not start the servers: " << e.what();
    return {};
  }
  const bool all_ok = std::all_of(results.begin(), results.end(), [](const auto& r) { return r.has_value(); });
  if (!all_ok) {
    const bool all_skip = std::all_of(results.begin(), results.end(), [&](const auto& r) {
      return r.has_value() || skippable(r.error(), unavailable);
    });
    if (all_skip) {
      std::string text;
      for (const auto& r : results) {
        if (!r) text += (text.empty() ? "" : "\n") + skip_text(r.error().message());
      }
      skip_at(where, text);
      return {};
    }
    for (const auto& r : results) {
      if (!r && !skippable(r.error(), unavailable)) {
        record_failed_start(r.error());
        GTEST_FAIL_AT(where.file, where.line) << r.error().message();
      }
    }
    return {};  // the servers that did start stop with `results`
  }
  std::vector<harness::session*> out;
  for (auto& r : results) {
    servers_.push_back(std::make_unique<harness::session>(std::move(*r)));
    sites_.push_back(where);
    note(*servers_.back());
    out.push_back(servers_.back().get());
  }
  return out;
}

harness::session& server_test::server(std::size_t index) {
  if (index >= servers_.size()) {
    throw std::out_of_range("server_test::server(" + std::to_string(index) + "): " +
                            std::to_string(servers_.size()) + " servers started");
  }
  return *servers_[index];
}

// --- shared_server -------------------------------------------------------------------------

shared_server::shared_server() noexcept = default;

shared_server::~shared_server() {
  withdraw();
  session_.reset();  // the session's destructor stops it: bounded, noexcept
}

bool shared_server::start(server_spec spec, if_unavailable unavailable) {
  ensure_listener();
  stop();
  std::string name = server_label(spec);
  adopt(try_start(std::move(spec)), unavailable, false, std::move(name));
  return started();
}

void shared_server::adopt(result<harness::session> r, if_unavailable unavailable, bool program_wide,
                          std::string name) {
  withdraw();
  session_.reset();
  failure_.reset();
  if (r) {
    session_ = std::make_unique<harness::session>(std::move(*r));
    note(*session_);
    return;
  }
  failure_ = std::move(r).error();
  auto* unit = ::testing::UnitTest::GetInstance();
  failed_server entry;
  entry.owner = this;
  entry.error = *failure_;
  entry.unavailable = unavailable;
  if (!program_wide && unit->current_test_suite() != nullptr) {
    entry.suite = unit->current_test_suite()->name();
    entry.label = "the shared server " + name + " of test suite " + entry.suite;
  } else {
    entry.label = "the server " + name + " of the test program";
  }
  const ::testing::TestInfo* running = unit->current_test_info();
  if (running != nullptr) report({entry}, running->file(), running->line());
  register_failure(std::move(entry));
}

void shared_server::withdraw() noexcept {
  try {
    auto& g = guard();
    std::lock_guard lock(g.m);
    std::erase_if(g.failed, [this](const failed_server& f) { return f.owner == this; });
  } catch (...) {  // a mutex that cannot lock: nothing sensible to do in a destructor
  }
}

std::optional<exit_status> shared_server::stop() {
  withdraw();
  failure_.reset();
  if (!session_) return std::nullopt;
  // Kept when a test of the suite (or the program) failed: the directory may explain it.
  const auto* unit = ::testing::UnitTest::GetInstance();
  const auto* suite = unit->current_test_suite();
  if ((suite != nullptr && suite->Failed()) || (suite == nullptr && unit->Failed())) session_->keep_dir();
  const exit_status status = session_->stop();
  // In TearDownTestSuite (or Environment::TearDown) a failure is the suite's (the
  // program's); an unexpected exit already failed the test during which it happened.
  if (auto f = session_->check(); f && f->code != errc::server_exited) {
    ADD_FAILURE() << "the shared server " << session_->name() << " did not end as expected:\n" << f->message();
  }
  for (const auto& w : session_->warnings()) {
    std::fputs(("[ HARNESS  ] warning: " + w + "\n").c_str(), stdout);
    std::fflush(stdout);
  }
  session_.reset();
  return status;
}

harness::session& shared_server::get() {
  if (session_) return *session_;
  if (failure_) throw harness::error(*failure_);
  throw harness::error(make_failure(errc::not_running, "the shared server is not started"));
}

// --- server_environment -----------------------------------------------------------------------

server_environment::server_environment(std::vector<server_spec> specs, if_unavailable unavailable)
    : specs_(std::move(specs)), unavailable_(unavailable) {}

server_environment::~server_environment() = default;

void server_environment::SetUp() {
  ensure_listener();
  servers_.clear();
  std::vector<result<session>> results;
  try {
    auto specs = specs_;
    for (auto& spec : specs) with_progress(spec);
    results = harness::start_all(std::move(specs));
  } catch (const std::exception& e) {
    results.clear();
    for (std::size_t i = 0; i < specs_.size(); ++i) results.emplace_back(make_failure(errc::spawn_failed, e.what()));
  }
  for (std::size_t i = 0; i < results.size(); ++i) {
    auto s = std::make_unique<shared_server>();
    s->adopt(std::move(results[i]), unavailable_, true, server_label(specs_[i]));
    servers_.push_back(std::move(s));
  }
}

void server_environment::TearDown() {
  while (!servers_.empty()) {
    servers_.back()->stop();
    servers_.pop_back();
  }
}

harness::session& server_environment::server(std::size_t index) {
  if (index >= servers_.size()) {
    throw harness::error(make_failure(errc::not_running, "server_environment: no server #" + std::to_string(index) +
                                                             " is running (" + std::to_string(servers_.size()) +
                                                             " set up)"));
  }
  return servers_[index]->get();
}

harness::session& server_environment::server(std::string_view name) {
  for (std::size_t i = 0; i < specs_.size(); ++i) {
    if (specs_[i].name == name) return server(i);
  }
  throw harness::error(
      make_failure(errc::invalid_argument, "server_environment: no server named \"" + std::string(name) + "\""));
}

server_environment* add_server_environment(std::vector<server_spec> specs, if_unavailable unavailable) {
  return static_cast<server_environment*>(
      ::testing::AddGlobalTestEnvironment(new server_environment(std::move(specs), unavailable)));
}

}  // namespace harness::gtest
