// Tests for harness::child (harness/child/child.hpp): the server-side helpers.
//
// Every test restores the environment variables it touches and checks (in TearDown)
// that it leaves exactly the fds it found. No test sleeps to synchronise: the retry
// tests observe bind_with_retry's attempts through an interposed bind() (see
// bind_spy below), and datagrams/pipe data are read only after the call that
// produced them has returned.
#include "harness/child/child.hpp"

#include <arpa/inet.h>
#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

namespace hc = harness::child;
using namespace std::chrono_literals;

// --- bind_spy: counts the bind() calls made for one port ---------------------------
//
// The test program defines bind() itself, so every bind in this process (including
// the ones inside harness::child, linked statically) comes here first and is passed on
// to the C library's. That lets a test count bind_with_retry's attempts exactly and
// free the port right after the first failed one, without timing guesses.
namespace bind_spy {
int watched_port = -1;                  // -1: not watching
int calls = 0;                          // binds to watched_port since watch()
std::function<void()> after_failure;    // run once, after the first failed bind

void watch(int port, std::function<void()> action = {}) {
  watched_port = port;
  calls = 0;
  after_failure = std::move(action);
}
void stop() { watch(-1); }

int port_of(const sockaddr* addr) {
  if (addr->sa_family == AF_INET) {
    sockaddr_in v4{};
    std::memcpy(&v4, addr, sizeof v4);
    return ntohs(v4.sin_port);
  }
  if (addr->sa_family == AF_INET6) {
    sockaddr_in6 v6{};
    std::memcpy(&v6, addr, sizeof v6);
    return ntohs(v6.sin6_port);
  }
  return -1;
}
}  // namespace bind_spy

extern "C" int bind(int fd, const sockaddr* addr, socklen_t length) noexcept {
  using bind_fn = int (*)(int, const sockaddr*, socklen_t);
  static const auto real = reinterpret_cast<bind_fn>(::dlsym(RTLD_NEXT, "bind"));
  if (real == nullptr) {
    errno = ENOSYS;
    return -1;
  }
  const int result = real(fd, addr, length);
  const int saved = errno;
  if (bind_spy::watched_port >= 0 && bind_spy::port_of(addr) == bind_spy::watched_port) {
    ++bind_spy::calls;
    if (result != 0 && bind_spy::after_failure) {
      std::exchange(bind_spy::after_failure, nullptr)();
    }
  }
  errno = saved;
  return result;
}

namespace {

// --- Helpers ------------------------------------------------------------------------

class unique_fd {
 public:
  explicit unique_fd(int fd = -1) : fd_(fd) {}
  unique_fd(unique_fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  unique_fd& operator=(unique_fd&& other) noexcept {
    reset(std::exchange(other.fd_, -1));
    return *this;
  }
  ~unique_fd() { reset(); }
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_;
};

// Sets (or, with nullopt, unsets) an environment variable; restores it on destruction.
class scoped_env {
 public:
  scoped_env(std::string name, std::optional<std::string> value) : name_(std::move(name)) {
    if (const char* old = std::getenv(name_.c_str())) old_ = old;
    set(value);
  }
  ~scoped_env() { set(old_); }
  scoped_env(const scoped_env&) = delete;
  scoped_env& operator=(const scoped_env&) = delete;

  void set(const std::optional<std::string>& value) {
    if (value) {
      ::setenv(name_.c_str(), value->c_str(), 1);
    } else {
      ::unsetenv(name_.c_str());
    }
  }

 private:
  std::string name_;
  std::optional<std::string> old_;
};

bool env_is_set(const char* name) { return std::getenv(name) != nullptr; }

// Puts `source` on fd `target` (e.g. 3, where socket activation passes sockets) for
// the lifetime of the object; whatever was on `target` before is put back afterwards.
class fd_slot {
 public:
  fd_slot(int target, int source) : target_(target) {
    if (::fcntl(target, F_GETFD) != -1) saved_ = ::fcntl(target, F_DUPFD_CLOEXEC, 100);
    if (source >= 0) {
      ::dup2(source, target);
      ::fcntl(target, F_SETFD, 0);  // inherited across exec: no FD_CLOEXEC
    } else {
      ::close(target);  // an empty slot
    }
  }
  ~fd_slot() {
    ::close(target_);
    if (saved_ >= 0) {
      ::dup2(saved_, target_);
      ::close(saved_);
    }
  }
  fd_slot(const fd_slot&) = delete;
  fd_slot& operator=(const fd_slot&) = delete;

