// R11: the runner has 40 fds open without CLOEXEC (files, pipes, sockets, a listener)
// and more come and go on another thread while 8 threads start servers: bare processes
// with fds passed at random numbers, inherit-mode sessions (the listener on fd 3) and
// announce-mode sessions (the ready pipe). Each server sees exactly stdin, stdout,
// stderr and the fds meant for it (fixture-server --report-fds).
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <atomic>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "battery.hpp"
#include "harness/process.hpp"
#include "harness/session.hpp"

namespace {

using namespace std::chrono_literals;
using harness_test::fx;

// Opens 40 fds of several kinds, none CLOEXEC; closes them at the end.
class leaked_fds {
 public:
  leaked_fds() {
    while (fds_.size() < 40) {
      switch (fds_.size() % 5) {
        case 0: fds_.push_back(::open("/dev/null", O_RDWR)); break;
        case 1: {
          int p[2];
          if (::pipe(p) == 0) fds_.insert(fds_.end(), {p[0], p[1]});
          break;
        }
        case 2: fds_.push_back(::socket(AF_INET, SOCK_STREAM, 0)); break;
        case 3: fds_.push_back(::eventfd(0, 0)); break;
        case 4: fds_.push_back(harness_test::listen_on(0)); break;
      }
    }
    // listen_on() sets CLOEXEC: take it off.
    for (int fd : fds_) ::fcntl(fd, F_SETFD, 0);
  }
  ~leaked_fds() {
    for (int fd : fds_) ::close(fd);
  }
  leaked_fds(const leaked_fds&) = delete;
  leaked_fds& operator=(const leaked_fds&) = delete;
  [[nodiscard]] const std::vector<int>& fds() const { return fds_; }

 private:
  std::vector<int> fds_;
};

std::string fd_line(std::set<int> fds) {
  fds.insert({0, 1, 2});
  std::string line = "FDS";
  for (int fd : fds) line += " " + std::to_string(fd);
  return line;
}

// Starts one server of a random kind and checks what it sees; returns "" or a complaint.
std::string start_and_check(std::mt19937& rng, const leaked_fds& leaked, const std::string& token) {
  switch (rng() % 3) {
    case 0: {  // a bare process with 0-3 of the leaked fds passed at random numbers
      harness::process_options o{.argv = fx({"--print=" + token, "--report-fds", "--exit-before-ready=0"})};
      std::set<int> targets;
      const int n = static_cast<int>(rng() % 4);
      while (static_cast<int>(targets.size()) < n) targets.insert(3 + static_cast<int>(rng() % 60));
      for (int t : targets) o.fds.push_back({leaked.fds()[rng() % leaked.fds().size()], t});
      auto p = harness::process::try_spawn(o);
      if (!p) return "spawn: " + p.error().message();
      auto line = p->output().wait_for_line("^FDS ", 10s);
      if (!line) return "no FDS line: " + line.error().message();
      if (line->line != fd_line(targets)) return "passed " + fd_line(targets) + ", saw " + line->line;
      return p->wait_for(10s) == harness::exit_status::exited_with(0) ? "" : "did not exit 0";
    }
    case 1: {  // inherit mode: the listener on fd 3
      auto s = harness::session::try_start(
          {.command = fx({"--print=" + token, "--report-fds", "--listen-fds"}),
           .port = {.mode = harness::port_mode::inherit},
           .ready = {.probes = {harness::probe::log("^FDS ")}}});
      if (!s) return "inherit session: " + s.error().message();
      auto line = s->output().wait_for_line("^FDS ", 10s);
      if (!line) return "no FDS line: " + line.error().message();
      return line->line == fd_line({3}) ? "" : "inherit mode saw " + line->line;
    }
    default: {  // announce mode over HARNESS_READY_FD
      auto s = harness::session::try_start(
          {.command = fx({"--print=" + token, "--report-fds", "--report-env=HARNESS_READY_FD", "--port=0",
                          "--announce=ready-fd"}),
           .port = {.mode = harness::port_mode::announce}});
      if (!s) return "announce session: " + s.error().message();
      auto env = s->output().wait_for_line(R"(^ENV HARNESS_READY_FD=(\d+)$)", 10s);
      auto line = s->output().wait_for_line("^FDS ", 10s);
      if (!env || !line) return "no ENV or FDS line";
      const int ready_fd = std::stoi(env->groups[1]);
      return line->line == fd_line({ready_fd}) ? "" : "announce mode (ready fd " + env->groups[1] + ") saw " + line->line;
    }
  }
}

TEST(R11, EightThreadsStartingServersPassOnlyStdioAndTheFdsMeantForThem) {
  const unsigned seed = harness_test::test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  const std::string token = harness_test::unique_token("r11");
  const leaked_fds leaked;

  // More fds without CLOEXEC come and go while the servers start.
  std::atomic<bool> done{false};
  std::thread churn([&] {
    while (!done) {
      const int fd = ::open("/dev/null", O_RDONLY);
      std::this_thread::yield();
      if (fd >= 0) ::close(fd);
    }
  });

  std::mutex m;
  std::vector<std::string> complaints;
  std::atomic<int> started{0};
  const auto until = harness_test::steady_clock::now() + 15s;
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(seed + static_cast<unsigned>(t));
      for (int i = 0; i < 12 && (i < 2 || harness_test::steady_clock::now() < until); ++i) {
        std::string why = start_and_check(rng, leaked, token);
        ++started;
        if (!why.empty()) {
          std::lock_guard lock(m);
          complaints.push_back("thread " + std::to_string(t) + ", server " + std::to_string(i) + ": " + why);
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  done = true;
  churn.join();
  std::cout << started.load() << " servers started\n";
  EXPECT_GE(started.load(), 16);
  EXPECT_TRUE(complaints.empty()) << testing::PrintToString(complaints);
  harness_test::expect_gone(token, 2s, "after the last stop");
}

}  // namespace
