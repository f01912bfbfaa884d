// Named shared servers: one instance per name across processes (harness/named_server.hpp,
// `harness start/stop --name`). Every check of "how many servers" counts processes in
// /proc by executable and a marker in their command line, not the harness's records.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sys/socket.h>
#include <sys/un.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <cctype>
#include <thread>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "harness/detail/os/private_dir.hpp"
#include "harness/detail/os/proc_fs.hpp"
#include "harness/detail/shared/named_common.hpp"
#include "harness/named_server.hpp"
#include "harness/session.hpp"
#include "leftovers.hpp"
#include "support.hpp"

extern char** environ;

namespace {

// Named servers are per state directory: each run of this program has a private one,
// removed at the end, so that names and records of parallel test processes never meet
// and the user's own state directory gets none of ours. (Ports are leased for the
// whole network namespace whatever the directory.)
class private_state_dir : public ::testing::Environment {
 public:
  void SetUp() override {
    std::string tmpl = "/tmp/named-state-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    ::setenv("HARNESS_STATE_DIR", dir_.c_str(), 1);
  }
  void TearDown() override {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

 private:
  std::string dir_;
};
[[maybe_unused]] auto* const state_dir_env = ::testing::AddGlobalTestEnvironment(new private_state_dir);

using namespace std::chrono_literals;
using harness::errc;
using harness::named_server;
using harness_test::fixture_server;

// A name of this test process's own: tests run in parallel and share the state dir.
std::string unique(const std::string& base) {
  const std::string test = ::testing::UnitTest::GetInstance()->current_test_info()->name();
  return base + "-" + std::to_string(::getpid()) + "-" + test.substr(0, 40);
}

// A fixture server whose command line carries `marker`, so that /proc tells ours apart.
harness::server_spec fixture_spec(const std::string& marker, std::vector<std::string> extra = {}) {
  harness::server_spec spec;
  spec.command = {fixture_server(), "--port={port}", "--print=" + marker};
  spec.command.insert(spec.command.end(), extra.begin(), extra.end());
  spec.ready.timeout = 20s;
  return spec;
}

// Live processes of the fixture server whose command line holds `marker`.
std::vector<pid_t> servers_with(const std::string& marker) {
  std::vector<pid_t> out;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    const std::string text = harness::detail::procfs::read_file((entry.path() / "stat").string());
    const auto close = text.rfind(')');
    if (close == std::string::npos || close + 2 >= text.size() || text[close + 2] == 'Z') continue;
    const std::string cmd = harness::detail::procfs::read_file((entry.path() / "cmdline").string());
    std::error_code ec;
    const auto exe = std::filesystem::read_symlink(entry.path() / "exe", ec);
    const std::string arg = "--print=" + marker;
    if (!ec && exe.filename() == "fixture-server" && cmd.find(std::string(1, '\0') + arg + '\0') != std::string::npos) {
      out.push_back(static_cast<pid_t>(std::stoi(name)));
    }
  }
  return out;
}

// Somebody accepts connections on 127.0.0.1:port.
bool port_listens(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

std::filesystem::path servers_dir() {
  auto d = harness::detail::named::servers_dir();
  if (!d) throw harness::error(d.error());
  return *d;
}

struct cli_result {
  int status = -1;
  std::string out;
  std::string err;
};

// Runs the harness command as a plain child (not under a harness supervisor: a
// keeper it starts must outlive it). Output goes through files, so many can run at once.
class cli_run {
 public:
  // The harness command with `args`, or (raw) `args` as a command line of its own.
  explicit cli_run(std::vector<std::string> args, bool raw = false) : dir_("named-cli") {
    if (!raw) args.insert(args.begin(), HARNESS_CLI);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, (dir_.path() / "out").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&fa, 2, (dir_.path() / "err").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    EXPECT_EQ(::posix_spawn(&pid_, argv[0], &fa, nullptr, argv.data(), environ), 0);
    posix_spawn_file_actions_destroy(&fa);
  }
  [[nodiscard]] pid_t pid() const { return pid_; }
  cli_result wait() {
    int st = 0;
    while (::waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
    }
    cli_result r;
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    r.out = slurp(dir_.path() / "out");
    r.err = slurp(dir_.path() / "err");
    return r;
  }

 private:
  static std::string slurp(const std::filesystem::path& p) {
    std::ifstream in(p);
    return std::string((std::istreambuf_iterator<char>(in)), {});
  }
  harness_test::temp_dir dir_;
  pid_t pid_ = 0;
};

cli_result cli(std::vector<std::string> args) { return cli_run(std::move(args)).wait(); }

std::string value_of(const std::string& out, const std::string& key) {
  const auto at = out.find(key + "=");
  if (at == std::string::npos) return {};
  const auto end = out.find('\n', at);
  return out.substr(at + key.size() + 1, end - at - key.size() - 1);
}

// Waits (bounded) for a process to end, through a pidfd.
bool ends_within(pid_t pid, std::chrono::milliseconds limit) {
  const int fd = harness_test::open_pidfd(pid);
  if (fd < 0) return true;  // already gone
  const bool ended = harness_test::pidfd_exited(fd, limit);
  ::close(fd);
  return ended;
}

std::vector<std::string> start_args(const std::string& name, const std::string& marker, pid_t hold_for) {
  return {"start", "--name", name, "--hold-for", std::to_string(hold_for), "--timeout", "20", "--",
          fixture_server(), "--port={port}", "--print=" + marker};
}

TEST(NamedServer, TheFirstCallerStartsItAndTheNextAttaches) {
  const std::string name = unique("db");
  auto a = named_server::try_attach(name, fixture_spec(name));
  ASSERT_TRUE(a) << a.error().message();
  EXPECT_TRUE(a->started_here());
  EXPECT_EQ(a->info().phase, "ready");
  auto b = named_server::try_attach(name, fixture_spec(name));
  ASSERT_TRUE(b) << b.error().message();
  EXPECT_FALSE(b->started_here());
  EXPECT_EQ(a->port(), b->port());
  EXPECT_EQ(a->pid(), b->pid());
  EXPECT_EQ(servers_with(name), std::vector<pid_t>{a->pid()});
  EXPECT_FALSE(a->check().has_value());
  EXPECT_NE(a->summary().find("keeper pid"), std::string::npos) << a->summary();
  EXPECT_TRUE(std::filesystem::exists(a->log_path())) << a->log_path();

  auto listed = named_server::list();
  ASSERT_TRUE(listed);
  auto it = std::find_if(listed->begin(), listed->end(), [&](const auto& i) { return i.name == name; });
  ASSERT_NE(it, listed->end());
  EXPECT_FALSE(it->stale);
  EXPECT_EQ(it->users, std::vector<int>{::getpid()});

  // The last hold ends: the server and its keeper go, and the port is free.
  const int keeper = a->info().keeper_pid;
  const auto port = a->port();
  const int pid = a->pid();
  b.value().release();
  EXPECT_EQ(servers_with(name).size(), 1u) << "one hold is left";
  a.value().release();
  EXPECT_TRUE(ends_within(keeper, 20s));
  EXPECT_TRUE(ends_within(pid, 1s));
  EXPECT_TRUE(servers_with(name).empty());
  EXPECT_FALSE(port_listens(port));
}

TEST(NamedServer, SixteenProcessesStartingAtOnceGetOneServer) {
  const std::string name = unique("db");
  std::vector<std::unique_ptr<cli_run>> runs;
  for (int i = 0; i < 16; ++i) runs.push_back(std::make_unique<cli_run>(start_args(name, name, ::getpid())));
  std::set<std::string> ports;
  std::set<std::string> pids;
  int started = 0;
  for (auto& r : runs) {
    const auto res = r->wait();
    ASSERT_EQ(res.status, 0) << res.err;
    ports.insert(value_of(res.out, "HARNESS_PORT"));
    pids.insert(value_of(res.out, "HARNESS_PID"));
    started += res.err.find(": started on port") != std::string::npos ? 1 : 0;
  }
  EXPECT_EQ(ports.size(), 1u);
  EXPECT_EQ(pids.size(), 1u);
  EXPECT_EQ(started, 1);
  const auto live = servers_with(name);
  ASSERT_EQ(live.size(), 1u);
  EXPECT_EQ(std::to_string(live[0]), *pids.begin());
  auto listed = named_server::find(name);
  ASSERT_TRUE(listed && *listed);
  EXPECT_EQ((*listed)->users, std::vector<int>{::getpid()});  // 16 holds, one process
  auto stopped = named_server::stop(name);
  ASSERT_TRUE(stopped);
  EXPECT_TRUE(*stopped);
  EXPECT_TRUE(servers_with(name).empty());
}

TEST(NamedServer, AStopRacingStartsFinishesBeforeAnyStartsAgain) {
  const std::string name = unique("db");
  auto first = cli(start_args(name, name, ::getpid()));
  ASSERT_EQ(first.status, 0) << first.err;
  const std::string old_pid = value_of(first.out, "HARNESS_PID");
  std::vector<std::unique_ptr<cli_run>> runs;
  runs.push_back(std::make_unique<cli_run>(std::vector<std::string>{"stop", "--name", name}));
  for (int i = 0; i < 4; ++i) runs.push_back(std::make_unique<cli_run>(start_args(name, name, ::getpid())));
  std::set<std::string> new_pids;
  for (std::size_t i = 0; i < runs.size(); ++i) {
    const auto r = runs[i]->wait();
    ASSERT_EQ(r.status, 0) << r.err;
    if (i > 0 && value_of(r.out, "HARNESS_PID") != old_pid) new_pids.insert(value_of(r.out, "HARNESS_PID"));
  }
  // Each start attached to the old server before the stop, or to one new server after it.
  EXPECT_LE(new_pids.size(), 1u);
  const auto live = servers_with(name);
  EXPECT_LE(live.size(), 1u);
  EXPECT_TRUE(std::find(live.begin(), live.end(), std::stoi(old_pid)) == live.end()) << "the old one was stopped";
  // The keepers' log is one file, in order: no new keeper began before the old one had stopped.
  std::ifstream log(servers_dir() / (name + ".log"));
  std::string line;
  bool stop_seen = false;
  bool stopped = false;
  while (std::getline(log, line)) {
    if (line.find("stop requested") != std::string::npos) stop_seen = true;
    if (stop_seen && line.find("stopped:") != std::string::npos) stopped = true;
    if (stop_seen && line.find(": keeping ") != std::string::npos) {
      EXPECT_TRUE(stopped) << "a keeper started while the stop was in progress: " << line;
    }
  }
  EXPECT_TRUE(stop_seen);
  (void)named_server::stop(name);
  EXPECT_TRUE(servers_with(name).empty());
}

TEST(NamedServer, AKilledServerIsReplacedByTheNextStart) {
  const std::string name = unique("db");
  auto a = named_server::try_attach(name, fixture_spec(name));
  ASSERT_TRUE(a) << a.error().message();
  const int keeper = a->info().keeper_pid;
  ASSERT_EQ(::kill(a->pid(), SIGKILL), 0);
  // Its keeper records how it ended and goes.
  EXPECT_TRUE(ends_within(keeper, 20s));
  auto verdict = a->check();
  ASSERT_TRUE(verdict.has_value());
  EXPECT_EQ(verdict->code, errc::server_exited);
  EXPECT_NE(verdict->detail.find("killed by signal 9"), std::string::npos) << verdict->detail;
  auto listed = named_server::list();
  ASSERT_TRUE(listed);
  auto it = std::find_if(listed->begin(), listed->end(), [&](const auto& i) { return i.name == name; });
  ASSERT_NE(it, listed->end());
  EXPECT_TRUE(it->stale);
  EXPECT_EQ(it->phase, "exited");

  auto b = named_server::try_attach(name, fixture_spec(name));
  ASSERT_TRUE(b) << b.error().message();
  EXPECT_TRUE(b->started_here());
  EXPECT_NE(b->pid(), a->pid());
  EXPECT_EQ(servers_with(name), std::vector<pid_t>{b->pid()});
}

TEST(NamedServer, AKilledKeeperTakesItsServerAlongAndLeavesAStaleRecord) {
  const std::string name = unique("db");
  auto a = named_server::try_attach(name, fixture_spec(name));
  ASSERT_TRUE(a) << a.error().message();
  const int server = a->pid();
  ASSERT_EQ(::kill(a->info().keeper_pid, SIGKILL), 0);
  EXPECT_TRUE(ends_within(server, 10s)) << "the supervisor kills the tree of a keeper that died";
  auto b = named_server::try_attach(name, fixture_spec(name));
  ASSERT_TRUE(b) << b.error().message();
  EXPECT_TRUE(b->started_here()) << "the stale record was not trusted";
  EXPECT_EQ(servers_with(name), std::vector<pid_t>{b->pid()});
}

TEST(NamedServer, EmptyTruncatedOrCorruptRecordsAreStaleUnlessTheirLockIsHeld) {
  const std::string name = unique("db");
  const auto made = harness::detail::named::servers_dir();  // created private, as the library makes it
  ASSERT_TRUE(made) << made.error().message();
  const auto dir = *made;
  const auto record = dir / (name + ".json");
  for (const std::string& text : {std::string(), std::string("{\"name\":\"db\",\"phase\":\"rea"), std::string("\x01\x02 not json")}) {
    SCOPED_TRACE("record: " + text);
    { std::ofstream(record) << text; }
    // Nobody holds the lock: a leftover.
    auto listed = named_server::list();
    ASSERT_TRUE(listed);
    auto it = std::find_if(listed->begin(), listed->end(), [&](const auto& i) { return i.name == name; });
    ASSERT_NE(it, listed->end());
    EXPECT_EQ(it->phase, "corrupt");
    EXPECT_TRUE(it->stale);
    {
      // While a start holds the lock, it is a record being written.
      const int lock = ::open((dir / (name + ".lock")).c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
      ASSERT_EQ(::flock(lock, LOCK_EX), 0);
      auto busy = named_server::list();
      ASSERT_TRUE(busy);
      auto b = std::find_if(busy->begin(), busy->end(), [&](const auto& i) { return i.name == name; });
      ASSERT_NE(b, busy->end());
      EXPECT_EQ(b->phase, "busy");
      EXPECT_FALSE(b->stale);
      ::close(lock);
    }
    auto s = named_server::try_attach(name, fixture_spec(name));
    ASSERT_TRUE(s) << s.error().message();
    EXPECT_TRUE(s->started_here());
    EXPECT_EQ(s->info().phase, "ready");
    const int keeper = s->info().keeper_pid;
    s.value().release();
    EXPECT_TRUE(ends_within(keeper, 20s));
    EXPECT_FALSE(std::filesystem::exists(record)) << "a clean stop removes the record";
  }
}

TEST(NamedServer, AHoldEndsWithItsProcess) {
  const std::string name = unique("db");
  // The holder is a process of its own that we kill, as a crashed test program.
  pid_t holder = 0;
  char sleep_arg0[] = "sleep";
  char sleep_arg1[] = "300";
  char* argv[] = {sleep_arg0, sleep_arg1, nullptr};
  ASSERT_EQ(::posix_spawnp(&holder, "sleep", nullptr, nullptr, argv, environ), 0);
  auto r = cli(start_args(name, name, holder));
  ASSERT_EQ(r.status, 0) << r.err;
  auto info = named_server::find(name);
  ASSERT_TRUE(info && *info);
  EXPECT_EQ((*info)->users, std::vector<int>{holder});
  const int keeper = (*info)->keeper_pid;
  ::kill(holder, SIGKILL);
  ::waitpid(holder, nullptr, 0);
  EXPECT_TRUE(ends_within(keeper, 20s));
  EXPECT_TRUE(servers_with(name).empty());
}

TEST(NamedServer, KeepWarmOutlivesTheLastHoldThenStopsByItself) {
  const std::string name = unique("db");
  harness::named_options o;
  o.keep_warm = 1500ms;
  auto a = named_server::try_attach(name, fixture_spec(name), o);
  ASSERT_TRUE(a) << a.error().message();
  const int keeper = a->info().keeper_pid;
  const auto released = std::chrono::steady_clock::now();
  a.value().release();
  auto idle = named_server::find(name);
  ASSERT_TRUE(idle && *idle) << "it stays up after the last hold";
  EXPECT_NE((*idle)->idle_since_ms, 0);
  EXPECT_TRUE((*idle)->users.empty());
  // An attach within the keep-warm time reuses it.
  auto b = named_server::try_attach(name, fixture_spec(name), o);
  ASSERT_TRUE(b);
  EXPECT_FALSE(b->started_here());
  b.value().release();
  EXPECT_TRUE(ends_within(keeper, 30s)) << "keep-warm servers end after their idle time";
  EXPECT_GE(std::chrono::steady_clock::now() - released, 1500ms);
  EXPECT_TRUE(servers_with(name).empty());
}

TEST(NamedServer, AnotherSpecReplacesAnIdleWarmServerAndIsRefusedWhileItIsHeld) {
  const std::string name = unique("db");
  harness::named_options o;
  o.keep_warm = 60s;
  auto a = named_server::try_attach(name, fixture_spec(name), o);
  ASSERT_TRUE(a) << a.error().message();
  auto refused = named_server::try_attach(name, fixture_spec(name, {"--print=v2"}), o);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, errc::name_in_use);
  EXPECT_NE(refused.error().detail.find("harness stop --name " + name), std::string::npos) << refused.error().detail;
  const int old_pid = a->pid();
  a.value().release();
  auto b = named_server::try_attach(name, fixture_spec(name, {"--print=v2"}), o);
  ASSERT_TRUE(b) << b.error().message();
  EXPECT_TRUE(b->started_here());
  EXPECT_TRUE(ends_within(old_pid, 1s));
  EXPECT_EQ(servers_with(name), std::vector<pid_t>{b->pid()});
  auto stopped = named_server::stop(name);
  ASSERT_TRUE(stopped);
  EXPECT_TRUE(*stopped);
  EXPECT_TRUE(servers_with(name).empty());
}

TEST(NamedServer, AReservedPortIsTheOneTheServerGets) {
  const std::string name = unique("db");
  harness::named_options reserve;
  reserve.reserve = true;
  auto r = named_server::try_attach(name, fixture_spec(name), reserve);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->info().phase, "reserved");
  EXPECT_EQ(r->pid(), 0);
  ASSERT_NE(r->port(), 0);
  EXPECT_TRUE(servers_with(name).empty()) << "reserving starts nothing";
  auto s = named_server::try_attach(name, fixture_spec(name));
  ASSERT_TRUE(s) << s.error().message();
  EXPECT_EQ(s->port(), r->port());
  EXPECT_EQ(s->info().phase, "ready");
  EXPECT_TRUE(port_listens(s->port()));
  EXPECT_EQ(servers_with(name).size(), 1u);
}

TEST(NamedServer, BadInputIsRefusedBeforeAnythingStarts) {
  auto bad_name = named_server::try_attach("../etc", fixture_spec("x"));
  ASSERT_FALSE(bad_name);
  EXPECT_EQ(bad_name.error().code, errc::invalid_argument);
  auto spec = fixture_spec("x");
  spec.on_exit = [](const harness::exit_status&) {};
  auto callback = named_server::try_attach(unique("db"), spec);
  ASSERT_FALSE(callback);
  EXPECT_EQ(callback.error().code, errc::invalid_argument);
  EXPECT_NE(callback.error().detail.find("on_exit"), std::string::npos);
  harness::named_options o;
  o.hold_for = 999999999;
  auto gone = named_server::try_attach(unique("db"), fixture_spec("x"), o);
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().code, errc::invalid_argument);
  harness::named_options reserve;
  reserve.reserve = true;
  harness::server_spec announce = fixture_spec("x");
  announce.command = {fixture_server(), "--announce=auto"};
  announce.port.mode = harness::port_mode::announce;
  auto unreservable = named_server::try_attach(unique("db"), announce, reserve);
  ASSERT_FALSE(unreservable);
  EXPECT_EQ(unreservable.error().code, errc::invalid_argument);
  EXPECT_NE(unreservable.error().detail.find("{port}"), std::string::npos) << unreservable.error().detail;
  // A start that fails says why, and leaves nothing.
  const std::string name = unique("db");
  auto failing = fixture_spec(name, {"--exit-before-ready=3"});
  auto f = named_server::try_attach(name, failing);
  ASSERT_FALSE(f);
  EXPECT_EQ(f.error().code, errc::exited_before_ready) << f.error().message();
  auto listed = named_server::find(name);
  ASSERT_TRUE(listed);
  EXPECT_FALSE(listed->has_value());
  EXPECT_FALSE(std::filesystem::exists(servers_dir() / (name + ".json")));
}

}  // namespace