 private:
  int target_;
  int saved_ = -1;
};

// A listening TCP socket on 127.0.0.1 (port 0: any) without SO_REUSEADDR. It is kept
// on a high fd number so that putting it on fd 3 or 4 (fd_slot) never overwrites it,
// whatever fds the test runner left open.
unique_fd listening_socket(std::uint16_t port = 0) {
  unique_fd low(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  unique_fd fd(::fcntl(low.get(), F_DUPFD_CLOEXEC, 64));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd.get() < 0 || ::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(fd.get(), 16) != 0) {
    ADD_FAILURE() << "cannot create a listening socket: " << std::strerror(errno);
    return unique_fd();
  }
  return fd;
}

std::uint16_t port_of(int fd) {
  std::error_code ec;
  const std::uint16_t port = hc::local_port(fd, ec);
  EXPECT_FALSE(ec) << ec.message();
  return port;
}

bool has_cloexec(int fd) {
  const int flags = ::fcntl(fd, F_GETFD);
  return flags >= 0 && (flags & FD_CLOEXEC) != 0;
}

// Reads until EOF: returns once every writer has closed its end.
std::string read_to_eof(int fd) {
  std::string data;
  char buffer[256];
  for (;;) {
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    data.append(buffer, static_cast<std::size_t>(n));
  }
  return data;
}

// True when the code under test closed `fd` (it owns it from the call on). If it did
// not, `fd` is closed here, so that a reader waiting for EOF cannot hang.
bool closed_by_callee(unique_fd& fd) {
  const bool closed = ::fcntl(fd.get(), F_GETFD) == -1 && errno == EBADF;
  if (closed) {
    fd.release();
  } else {
    fd.reset();
  }
  return closed;
}

struct pipe_pair {
  unique_fd read;
  unique_fd write;
};

pipe_pair make_pipe() {
  int fds[2] = {-1, -1};
  EXPECT_EQ(::pipe2(fds, O_CLOEXEC), 0) << std::strerror(errno);
  return {unique_fd(fds[0]), unique_fd(fds[1])};
}

// A private temporary directory, removed (with the socket in it) on destruction.
class temp_dir {
 public:
  temp_dir() {
    const char* base = std::getenv("TMPDIR");
    std::string pattern = std::string(base != nullptr && *base != '\0' ? base : "/tmp") +
                          "/child_test.XXXXXX";
    if (::mkdtemp(pattern.data()) != nullptr) path_ = pattern;
    EXPECT_FALSE(path_.empty()) << std::strerror(errno);
  }
  ~temp_dir() {
    for (const std::string& file : files_) ::unlink(file.c_str());
    ::rmdir(path_.c_str());
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;

  std::string file(const std::string& name) {
    files_.push_back(path_ + "/" + name);
    return files_.back();
  }

 private:
  std::string path_;
  std::vector<std::string> files_;
};

// An AF_UNIX datagram socket bound to `name` (leading '@': abstract namespace).
unique_fd datagram_socket(const std::string& name) {
  unique_fd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, name.data(), name.size());
  if (name.front() == '@') addr.sun_path[0] = '\0';
  const auto length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size() +
                                             (name.front() == '@' ? 0 : 1));
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), length) != 0) {
    ADD_FAILURE() << "bind " << name << ": " << std::strerror(errno);
  }
  return fd;
}

// The datagram waiting on `fd`, or "<none>" when none is queued (never blocks).
std::string pending_datagram(int fd) {
  char buffer[512];
  const ssize_t n = ::recv(fd, buffer, sizeof buffer, MSG_DONTWAIT);
  if (n < 0) return "<none>";
  return std::string(buffer, static_cast<std::size_t>(n));
}

std::set<int> open_fds() {
  std::set<int> fds;
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return fds;
  while (const dirent* entry = ::readdir(dir)) {
    if (entry->d_name[0] != '.') fds.insert(std::atoi(entry->d_name));
  }
  fds.erase(::dirfd(dir));
  ::closedir(dir);
  return fds;
}

