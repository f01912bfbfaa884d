// R13: the runner ignores SIGPIPE (test_main does) and more signals, blocks signals in
// the threads that start servers (each thread a different random set), has a handler of
// its own installed, and carries an odd environment (LISTEN_FDS, LISTEN_PID,
// LISTEN_FDNAMES, NOTIFY_SOCKET, HARNESS_READY_FD, LD_PRELOAD). Every server starts with
// an empty signal mask, default dispositions and exactly the environment its options
// chose (fixture-server --report-signals and --report-env).
#include <pthread.h>
#include <signal.h>

#include <mutex>
#include <random>
#include <thread>

#include "battery.hpp"
#include "harness/process.hpp"
#include "harness/session.hpp"

namespace {

using namespace std::chrono_literals;
using harness_test::fx;

// What the runner's environment holds during the test (and what must never pass
// unless a spec sets it).
const std::vector<std::pair<std::string, std::string>> odd_env = {
    {"LISTEN_FDS", "3"},          {"LISTEN_PID", "1"},
    {"LISTEN_FDNAMES", "stolen"}, {"NOTIFY_SOCKET", "/nonexistent/notify"},
    {"HARNESS_READY_FD", "9"},    {"LD_PRELOAD", "/nonexistent/harness-r13-preload.so"},
};
const std::vector<std::string> never_inherited = {"LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES",
                                                  "NOTIFY_SOCKET", "HARNESS_READY_FD"};

// Sets the runner's odd state for its lifetime: environment, ignored signals, a handler.
class odd_runner {
 public:
  odd_runner() {
    for (const auto& [k, v] : odd_env) ::setenv(k.c_str(), v.c_str(), 1);
    for (int sig : ignored) {
      struct sigaction ign {};
      ign.sa_handler = SIG_IGN;
      ::sigaction(sig, &ign, &old_[sig]);
    }
    struct sigaction h {};
    h.sa_handler = [](int) {};
    ::sigaction(SIGUSR2, &h, &old_[SIGUSR2]);
  }
  ~odd_runner() {
    for (const auto& [k, v] : odd_env) ::unsetenv(k.c_str());
    for (int sig : ignored) ::sigaction(sig, &old_[sig], nullptr);
    ::sigaction(SIGUSR2, &old_[SIGUSR2], nullptr);
  }
  odd_runner(const odd_runner&) = delete;
  odd_runner& operator=(const odd_runner&) = delete;
  static constexpr int ignored[] = {SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGTSTP, SIGTTOU, SIGTTIN, SIGALRM};

 private:
  struct sigaction old_[NSIG] {};
};

// The env options of one server, chosen at random, and the value each reported
// variable must then have (nullopt: unset).
struct env_case {
  harness::env_options options;
  std::vector<std::pair<std::string, std::optional<std::string>>> expected;
};

env_case random_env(std::mt19937& rng) {
  env_case c;
  switch (rng() % 4) {
    case 0: break;  // inherit everything (but the never-inherited ones)
    case 1: c.options.unset = {"LD_PRELOAD"}; break;
    case 2: c.options = {.inherit = false, .allow = {"PATH", "LD_PRELOAD", "LISTEN_FDS"}}; break;
    default: c.options = {.inherit = false, .allow = {"PATH"}}; break;
  }
  const bool set_explicitly = rng() % 3 == 0;  // a spec may set LISTEN_FDS itself
  if (set_explicitly) c.options.set = {{"LISTEN_FDS", "7"}};
  c.options.set.emplace_back("R13_CHOSEN", std::to_string(rng()));
  for (const auto& name : never_inherited) {
    c.expected.emplace_back(name, std::nullopt);
  }
  if (set_explicitly) c.expected[0].second = "7";
  const bool preload_passes = c.options.inherit ? c.options.unset.empty() : c.options.allow.size() > 1;
  c.expected.emplace_back("LD_PRELOAD",
                          preload_passes ? std::optional<std::string>(odd_env.back().second) : std::nullopt);
  c.expected.emplace_back("R13_CHOSEN", c.options.set.back().second);
  return c;
}

std::string check_reports(const harness::output& out, const env_case& c) {
  std::string why;
  auto mask = out.wait_for_line(R"(^SIGMASK ([0-9a-f]+)$)", 10s);
  auto ign = out.wait_for_line(R"(^SIGIGN (.*)$)", 10s);
  if (!mask || !ign) return "no signal report";
  if (std::stoull(mask->groups[1], nullptr, 16) != 0) why += " mask " + mask->groups[1] + ";";
  if (ign->groups[1] != "none") why += " ignored " + ign->groups[1] + ";";
  for (const auto& [name, value] : c.expected) {
    auto line = out.wait_for_line("^ENV " + name + "[ =]", 10s);
    const std::string want = value ? "ENV " + name + "=" + *value : "ENV " + name + " is unset";
    if (!line || line->line != want) why += " want '" + want + "', saw '" + (line ? line->line : "nothing") + "';";
  }
  return why;
}

TEST(R13, OddRunnerSignalsAndEnvironmentNeverReachTheServer) {
  const unsigned seed = harness_test::test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  const std::string token = harness_test::unique_token("r13");
  const odd_runner odd;

  std::mutex m;
  std::vector<std::string> complaints;
  std::atomic<int> started{0};
  const auto until = harness_test::steady_clock::now() + 12s;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(seed + static_cast<unsigned>(t));
      // This thread's own blocked signals.
      sigset_t block;
      sigemptyset(&block);
      for (int sig : {SIGTERM, SIGCHLD, SIGUSR1, SIGUSR2, SIGINT, SIGALRM, SIGPIPE, SIGRTMIN + 3}) {
        if (rng() % 2 == 0) sigaddset(&block, sig);
      }
      ::pthread_sigmask(SIG_BLOCK, &block, nullptr);
      for (int i = 0; i < 10 && (i < 2 || harness_test::steady_clock::now() < until); ++i) {
        const env_case c = random_env(rng);
        std::vector<std::string> args = {"--print=" + token, "--report-signals"};
        for (const auto& [name, value] : c.expected) args.push_back("--report-env=" + name);
        std::string why;
        if (rng() % 2 == 0) {
          args.insert(args.end(), {"--exit-before-ready=0"});
          auto p = harness::process::try_spawn({.argv = fx(args), .env = c.options});
          why = p ? check_reports(p->output(), c) : "spawn: " + p.error().message();
        } else {
          args.insert(args.end(), {"--port={port}"});
          auto s = harness::session::try_start({.command = fx(args), .env = c.options});
          why = s ? check_reports(s->output(), c) : "session: " + s.error().message();
        }
        ++started;
        if (!why.empty()) {
          std::lock_guard lock(m);
          complaints.push_back("thread " + std::to_string(t) + ", server " + std::to_string(i) + ":" + why);
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  std::cout << started.load() << " servers started\n";
  EXPECT_GE(started.load(), 8);
  EXPECT_TRUE(complaints.empty()) << testing::PrintToString(complaints);
  harness_test::expect_gone(token, 2s, "after the last stop");
}

}  // namespace