namespace {

TEST(NamedServer, ANameBoundBySomethingThatDoesNotAnswerIsAnErrorNotAHang) {
  const std::string name = unique("db");
  const auto socket = harness::detail::named::socket_name(servers_dir(), name);
  // Bound, not listening: connect() is refused, and a keeper cannot bind the name.
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path + 1, socket.data(), socket.size());
  ASSERT_EQ(::bind(fd, reinterpret_cast<const sockaddr*>(&addr),
                   static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + socket.size())),
            0);
  auto r = named_server::try_attach(name, fixture_spec(name));
  ::close(fd);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::spawn_failed);
  EXPECT_NE(r.error().detail.find("does not answer"), std::string::npos) << r.error().detail;
  EXPECT_TRUE(servers_with(name).empty());
}

}  // namespace

namespace {

// A process of ours that the harness did not start: `sleep` under another name.
pid_t spawn_sleep(const std::vector<std::string>& words, const char* program = "sleep") {
  std::vector<std::string> args = words;
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  EXPECT_EQ(::posix_spawnp(&pid, program, nullptr, nullptr, argv.data(), environ), 0);
  return pid;
}

bool alive(pid_t pid) {
  const int fd = harness_test::open_pidfd(pid);
  if (fd < 0) return false;
  const bool ended = harness_test::pidfd_exited(fd);
  ::close(fd);
  return !ended;
}

void reap(pid_t pid) {
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
}

// Kills and reaps the processes a test started, on every way out of it (an ASSERT too):
// a `sleep` left behind would keep ctest's output pipe open.
struct reaper {
  std::vector<pid_t> pids;
  ~reaper() {
    for (pid_t p : pids) {
      if (p > 0) reap(p);
    }
  }
};

TEST(NamedServerCli, PsWhoAndGcSayWhatRunsAndCleanOnlyWhatIsOurs) {
  const std::string name = unique("db");
  auto a = cli(start_args(name, name, ::getpid()));
  ASSERT_EQ(a.status, 0) << a.err;
  const std::string port = value_of(a.out, "HARNESS_PORT");
  const std::string pid = value_of(a.out, "HARNESS_PID");

  auto ps = cli({"ps", "--json"});
  ASSERT_EQ(ps.status, 0) << ps.err;
  const auto rows = nlohmann::json::parse(ps.out);
  auto row = std::find_if(rows.begin(), rows.end(), [&](const auto& r) { return r["name"] == name; });
  ASSERT_NE(row, rows.end()) << ps.out;
  EXPECT_EQ((*row)["kind"], "shared");
  EXPECT_EQ((*row)["phase"], "ready");
  EXPECT_EQ(std::to_string((*row)["pid"].get<int>()), pid);
  EXPECT_EQ(std::to_string((*row)["port"].get<int>()), port);
  EXPECT_EQ((*row)["users"], nlohmann::json::array({::getpid()}));
  // A session of a test program shows up too, owned by that program.
  auto session = harness::session::start(fixture_spec(name + "-s"));
  ps = cli({"ps", "--json"});
  const auto all = nlohmann::json::parse(ps.out);
  auto mine = std::find_if(all.begin(), all.end(), [&](const auto& r) { return r["pid"] == session.pid(); });
  ASSERT_NE(mine, all.end()) << ps.out;
  EXPECT_EQ((*mine)["kind"], "session");
  EXPECT_EQ((*mine)["owner_pid"], ::getpid());
  EXPECT_EQ((*mine)["port"], session.port());
  auto table = cli({"ps"});
  EXPECT_NE(table.out.find("KIND"), std::string::npos);
  EXPECT_NE(table.out.find(name), std::string::npos) << table.out;

  auto who = cli({"who", port});
  EXPECT_EQ(who.status, 0) << who.err;
  EXPECT_NE(who.out.find("pid " + pid + " (fixture-server"), std::string::npos) << who.out;
  EXPECT_NE(who.out.find("ours: the shared server '" + name + "' (keeper pid "), std::string::npos) << who.out;
  EXPECT_NE(who.out.find("held by " + std::to_string(::getpid()) + ")"), std::string::npos) << who.out;
  auto who_session = cli({"who", std::to_string(session.port())});
  EXPECT_NE(who_session.out.find("ours: started by pid " + std::to_string(::getpid())), std::string::npos)
      << who_session.out;

  // Next to it: a process we started ourselves, one named like a supervisor whose
  // "runner" is long gone, and (as root) a process of another user.
  const auto fake_dir = harness_test::temp_dir("named-gc");
  const auto fake = fake_dir.path() / "harness-supervisor";
  std::filesystem::copy_file("/bin/sleep", fake);
  reaper started;
  const pid_t untagged = spawn_sleep({"sleep", "300"});
  started.pids.push_back(untagged);
  const pid_t lookalike = spawn_sleep({fake.string(), "3", "999999"}, fake.c_str());
  started.pids.push_back(lookalike);
  pid_t foreign = 0;
  if (::geteuid() == 0) {
    foreign = spawn_sleep({"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sleep", "300"}, "setpriv");
    started.pids.push_back(foreign);
  }
  // And a leftover of ours: the record of a keeper that was killed.
  const std::string stale = unique("stale");
  auto s = named_server::try_attach(stale, fixture_spec(stale));
  ASSERT_TRUE(s) << s.error().message();
  const int server = s->pid();
  ::kill(s->info().keeper_pid, SIGKILL);
  ASSERT_TRUE(ends_within(server, 10s));
  s.value().keep_hold();
  ASSERT_TRUE(std::filesystem::exists(servers_dir() / (stale + ".json")));

  // An old keeper log of a name with no server: gc removes it; a fresh one stays.
  const auto old_log = servers_dir() / (unique("old") + ".log");
  const auto new_log = servers_dir() / (unique("new") + ".log");
  { std::ofstream(old_log) << "old\n"; }
  { std::ofstream(new_log) << "new\n"; }
  std::filesystem::last_write_time(old_log, std::filesystem::file_time_type::clock::now() - std::chrono::hours(48));

  auto dry = cli({"gc", "--dry-run"});
  EXPECT_EQ(dry.status, 0) << dry.err;
  EXPECT_NE(dry.out.find("would remove the stale record of the shared server '" + stale + "'"), std::string::npos)
      << dry.out;
  EXPECT_TRUE(std::filesystem::exists(servers_dir() / (stale + ".json"))) << "a dry run changes nothing";
  auto gc = cli({"gc"});
  EXPECT_EQ(gc.status, 0) << gc.err;
  EXPECT_NE(gc.out.find("remove the stale record of the shared server '" + stale + "'"), std::string::npos) << gc.out;
  EXPECT_FALSE(std::filesystem::exists(servers_dir() / (stale + ".json")));
  EXPECT_NE(gc.out.find("remove the old log of the shared server"), std::string::npos) << gc.out;
  EXPECT_FALSE(std::filesystem::exists(old_log));
  EXPECT_TRUE(std::filesystem::exists(new_log));
  EXPECT_EQ(gc.out.find("'" + name + "'"), std::string::npos) << "a live server is not a leftover:\n" << gc.out;
  EXPECT_TRUE(alive(untagged));
  EXPECT_TRUE(alive(lookalike));
  if (foreign != 0) {
    EXPECT_TRUE(alive(foreign));
  }
  EXPECT_EQ(servers_with(name).size(), 1u);
  EXPECT_TRUE(session.running());

  auto stop = cli({"stop", "--name", name});
  EXPECT_EQ(stop.status, 0) << stop.err;
  EXPECT_NE(stop.err.find("stopped"), std::string::npos) << stop.err;
  EXPECT_TRUE(servers_with(name).empty());
  auto nobody = cli({"who", port});
  EXPECT_EQ(nobody.status, 1) << nobody.out;
  auto again = cli({"stop", "--name", name});
  EXPECT_EQ(again.status, 0);
  EXPECT_NE(again.err.find("was not running"), std::string::npos) << again.err;
}

TEST(NamedServerCli, StartReportsUsageErrorsAndTheReleaseOfAHold) {
  auto no_name = cli({"start", "--", fixture_server(), "--port={port}"});
  EXPECT_EQ(no_name.status, 2) << no_name.err;
  auto bad_name = cli({"start", "--name", "a/b", "--", fixture_server(), "--port={port}"});
  EXPECT_EQ(bad_name.status, 2) << bad_name.err;
  EXPECT_NE(bad_name.err.find("bad shared server name"), std::string::npos) << bad_name.err;
  auto no_command = cli({"start", "--name", "x"});
  EXPECT_EQ(no_command.status, 2) << no_command.err;
  EXPECT_NE(no_command.err.find("harness start --name NAME"), std::string::npos) << no_command.err;

  const std::string name = unique("db");
  auto a = cli(start_args(name, name, ::getpid()));
  ASSERT_EQ(a.status, 0) << a.err;
  const int keeper = (*named_server::find(name))->keeper_pid;
  auto rel = cli({"stop", "--name", name, "--release", "--hold-for", std::to_string(::getpid())});
  EXPECT_EQ(rel.status, 0) << rel.err;
  EXPECT_NE(rel.err.find("nobody holds it now"), std::string::npos) << rel.err;
  EXPECT_TRUE(ends_within(keeper, 20s));
  EXPECT_TRUE(servers_with(name).empty());
}

TEST(NamedServerCli, AKeeperThatDoesNotAnswerIsATimeoutAndStartCanBeInterrupted) {
  const std::string name = unique("db");
  auto a = cli(start_args(name, name, ::getpid()));
  ASSERT_EQ(a.status, 0) << a.err;
  auto info = named_server::find(name);
  ASSERT_TRUE(info && *info);
  const int keeper = (*info)->keeper_pid;
  ASSERT_EQ(::kill(keeper, SIGSTOP), 0);
  struct resume {
    int pid;
    ~resume() { ::kill(pid, SIGCONT); }
  } resume_keeper{keeper};

  auto args = start_args(name, name, ::getpid());
  args.insert(args.begin() + 1, {"--wait", "1"});
  const auto t0 = std::chrono::steady_clock::now();
  auto r = cli(args);
  EXPECT_EQ(r.status, 3) << r.err;
  EXPECT_NE(r.err.find("did not answer within 1000 ms"), std::string::npos) << r.err;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 20s);
  auto s = cli({"stop", "--name", name, "--wait", "1"});
  EXPECT_EQ(s.status, 3) << s.err;
  EXPECT_NE(s.err.find("(pid " + std::to_string(keeper) + ") did not answer"), std::string::npos) << s.err;