// Base fixture: every variable the protocols read starts unset (the test runner may
// itself run under a harness) and is restored afterwards; no fd may leak.
class ChildTest : public ::testing::Test {
 protected:
  void SetUp() override { fds_before_ = open_fds(); }
  void TearDown() override {
    bind_spy::stop();
    EXPECT_EQ(open_fds(), fds_before_) << "the test leaked or closed an fd";
  }

  scoped_env listen_pid_{"LISTEN_PID", std::nullopt};
  scoped_env listen_fds_{"LISTEN_FDS", std::nullopt};
  scoped_env listen_names_{"LISTEN_FDNAMES", std::nullopt};
  scoped_env ready_fd_{"HARNESS_READY_FD", std::nullopt};
  scoped_env notify_socket_{"NOTIFY_SOCKET", std::nullopt};

 private:
  std::set<int> fds_before_;
};

std::string own_pid() { return std::to_string(::getpid()); }

// --- listen_fds ---------------------------------------------------------------------

using ListenFds = ChildTest;

TEST_F(ListenFds, AdoptsTheSocketsPassedToThisProcess) {
  unique_fd first = listening_socket();
  unique_fd second = listening_socket();
  fd_slot slot3(3, first.get());
  fd_slot slot4(4, second.get());
  ASSERT_FALSE(has_cloexec(3));
  listen_pid_.set(own_pid());
  listen_fds_.set("2");
  listen_names_.set("http:admin");

  EXPECT_EQ(hc::listen_fds(), (std::vector<int>{3, 4}));

  EXPECT_TRUE(has_cloexec(3));
  EXPECT_TRUE(has_cloexec(4));
  EXPECT_EQ(port_of(3), port_of(first.get()));
  EXPECT_EQ(port_of(4), port_of(second.get()));
  EXPECT_FALSE(env_is_set("LISTEN_PID"));
  EXPECT_FALSE(env_is_set("LISTEN_FDS"));
  EXPECT_FALSE(env_is_set("LISTEN_FDNAMES"));
}

TEST_F(ListenFds, KeepsTheEnvironmentWhenAsked) {
  unique_fd socket = listening_socket();
  fd_slot slot3(3, socket.get());
  listen_pid_.set(own_pid());
  listen_fds_.set("1");

  EXPECT_EQ(hc::listen_fds(/*unset_environment=*/false), std::vector<int>{3});

  ASSERT_TRUE(env_is_set("LISTEN_FDS"));
  EXPECT_STREQ(std::getenv("LISTEN_FDS"), "1");
  ASSERT_TRUE(env_is_set("LISTEN_PID"));
  EXPECT_EQ(std::getenv("LISTEN_PID"), own_pid());
}

TEST_F(ListenFds, IgnoresSocketsMeantForAnotherProcess) {
  unique_fd socket = listening_socket();
  fd_slot slot3(3, socket.get());
  listen_pid_.set(std::to_string(::getppid()));
  listen_fds_.set("1");

  EXPECT_TRUE(hc::listen_fds().empty());
  EXPECT_FALSE(has_cloexec(3)) << "an fd meant for someone else was touched";
  // Unset anyway (as sd_listen_fds does): our children must not adopt them either.
  EXPECT_FALSE(env_is_set("LISTEN_PID"));
  EXPECT_FALSE(env_is_set("LISTEN_FDS"));
}

TEST_F(ListenFds, MalformedValuesMeanNoSockets) {
  unique_fd socket = listening_socket();
  fd_slot slot3(3, socket.get());  // a lax parser would find a socket here
  const std::string pid = own_pid();
  const std::optional<std::string> unset;
  const std::pair<std::optional<std::string>, std::optional<std::string>> cases[] = {
      {unset, "1"},       {pid, unset},        {"", "1"},          {"abc", "1"},
      {pid + "x", "1"},   {" " + pid, "1"},    {"+" + pid, "1"},   {"-" + pid, "1"},
      {"0", "1"},         {pid, ""},           {pid, "0"},         {pid, "-1"},
      {pid, "+1"},        {pid, "1x"},         {pid, " 1"},        {pid, "0x1"},
      {pid, "99999999999999999999999"},        {pid, "2147483647"},
      {"99999999999999999999999", "1"},
  };
  for (const auto& [pid_value, fds_value] : cases) {
    listen_pid_.set(pid_value);
    listen_fds_.set(fds_value);
    EXPECT_TRUE(hc::listen_fds().empty())
        << "LISTEN_PID=" << pid_value.value_or("<unset>")
        << " LISTEN_FDS=" << fds_value.value_or("<unset>");
  }
}