  // A start that waits can be interrupted like any command.
  auto waiting = start_args(name, name, ::getpid());
  waiting.insert(waiting.begin() + 1, {"--wait", "60"});
  cli_run run(waiting);
  const auto started = std::chrono::steady_clock::now();
  // Until it sleeps, waiting for the keeper's answer (bounded).
  while (std::chrono::steady_clock::now() - started < 10s) {
    auto st = harness::detail::procfs::read_stat(run.pid());
    if (st && st->state == 'S' && std::chrono::steady_clock::now() - started > 100ms) break;
    std::this_thread::sleep_for(10ms);  // polling another process's state
  }
  ::kill(run.pid(), SIGTERM);
  const auto ended = run.wait();
  EXPECT_EQ(ended.status, 128 + SIGTERM) << ended.err;
  EXPECT_LT(std::chrono::steady_clock::now() - started, 15s);

  ::kill(keeper, SIGCONT);
  EXPECT_EQ(cli({"stop", "--name", name}).status, 0);
  EXPECT_TRUE(servers_with(name).empty());
}

TEST(NamedServerCli, TheDefaultHolderSurvivesASubshellAndBadHoldersAreRefused) {
  const std::string name = unique("db");
  // `P=$(harness start ...)`: the subshell that ran it ends at once; the hold is the
  // script's, which then finds the server up.
  const std::string script = "P=$(\"$0\" start --name " + name + " -- \"$1\" --port={port} --print=" + name +
                             " | sed -n 's/^HARNESS_PORT=//p'); test -n \"$P\" || exit 5; "
                             "exec 3<>/dev/tcp/127.0.0.1/$P && echo alive";
  auto r = cli_run({"/bin/bash", "-c", script, HARNESS_CLI, fixture_server()}, true).wait();
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "alive\n") << r.err;
  // The script has ended: so has its hold.
  auto left = named_server::find(name);
  ASSERT_TRUE(left);
  if (left->has_value()) {
    EXPECT_TRUE(ends_within((*left)->keeper_pid, 20s));
  }
  EXPECT_TRUE(servers_with(name).empty());

  for (const std::string pid : {"1", "2"}) {
    auto bad = cli(start_args(name, name, std::stoi(pid)));
    EXPECT_EQ(bad.status, 2) << bad.err;
    EXPECT_NE(bad.err.find("hold_for: "), std::string::npos) << bad.err;
  }
  EXPECT_TRUE(servers_with(name).empty());
}

TEST(NamedServerCli, TheKeeperKeepsNoneOfItsCallersPipes) {
  const std::string name = unique("db");
  // A pipeline ends when the command in it has, even though the server lives on.
  const std::string script = "{ \"$0\" start --name " + name + " --hold-for " + std::to_string(::getpid()) +
                             " -- \"$1\" --port={port} --print=" + name + " >/dev/null 2>&1; echo started; } 5>&1 7>&2 | cat";
  const auto t0 = std::chrono::steady_clock::now();
  auto r = cli_run({"/bin/sh", "-c", script, HARNESS_CLI, fixture_server()}, true).wait();
  EXPECT_EQ(r.out, "started\n");
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 15s);
  EXPECT_EQ(servers_with(name).size(), 1u);
  auto info = named_server::find(name);
  ASSERT_TRUE(info && *info);
  EXPECT_TRUE(*named_server::stop(name));
}

// A CMake project (no compiler needed) whose tests use harness_add_server_fixture().
class ctest_project {
 public:
  ctest_project(const std::string& name, const std::string& marker, const std::string& tests) : dir_("named-ctest") {
    std::ofstream(dir_.path() / "CMakeLists.txt")
        << "cmake_minimum_required(VERSION 3.25)\nproject(fx LANGUAGES NONE)\n"
        << "find_package(harness REQUIRED COMPONENTS child)\nenable_testing()\n"
        << "harness_add_server_fixture(" << name << " COMMAND [==[" << fixture_server()
        << "]==] --port={port} --print=" << marker << " TIMEOUT 20)\n"
        << tests;
    auto r = cli_plain({"cmake", "-S", dir_.path().string(), "-B", (dir_.path() / "b").string(),
                        "-Dharness_DIR=" HARNESS_BUILD_DIR});
    EXPECT_EQ(r, 0);
  }
  std::filesystem::path build() const { return dir_.path() / "b"; }