TEST_F(ListenFds, FdsThatAreNotOpenMeanNoSockets) {
  unique_fd socket = listening_socket();
  fd_slot slot3(3, socket.get());
  fd_slot slot4(4, -1);  // LISTEN_FDS=2 claims fd 4 too, but it is closed
  listen_pid_.set(own_pid());
  listen_fds_.set("2");

  EXPECT_TRUE(hc::listen_fds().empty());
}

// --- bind_with_retry ----------------------------------------------------------------

using BindWithRetry = ChildTest;

TEST_F(BindWithRetry, BindsAnEphemeralPortAndListens) {
  std::error_code ec = std::make_error_code(std::errc::io_error);  // must be cleared
  unique_fd fd(hc::bind_with_retry({"127.0.0.1", 0}, {}, ec));

  ASSERT_GE(fd.get(), 0) << ec.message();
  EXPECT_FALSE(ec);
  EXPECT_TRUE(has_cloexec(fd.get()));
  int listening = 0;
  socklen_t length = sizeof listening;
  ASSERT_EQ(::getsockopt(fd.get(), SOL_SOCKET, SO_ACCEPTCONN, &listening, &length), 0);
  EXPECT_EQ(listening, 1);
  EXPECT_NE(port_of(fd.get()), 0);
}

TEST_F(BindWithRetry, LocalhostIsTheIPv4Loopback) {
  std::error_code ec;
  unique_fd fd(hc::bind_with_retry({"localhost", 0}, {.attempts = 1}, ec));
  ASSERT_GE(fd.get(), 0) << ec.message();

  sockaddr_in addr{};
  socklen_t length = sizeof addr;
  ASSERT_EQ(::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &length), 0);
  EXPECT_EQ(addr.sin_family, AF_INET);
  EXPECT_EQ(ntohl(addr.sin_addr.s_addr), INADDR_LOOPBACK);
}

TEST_F(BindWithRetry, AnIPv6LiteralBindsAnIPv6Socket) {
  std::error_code ec;
  unique_fd fd(hc::bind_with_retry({"::1", 0}, {.attempts = 1}, ec));
  if (ec == std::errc::address_not_available || ec == std::errc::address_family_not_supported) {
    GTEST_SKIP() << "no IPv6 loopback here: " << ec.message();
  }
  ASSERT_GE(fd.get(), 0) << ec.message();

  sockaddr_in6 addr{};
  socklen_t length = sizeof addr;
  ASSERT_EQ(::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &length), 0);
  EXPECT_EQ(addr.sin6_family, AF_INET6);
  EXPECT_TRUE(IN6_IS_ADDR_LOOPBACK(&addr.sin6_addr));
  EXPECT_NE(port_of(fd.get()), 0);
}

TEST_F(BindWithRetry, SetsReuseAddressOnlyWhenAsked) {
  for (const bool reuse : {true, false}) {
    std::error_code ec;
    unique_fd fd(hc::bind_with_retry({"127.0.0.1", 0}, {.reuse_address = reuse}, ec));
    ASSERT_GE(fd.get(), 0) << ec.message();
    int value = -1;
    socklen_t length = sizeof value;
    ASSERT_EQ(::getsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &value, &length), 0);
    EXPECT_EQ(value != 0, reuse);
  }
}

TEST_F(BindWithRetry, GivesUpAfterExactlyAttemptsWhileThePortStaysTaken) {
  unique_fd blocker = listening_socket();
  const std::uint16_t port = port_of(blocker.get());
  bind_spy::watch(port);
  const hc::bind_policy policy{
      .attempts = 3, .initial_delay = 20ms, .max_delay = 1000ms, .jitter = false};

  std::error_code ec;
  const auto start = std::chrono::steady_clock::now();
  const int fd = hc::bind_with_retry({"127.0.0.1", port}, policy, ec);
  const auto elapsed = std::chrono::steady_clock::now() - start;

  EXPECT_EQ(fd, -1);
  EXPECT_EQ(ec, std::errc::address_in_use) << ec.message();
  EXPECT_EQ(bind_spy::calls, 3);
  EXPECT_GE(elapsed, 20ms + 40ms) << "backoff: 20 ms, then doubled to 40 ms";
}

TEST_F(BindWithRetry, BackoffStopsDoublingAtMaxDelay) {
  unique_fd blocker = listening_socket();
  const std::uint16_t port = port_of(blocker.get());
  bind_spy::watch(port);
  // Capped: 1 + 10 * 2 ms = 21 ms of sleep. Uncapped, the doubling would sleep
  // 1 + 2 + ... + 1024 ms = 2047 ms; the bound below leaves a 50x margin for slow CI.
  const hc::bind_policy policy{
      .attempts = 12, .initial_delay = 1ms, .max_delay = 2ms, .jitter = false};

  std::error_code ec;
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(hc::bind_with_retry({"127.0.0.1", port}, policy, ec), -1);
  const auto elapsed = std::chrono::steady_clock::now() - start;

  EXPECT_EQ(ec, std::errc::address_in_use);
  EXPECT_EQ(bind_spy::calls, 12);
  EXPECT_GE(elapsed, 21ms);
  EXPECT_LT(elapsed, 1500ms);
}

TEST_F(BindWithRetry, JitterStillMakesEveryAttempt) {
  unique_fd blocker = listening_socket();
  const std::uint16_t port = port_of(blocker.get());
  bind_spy::watch(port);
  const hc::bind_policy policy{
      .attempts = 4, .initial_delay = 5ms, .max_delay = 20ms, .jitter = true};

  std::error_code ec;
  EXPECT_EQ(hc::bind_with_retry({"127.0.0.1", port}, policy, ec), -1);
  EXPECT_EQ(ec, std::errc::address_in_use);
  EXPECT_EQ(bind_spy::calls, 4);
}

TEST_F(BindWithRetry, OneAttemptDoesNotSleep) {
  unique_fd blocker = listening_socket();
  const std::uint16_t port = port_of(blocker.get());
  bind_spy::watch(port);
  const hc::bind_policy policy{.attempts = 1, .initial_delay = 60s, .jitter = false};

  std::error_code ec;
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(hc::bind_with_retry({"127.0.0.1", port}, policy, ec), -1);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 30s) << "slept after the last attempt";
  EXPECT_EQ(ec, std::errc::address_in_use);
  EXPECT_EQ(bind_spy::calls, 1);
}

TEST_F(BindWithRetry, SucceedsOnceThePortIsReleasedBetweenAttempts) {
  unique_fd blocker = listening_socket();
  const std::uint16_t port = port_of(blocker.get());
  // The holder lets go right after the first failed bind, i.e. during the backoff.
  bind_spy::watch(port, [&] { blocker.reset(); });
  const hc::bind_policy policy{.attempts = 5, .initial_delay = 1ms, .jitter = false};

  std::error_code ec = std::make_error_code(std::errc::io_error);
  unique_fd fd(hc::bind_with_retry({"127.0.0.1", port}, policy, ec));

  ASSERT_GE(fd.get(), 0) << ec.message();
  EXPECT_FALSE(ec) << "a success must not report the earlier failure";
  EXPECT_EQ(port_of(fd.get()), port);
  EXPECT_EQ(bind_spy::calls, 2);
}

TEST_F(BindWithRetry, OtherErrorsAreReturnedAtOnce) {
  bind_spy::watch(0);
  const hc::bind_policy policy{.attempts = 5, .initial_delay = 60s};

  std::error_code ec;
  // 192.0.2.1 (TEST-NET-1) is no address of this host: EADDRNOTAVAIL, not retryable.
  EXPECT_EQ(hc::bind_with_retry({"192.0.2.1", 0}, policy, ec), -1);
  EXPECT_EQ(ec, std::errc::address_not_available) << ec.message();
  EXPECT_EQ(bind_spy::calls, 1);
}

TEST_F(BindWithRetry, RejectsInvalidInputWithoutBinding) {
  bind_spy::watch(0);
  for (const int attempts : {0, -1}) {
    std::error_code ec;
    EXPECT_EQ(hc::bind_with_retry({"127.0.0.1", 0}, {.attempts = attempts}, ec), -1);
    EXPECT_EQ(ec, std::errc::invalid_argument) << "attempts=" << attempts;
  }
  // The last: inet_pton() would stop at the NUL and read 127.0.0.1.
  const std::vector<std::string> bad_hosts{"", "not-an-address", "256.0.0.1", "127.0.0.1 ", "::1::2",
                                           "[::1", "example.com", std::string("127.0.0.1\0junk", 14)};
  for (const std::string& host : bad_hosts) {
    std::error_code ec;
    EXPECT_EQ(hc::bind_with_retry({host, 0}, {.attempts = 1}, ec), -1) << host;
    EXPECT_EQ(ec, std::errc::invalid_argument) << "host '" << host << "'";
  }
  EXPECT_EQ(bind_spy::calls, 0);
}