  static int cli_plain(std::vector<std::string> args) {
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    pid_t pid = 0;
    if (::posix_spawnp(&pid, args[0].c_str(), &fa, nullptr, argv.data(), environ) != 0) return -1;
    posix_spawn_file_actions_destroy(&fa);
    int st = 0;
    ::waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  }

 private:
  harness_test::temp_dir dir_;
};

TEST(CTestFixture, TestsOfTheRunShareOneServerAndGetItsPortAndHost) {
  const std::string name = unique("fx").substr(0, 30);
  std::string var = name;
  for (auto& c : var) c = std::isalnum(static_cast<unsigned char>(c)) ? static_cast<char>(std::toupper(c)) : '_';
  std::string tests;
  for (int i = 0; i < 4; ++i) {
    tests += "add_test(NAME use" + std::to_string(i) + " COMMAND bash -c [==[exec 3<>/dev/tcp/$" + var + "_HOST/$" +
             var + "_PORT && echo $" + var + "_PORT >> ports.txt]==])\n" + "set_tests_properties(use" +
             std::to_string(i) + " PROPERTIES FIXTURES_REQUIRED " + name + ")\n";
  }
  ctest_project project(name, name, tests);
  ASSERT_EQ(ctest_project::cli_plain({"ctest", "--test-dir", project.build().string(), "-j8", "--output-on-failure"}), 0);
  std::ifstream in(project.build() / "ports.txt");
  std::set<std::string> ports;
  int lines = 0;
  for (std::string line; std::getline(in, line); ++lines) ports.insert(line);
  EXPECT_EQ(lines, 4);
  EXPECT_EQ(ports.size(), 1u) << "every test saw the same port";
  // The run is over: nothing is left.
  auto left = named_server::find(name);
  ASSERT_TRUE(left);
  if (left->has_value()) {
    EXPECT_TRUE(ends_within((*left)->keeper_pid, 20s));
  }
  EXPECT_TRUE(servers_with(name).empty());
}