// --- local_port ---------------------------------------------------------------------

using LocalPort = ChildTest;

TEST_F(LocalPort, ReportsTheBoundPort) {
  unique_fd socket = listening_socket();
  sockaddr_in addr{};
  socklen_t length = sizeof addr;
  ASSERT_EQ(::getsockname(socket.get(), reinterpret_cast<sockaddr*>(&addr), &length), 0);

  std::error_code ec = std::make_error_code(std::errc::io_error);
  EXPECT_EQ(hc::local_port(socket.get(), ec), ntohs(addr.sin_port));
  EXPECT_FALSE(ec);
}

TEST_F(LocalPort, FailsForWhatIsNotABoundSocket) {
  pipe_pair pipe = make_pipe();
  std::error_code ec;
  EXPECT_EQ(hc::local_port(pipe.read.get(), ec), 0);
  EXPECT_EQ(ec, std::errc::not_a_socket);

  EXPECT_EQ(hc::local_port(-1, ec), 0);
  EXPECT_EQ(ec, std::errc::bad_file_descriptor);

  unique_fd unbound(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ec.clear();
  EXPECT_EQ(hc::local_port(unbound.get(), ec), 0);
  EXPECT_TRUE(ec) << "an unbound socket has no port";
}

// --- announce_on_fd -----------------------------------------------------------------

using AnnounceOnFd = ChildTest;

TEST_F(AnnounceOnFd, WritesThePortLineAndClosesTheFd) {
  pipe_pair pipe = make_pipe();
  EXPECT_FALSE(hc::announce_on_fd(pipe.write.get(), 1234));
  EXPECT_TRUE(closed_by_callee(pipe.write));
  EXPECT_EQ(read_to_eof(pipe.read.get()), "PORT=1234\n");
}

TEST_F(AnnounceOnFd, PortZeroMeansReadyWithoutAPort) {
  pipe_pair pipe = make_pipe();
  EXPECT_FALSE(hc::announce_on_fd(pipe.write.get(), 0));
  EXPECT_TRUE(closed_by_callee(pipe.write));
  EXPECT_EQ(read_to_eof(pipe.read.get()), "READY=1\n");
}

TEST_F(AnnounceOnFd, AGoneReaderIsAnErrorNotASignal) {
  // Our main() ignores SIGPIPE; a server does not: restore the default (death) here.
  struct sigaction default_action {};
  default_action.sa_handler = SIG_DFL;
  struct sigaction saved {};
  ASSERT_EQ(::sigaction(SIGPIPE, &default_action, &saved), 0);
  struct restore_sigpipe {
    struct sigaction action;
    ~restore_sigpipe() { ::sigaction(SIGPIPE, &action, nullptr); }
  } restore{saved};
  pipe_pair pipe = make_pipe();
  pipe.read.reset();
  sigset_t before;
  ASSERT_EQ(::pthread_sigmask(SIG_BLOCK, nullptr, &before), 0);

  // Without care this raises SIGPIPE and kills the test program.
  EXPECT_EQ(hc::announce_on_fd(pipe.write.get(), 80), std::errc::broken_pipe);
  EXPECT_TRUE(closed_by_callee(pipe.write));

  sigset_t pending;
  ASSERT_EQ(::sigpending(&pending), 0);
  EXPECT_EQ(sigismember(&pending, SIGPIPE), 0) << "a SIGPIPE was left pending";
  sigset_t after;
  ASSERT_EQ(::pthread_sigmask(SIG_BLOCK, nullptr, &after), 0);
  EXPECT_EQ(sigismember(&after, SIGPIPE), sigismember(&before, SIGPIPE))
      << "the signal mask was not restored";
}

TEST_F(AnnounceOnFd, RejectsANegativeFd) {
  EXPECT_EQ(hc::announce_on_fd(-1, 80), std::errc::bad_file_descriptor);
}

// --- notify -------------------------------------------------------------------------

using Notify = ChildTest;

TEST_F(Notify, SendsOneDatagramToASocketPath) {
  temp_dir dir;
  const std::string path = dir.file("notify.sock");
  unique_fd receiver = datagram_socket(path);

  EXPECT_FALSE(hc::notify(path, "READY=1\nSTATUS=warming up\n"));
  EXPECT_EQ(pending_datagram(receiver.get()), "READY=1\nSTATUS=warming up\n");
  EXPECT_EQ(pending_datagram(receiver.get()), "<none>");
}

TEST_F(Notify, AnAtSignMeansTheAbstractNamespace) {
  const std::string name = "@serve-harness/child_test/" + own_pid() + "/" +
                           std::to_string(std::chrono::steady_clock::now().time_since_epoch().count());
  unique_fd receiver = datagram_socket(name);

  EXPECT_FALSE(hc::notify(name, "READY=1\n"));
  EXPECT_EQ(pending_datagram(receiver.get()), "READY=1\n");
}

TEST_F(Notify, ReportsAMissingSocket) {
  temp_dir dir;
  EXPECT_EQ(hc::notify(dir.file("nobody-listens.sock"), "READY=1\n"),
            std::errc::no_such_file_or_directory);
}

TEST_F(Notify, RejectsEmptyAndOverlongPaths) {
  EXPECT_EQ(hc::notify("", "READY=1\n"), std::errc::invalid_argument);
  EXPECT_EQ(hc::notify("/tmp/" + std::string(200, 'x'), "READY=1\n"),
            std::errc::filename_too_long);
}

// --- announce_ready -----------------------------------------------------------------

using AnnounceReady = ChildTest;

TEST_F(AnnounceReady, UsesTheReadyFdAndUnsetsIt) {
  pipe_pair pipe = make_pipe();
  ready_fd_.set(std::to_string(pipe.write.get()));

  EXPECT_FALSE(hc::announce_ready(4321));
  EXPECT_TRUE(closed_by_callee(pipe.write));

  EXPECT_EQ(read_to_eof(pipe.read.get()), "PORT=4321\n");
  EXPECT_FALSE(env_is_set("HARNESS_READY_FD"));
}

TEST_F(AnnounceReady, PrefersTheReadyFdOverTheNotifySocket) {
  temp_dir dir;
  const std::string path = dir.file("notify.sock");
  unique_fd receiver = datagram_socket(path);
  notify_socket_.set(path);
  pipe_pair pipe = make_pipe();
  ready_fd_.set(std::to_string(pipe.write.get()));

  EXPECT_FALSE(hc::announce_ready(4321));
  EXPECT_TRUE(closed_by_callee(pipe.write));

  EXPECT_EQ(read_to_eof(pipe.read.get()), "PORT=4321\n");
  EXPECT_EQ(pending_datagram(receiver.get()), "<none>");
}

TEST_F(AnnounceReady, UsesTheNotifySocketWithThePort) {
  temp_dir dir;
  const std::string path = dir.file("notify.sock");
  unique_fd receiver = datagram_socket(path);
  notify_socket_.set(path);

  EXPECT_FALSE(hc::announce_ready(4321));
  EXPECT_EQ(pending_datagram(receiver.get()), "READY=1\nPORT=4321\n");

  EXPECT_FALSE(hc::announce_ready(0));
  EXPECT_EQ(pending_datagram(receiver.get()), "READY=1\n") << "port 0: no PORT line";
}

TEST_F(AnnounceReady, ReportsAnUnreachableNotifySocket) {
  temp_dir dir;
  notify_socket_.set(dir.file("nobody-listens.sock"));
  EXPECT_EQ(hc::announce_ready(80), std::errc::no_such_file_or_directory);
}

TEST_F(AnnounceReady, DoesNothingWhenNeitherIsSet) {
  EXPECT_FALSE(hc::announce_ready(4321));
  EXPECT_FALSE(env_is_set("HARNESS_READY_FD"));
  EXPECT_FALSE(env_is_set("NOTIFY_SOCKET"));
}

TEST_F(AnnounceReady, RejectsAMalformedReadyFd) {
  for (const char* value : {"abc", "-1", "3x", " 3", "99999999999999999999"}) {
    ready_fd_.set(value);
    EXPECT_EQ(hc::announce_ready(80), std::errc::invalid_argument) << value;
    EXPECT_FALSE(env_is_set("HARNESS_READY_FD")) << value;
  }
}

}  // namespace