TEST(CTestFixture, AKilledCtestLeavesNothing) {
  const std::string name = unique("fx").substr(0, 30);
  const harness_test::temp_dir flag("named-flag");
  const auto started = flag.path() / "started";
  const std::string tests = "add_test(NAME hang COMMAND bash -c [==[touch " + started.string() +
                            "; exec sleep 300]==])\nset_tests_properties(hang PROPERTIES FIXTURES_REQUIRED " + name +
                            ")\n";
  ctest_project project(name, name, tests);
  std::string dir = project.build().string();
  std::string ctest = "ctest";
  std::string test_dir = "--test-dir";
  char* argv[] = {ctest.data(), test_dir.data(), dir.data(), nullptr};
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  pid_t pid = 0;
  ASSERT_EQ(::posix_spawnp(&pid, "ctest", &fa, nullptr, argv, environ), 0);
  posix_spawn_file_actions_destroy(&fa);
  // Wait (bounded) until the test that needs the server runs.
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (!std::filesystem::exists(started) && std::chrono::steady_clock::now() < deadline) {
    ASSERT_TRUE(alive(pid)) << "ctest ended early";
    std::this_thread::sleep_for(10ms);  // polling a file another process creates
  }
  ASSERT_TRUE(std::filesystem::exists(started));
  const auto live = servers_with(name);
  ASSERT_EQ(live.size(), 1u);
  auto info = named_server::find(name);
  ASSERT_TRUE(info && *info);
  const auto port = (*info)->port;
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  EXPECT_TRUE(ends_within((*info)->keeper_pid, 20s));
  EXPECT_TRUE(ends_within(live[0], 1s));
  EXPECT_TRUE(servers_with(name).empty());
  EXPECT_FALSE(port_listens(port));
  // The test's own `sleep` is ctest's business; clean it up for the next run.
  std::string pkill = "pkill";
  std::string f = "-f";
  std::string pattern = "touch " + started.string();
  char* kill_argv[] = {pkill.data(), f.data(), pattern.data(), nullptr};
  pid_t k = 0;
  if (::posix_spawnp(&k, "pkill", nullptr, nullptr, kill_argv, environ) == 0) ::waitpid(k, nullptr, 0);
}

}  // namespace
