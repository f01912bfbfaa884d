// `harness wait SPEC...`: each SPEC form ready at once, each made ready while the
// command runs, the timeout and its report, bad SPECs, IPv6, signals.
//
// Each test starts build/bin/harness through harness::process. A SPEC that becomes
// ready later is made ready only after `harness wait -v` has printed that it is not
// ready yet (a line of its output), never after a sleep.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>
#include <vector>

#include "harness/detail/os/net.hpp"
#include "harness/exit_status.hpp"
#include "harness/lease.hpp"
#include "harness/process.hpp"
#include "harness/session.hpp"
#include "harness/timeouts.hpp"
#include "support.hpp"

namespace {

using namespace std::chrono_literals;
using harness::exit_status;
using harness::stream;
using harness_test::fixture_server;
using harness_test::temp_dir;
using clock_type = std::chrono::steady_clock;

const std::string fx = fixture_server();

harness::process spawn_cli(std::vector<std::string> args) {
  args.insert(args.begin(), HARNESS_CLI);
  return harness::process::spawn(
      {.argv = std::move(args), .output = {.tail_bytes = 64 * 1024}, .name = "harness-wait"});
}

// A finished run of the CLI.
struct outcome {
  exit_status status{};
  std::string out{};
  std::string err{};
  std::chrono::milliseconds took{0};
};

std::ostream& operator<<(std::ostream& os, const outcome& o) {
  return os << o.status << " after " << o.took.count() << " ms\n--- stdout:\n"
            << o.out << "--- stderr:\n" << o.err;
}

// Waits (bounded) for the CLI to exit and collects everything it printed.
outcome finish(harness::process& p, clock_type::time_point started) {
  outcome o;
  if (!p.wait_for(60s)) ADD_FAILURE() << "harness wait did not exit within 60 s";
  o.status = p.stop();
  o.took = std::chrono::duration_cast<std::chrono::milliseconds>(clock_type::now() - started);
  EXPECT_TRUE(p.output().wait_closed(10s));
  o.out = p.output().tail(stream::out);
  o.err = p.output().tail(stream::err);
  return o;
}

outcome run_cli(std::vector<std::string> args) {
  const auto started = clock_type::now();
  harness::process p = spawn_cli(std::move(args));
  return finish(p, started);
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// Blocks until `harness wait -v` says `spec` is not ready (with `why`), and checks that
// it is still running then.
void await_not_ready(const harness::process& p, const std::string& spec, const std::string& why) {
  // The SPEC as a regular expression: every character escaped.
  std::string pattern = "^harness: not ready: ";
  for (const char c : spec + " \u2014 " + why) {
    if (std::strchr(".[]()\\^$*+?{}|/", c) != nullptr) pattern += '\\';
    pattern += c;
  }
  auto line = p.output().wait_for_line(pattern, 30s, {stream::err});
  ASSERT_TRUE(line) << line.error().message() << "\n" << p.output().tail(stream::err);
  ASSERT_TRUE(p.running()) << p.output().tail(stream::err);
}

// A TCP socket bound to an address of `family` on a port the kernel picks: it refuses
// connections until listen(); -1 when the family is not available.
int bound_socket(int family, const char* address) {
  auto at = harness::detail::net::parse_host(address, 0);
  if (!at) return -1;
  const int fd = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || ::bind(fd, at->get(), at->length) != 0) {
    if (fd >= 0) ::close(fd);
    return -1;
  }
  return fd;
}

std::uint16_t port_of(int fd) { return harness::detail::net::local_port(fd).value(); }

// A unix stream socket bound to `path`; listening when `listen` is true.
int unix_socket(const std::string& path, bool listen) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || (listen && ::listen(fd, 16) != 0)) {
    ::close(fd);
    return -1;
  }
  return fd;
}

void create_file(const std::filesystem::path& path) { std::ofstream(path) << "x\n"; }

// An HTTP fixture server on 127.0.0.1 (or `host`) answering 200 at / and 404 elsewhere.
harness::session http_server(const std::string& host = "127.0.0.1") {
  harness::server_spec spec{.command = {fx, "--port={port}", "--host={host}", "--serve=http"},
                            .ready = {.probes = {harness::probe::http("/")}}};
  spec.port.host = host;
  return harness::session::start(std::move(spec));
}

// --- each form, ready at once ------------------------------------------------------

TEST(WaitReady, TcpListener) {
  const int fd = harness_test::listen_on_address(AF_INET, "127.0.0.1", 0);
  ASSERT_GE(fd, 0);
  const std::string port = std::to_string(port_of(fd));
  const outcome o = run_cli({"wait", "tcp:127.0.0.1:" + port, "tcp:localhost:" + port});
  ::close(fd);
  EXPECT_EQ(o.status, exit_status::exited_with(0)) << o;
  EXPECT_EQ(o.out, "") << o;
  EXPECT_EQ(o.err, "") << "quiet without -v\n" << o;
}

TEST(WaitReady, HttpFixtureServer) {
  harness::session s = http_server();
  const std::string at = "127.0.0.1:" + std::to_string(s.port());
  const outcome o = run_cli({"wait", "http://" + at, "http://" + at + "/", "http://localhost:" +
                                                                              std::to_string(s.port()) + "/?q=1"});
  EXPECT_EQ(o.status, exit_status::exited_with(0)) << o;
  EXPECT_EQ(o.err, "") << o;
}

TEST(WaitReady, HttpAny2xxStatus) {
  harness::session s = harness::session::start(
      {.command = {fx, "--port={port}", "--serve=http", "--http-path=/health", "--http-status=204"},
       .ready = {.probes = {harness::probe::http("/health", 204)}}});
  const outcome o =
      run_cli({"wait", "-v", "http://127.0.0.1:" + std::to_string(s.port()) + "/health"});
  EXPECT_EQ(o.status, exit_status::exited_with(0)) << o;
  EXPECT_TRUE(contains(o.err, "harness: ready: http://127.0.0.1:")) << o;
  EXPECT_TRUE(contains(o.err, "harness: all ready after ")) << o;
}

TEST(WaitReady, UnixSocket) {
  temp_dir dir("harness-wait");
  const std::string path = (dir.path() / "s.sock").string();
  const int fd = unix_socket(path, true);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  const outcome o = run_cli({"wait", "unix:" + path});
  ::close(fd);
  EXPECT_EQ(o.status, exit_status::exited_with(0)) << o;
  EXPECT_EQ(o.err, "") << o;
}

TEST(WaitReady, FileOfAnyKind) {
  temp_dir dir("harness-wait");
  create_file(dir.path() / "f");
  ASSERT_EQ(::mkdir((dir.path() / "d").c_str(), 0700), 0);
  const outcome o = run_cli({"wait", "file:" + (dir.path() / "f").string(),
                             "file:" + (dir.path() / "d").string()});
  EXPECT_EQ(o.status, exit_status::exited_with(0)) << o;
  EXPECT_EQ(o.err, "") << o;
}

TEST(WaitReady, AllFormsInOneCommand) {
  temp_dir dir("harness-wait");
  harness::session s = http_server();
  const int tcp = harness_test::listen_on_address(AF_INET, "127.0.0.1", 0);
  ASSERT_GE(tcp, 0);
  const std::string sock = (dir.path() / "s.sock").string();
  const int unix_fd = unix_socket(sock, true);
  ASSERT_GE(unix_fd, 0);
  create_file(dir.path() / "f");
  const outcome o = run_cli({"wait", "--timeout", "20", "-v", "tcp:127.0.0.1:" + std::to_string(port_of(tcp)),
                             "http://127.0.0.1:" + std::to_string(s.port()) + "/",
                             "file:" + (dir.path() / "f").string(), "unix:" + sock});
  ::close(tcp);
  ::close(unix_fd);
  EXPECT_EQ(o.status, exit_status::exited_with(0)) << o;
  EXPECT_TRUE(contains(o.err, "harness: waiting up to ")) << o;
  for (const char* kind : {"ready: tcp:", "ready: http://", "ready: file:", "ready: unix:"}) {
    EXPECT_TRUE(contains(o.err, kind)) << kind << "\n" << o;
  }
  EXPECT_FALSE(contains(o.err, "not ready")) << o;
}

// --- made ready while the command waits -------------------------------------------

TEST(WaitLater, FileCreatedAfterTheStart) {
  temp_dir dir("harness-wait");
  const auto path = dir.path() / "go";
  const std::string spec = "file:" + path.string();
  const auto started = clock_type::now();
  harness::process p = spawn_cli({"wait", "-v", spec});
  await_not_ready(p, spec, "no such file or directory");
  create_file(path);
  const outcome o = finish(p, started);
  EXPECT_EQ(o.status, exit_status::exited_with(0)) << o;
  EXPECT_TRUE(contains(o.err, "harness: ready: " + spec)) << o;
}

TEST(WaitLater, TcpListenAfterTheStart) {
  const int fd = bound_socket(AF_INET, "127.0.0.1");
  ASSERT_GE(fd, 0);
  const std::string spec = "tcp:127.0.0.1:" + std::to_string(port_of(fd));
  const auto started = clock_type::now();
  harness::process p = spawn_cli({"wait", "-v", spec});
  await_not_ready(p, spec, "connection refused");
  ASSERT_EQ(::listen(fd, 16), 0);
  const outcome o = finish(p, started);
  ::close(fd);
  EXPECT_EQ(o.status, exit_status::exited_with(0)) << o;
  EXPECT_TRUE(contains(o.err, "harness: ready: " + spec)) << o;
}

TEST(WaitLater, UnixListenAfterTheStart) {
  temp_dir dir("harness-wait");
  const std::string path = (dir.path() / "s.sock").string();
  const std::string spec = "unix:" + path;
  const auto started = clock_type::now();
  harness::process p = spawn_cli({"wait", "-v", spec});
  await_not_ready(p, spec, "no such file or directory");
  const int fd = unix_socket(path, false);  // there, but not listening
  ASSERT_GE(fd, 0);
  await_not_ready(p, spec, "connection refused");
  ASSERT_EQ(::listen(fd, 16), 0);
  const outcome o = finish(p, started);
  ::close(fd);
  EXPECT_EQ(o.status, exit_status::exited_with(0)) << o;
  EXPECT_TRUE(contains(o.err, "harness: ready: " + spec)) << o;
}

TEST(WaitLater, HttpServerThatBindsOnAGoSignal) {
  temp_dir dir("harness-wait");
  const auto go = dir.path() / "go";
  // A port of the shared pool, bound by the fixture server only once `go` exists.
  harness::lease lease = harness::lease::acquire();
  const std::string port = std::to_string(lease.port());
  harness::process server = harness::process::spawn(
      {.argv = {fx, "--port=" + port, "--serve=http", "--wait-file=" + go.string()}, .name = "fixture"});
  const std::string spec = "http://127.0.0.1:" + port + "/";
  const auto started = clock_type::now();
  harness::process p = spawn_cli({"wait", "-v", spec});
  await_not_ready(p, spec, "connection refused");
  create_file(go);
  const outcome o = finish(p, started);
  EXPECT_EQ(o.status, exit_status::exited_with(0)) << o << server.output().tail(stream::err);
  EXPECT_TRUE(contains(o.err, "harness: ready: " + spec)) << o;
  EXPECT_TRUE(server.running());
  server.stop();
}

TEST(WaitLater, HttpNon2xxIsNotReady) {
  harness::session s = http_server();
  const std::string spec = "http://127.0.0.1:" + std::to_string(s.port()) + "/missing";
  const outcome o = run_cli({"wait", "--timeout", "0.3", spec});
  EXPECT_EQ(o.status, exit_status::exited_with(3)) << o;
  EXPECT_TRUE(contains(o.err, "  " + spec + " \u2014 answered 404\n")) << o;
}

// --- timeout ---------------------------------------------------------------------

TEST(WaitTimeout, ListsWhatIsNotReadyWithTheLastError) {
  temp_dir dir("harness-wait");
  const int refusing = bound_socket(AF_INET, "127.0.0.1");
  ASSERT_GE(refusing, 0);
  create_file(dir.path() / "there");
  const std::string tcp = "tcp:127.0.0.1:" + std::to_string(port_of(refusing));
  const std::string missing = "file:" + (dir.path() / "missing").string();
  const std::string there = "file:" + (dir.path() / "there").string();
  const std::string no_socket = "unix:" + (dir.path() / "there").string();
  const outcome o = run_cli({"wait", "--timeout", "0.3", tcp, missing, there, no_socket});
  ::close(refusing);
  EXPECT_EQ(o.status, exit_status::exited_with(3)) << o;
  // 0.3 s, times HARNESS_TIMEOUT_SCALE.
  EXPECT_TRUE(std::regex_search(o.err, std::regex("harness: timed out after [0-9.]+ s; 3 of 4 not ready:\n")))
      << o;
  if (harness::timeouts::scale() == 1.0) {
    EXPECT_TRUE(contains(o.err, "timed out after 0.3 s;")) << o;
  }
  EXPECT_TRUE(contains(o.err, "  " + tcp + " \u2014 connection refused\n")) << o;
  EXPECT_TRUE(contains(o.err, "  " + missing + " \u2014 no such file or directory\n")) << o;
  EXPECT_TRUE(contains(o.err, "  " + no_socket + " \u2014 not a socket\n")) << o;
  EXPECT_FALSE(contains(o.err, there + " \u2014")) << "a ready SPEC is not listed\n" << o;
  EXPECT_GE(o.took, 300ms * harness::timeouts::scale()) << o;
  EXPECT_EQ(o.out, "") << o;
}

// --- bad command lines -------------------------------------------------------------

TEST(WaitUsage, EveryKindOfBadSpecIsExit2WithTheReasonAndTheForms) {
  const std::string long_path = "unix:/tmp/" + std::string(120, 's');
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "does not start with tcp:, http://, file: or unix:"},
      {"localhost:80", "unknown kind 'localhost:'"},
      {"127.0.0.1:80", "unknown kind '127.0.0.1:'"},
      {"ftp://127.0.0.1:21", "unknown kind 'ftp:'"},
      {"TCP:127.0.0.1:80", "unknown kind 'TCP:'"},
      {"tcp:", "':PORT' is missing"},
      {"tcp:127.0.0.1", "':PORT' is missing"},
      {"tcp:127.0.0.1:", "the port is missing"},
      {"tcp::80", "the host is missing"},
      {"tcp:127.0.0.1:0", "the port must be 1..65535, not 0"},
      {"tcp:127.0.0.1:65536", "the port must be 1..65535, not 65536"},
      {"tcp:127.0.0.1:99999999999", "the port must be 1..65535, not 99999999999"},
      {"tcp:127.0.0.1:http", "the port 'http' is not a number"},
      {"tcp:127.0.0.1:-1", "the port '-1' is not a number"},
      {"tcp:127.0.0.1:80/", "the port '80/' is not a number"},
      {"tcp://127.0.0.1:80", "without '//'"},
      {"tcp:example.com:80", "not an IP address literal"},
      {"tcp:::1:80", "an IPv6 address goes in brackets: [::1]:PORT"},
      {"tcp:[::1:80", "the '[' of the host has no ']'"},
      {"tcp:[::1]", "':PORT' must follow [::1]"},
      {"tcp:[::1]80", "':PORT' must follow [::1]"},
      {"tcp:[127.0.0.1]:80", "brackets are only for IPv6 addresses"},
      {"tcp:[::g]:80", "not an IP address literal"},
      {"http:/health", "an http SPEC is a URL"},
      {"http://127.0.0.1", "':PORT' is missing"},
      {"http://127.0.0.1/health", "':PORT' is missing"},
      {"http://:80/", "the host is missing"},
      {"http://127.0.0.1:0/", "the port must be 1..65535"},
      {"http://user@127.0.0.1:80/", "not an IP address literal"},
      {"http://127.0.0.1:80/a b", "a space or a control character"},
      {"http://127.0.0.1:80/#top", "a fragment is never sent"},
      {"https://127.0.0.1:443/", "https is not supported"},
      {"file:", "the path is empty"},
      {"unix:", "the path is empty"},
      {"unix:@name", "abstract unix sockets"},
      {long_path, "a unix socket path has at most 107"},
  };
  for (const auto& [spec, reason] : cases) {
    const outcome o = run_cli({"wait", spec});
    EXPECT_EQ(o.status, exit_status::exited_with(2)) << spec << "\n" << o;
    EXPECT_TRUE(contains(o.err, "harness: bad SPEC '" + spec + "': ")) << spec << "\n" << o;
    EXPECT_TRUE(contains(o.err, reason)) << spec << ": expected \"" << reason << "\"\n" << o;
    EXPECT_TRUE(contains(o.err, "A SPEC is one of:\n  tcp:HOST:PORT")) << spec << "\n" << o;
    EXPECT_TRUE(contains(o.err, "Run 'harness wait --help' for more information.")) << o;
    EXPECT_EQ(o.out, "") << o;
  }
}

TEST(WaitUsage, NoSpecIsExit2) {
  const outcome o = run_cli({"wait"});
  EXPECT_EQ(o.status, exit_status::exited_with(2)) << o;
  EXPECT_TRUE(contains(o.err, "harness: no SPEC")) << o;
  EXPECT_TRUE(contains(o.err, "A SPEC is one of:")) << o;
  const outcome only_options = run_cli({"wait", "--timeout", "5", "-v"});
  EXPECT_EQ(only_options.status, exit_status::exited_with(2)) << only_options;
  EXPECT_TRUE(contains(only_options.err, "harness: no SPEC")) << only_options;
}

TEST(WaitUsage, ABadSpecAmongGoodOnesChecksNothing) {
  // The missing file would keep it waiting 30 s: every SPEC is parsed first.
  const outcome o = run_cli({"wait", "file:/nonexistent/harness-wait", "tcp:127.0.0.1:x"});
  EXPECT_EQ(o.status, exit_status::exited_with(2)) << o;
  EXPECT_TRUE(contains(o.err, "bad SPEC 'tcp:127.0.0.1:x'")) << o;
  EXPECT_LT(o.took, 20s) << o;
}

TEST(WaitUsage, BadTimeoutAndUnknownOptions) {
  for (const char* timeout : {"0", "-1", "abc", "1e9", "nan"}) {
    const outcome o = run_cli({"wait", "--timeout", timeout, "file:/"});
    EXPECT_EQ(o.status, exit_status::exited_with(2)) << timeout << "\n" << o;
    EXPECT_TRUE(contains(o.err, "harness: --timeout: ")) << timeout << "\n" << o;
  }
  const outcome unknown = run_cli({"wait", "--bogus", "file:/"});
  EXPECT_EQ(unknown.status, exit_status::exited_with(2)) << unknown;
  const outcome dash = run_cli({"wait", "file:/", "--", "x"});
  EXPECT_EQ(dash.status, exit_status::exited_with(2)) << dash;
}

TEST(WaitUsage, HelpShowsTheFormsAndTheExitStatuses) {
  const outcome o = run_cli({"wait", "--help"});
  EXPECT_EQ(o.status, exit_status::exited_with(0)) << o;
  for (const char* part : {"Usage: harness wait", "--timeout", "--verbose", "tcp:HOST:PORT",
                           "http://HOST:PORT[/PATH]", "file:PATH", "unix:PATH", "Exit status"}) {
    EXPECT_TRUE(contains(o.out, part)) << part << "\n" << o;
  }
  const outcome top = run_cli({"--help"});
  EXPECT_TRUE(contains(top.out, "wait")) << top;
  const outcome unknown = run_cli({"wiat"});
  EXPECT_TRUE(contains(unknown.err, "(commands: run, start, stop, ps, ports, who, gc, wait)")) << unknown;
}

// --- IPv6 --------------------------------------------------------------------------

TEST(WaitIpv6, BracketedLoopbackForTcpAndHttp) {
  const int fd = harness_test::listen_on_address(AF_INET6, "::1", 0);
  if (fd < 0) GTEST_SKIP() << "no IPv6 loopback here";
  const std::string tcp = "tcp:[::1]:" + std::to_string(port_of(fd));
  harness::session s = http_server("::1");
  const std::string http = "http://[::1]:" + std::to_string(s.port()) + "/";
  const outcome o = run_cli({"wait", "-v", tcp, http});
  ::close(fd);
  EXPECT_EQ(o.status, exit_status::exited_with(0)) << o;
  EXPECT_TRUE(contains(o.err, "ready: " + tcp)) << o;
  EXPECT_TRUE(contains(o.err, "ready: " + http)) << o;

  // And one that refuses: the same family, reported as such.
  const int refusing = bound_socket(AF_INET6, "::1");
  ASSERT_GE(refusing, 0);
  const std::string closed = "tcp:[::1]:" + std::to_string(port_of(refusing));
  const outcome t = run_cli({"wait", "--timeout", "0.2", closed});
  ::close(refusing);
  EXPECT_EQ(t.status, exit_status::exited_with(3)) << t;
  EXPECT_TRUE(contains(t.err, "  " + closed + " \u2014 connection refused\n")) << t;
}

// --- signals -----------------------------------------------------------------------

TEST(WaitSignals, InterruptedBySignalNIs128PlusN) {
  for (const int sig : {SIGINT, SIGTERM, SIGHUP}) {
    temp_dir dir("harness-wait");
    const std::string spec = "file:" + (dir.path() / "never").string();
    const auto started = clock_type::now();
    harness::process p = spawn_cli({"wait", "-v", spec});
    await_not_ready(p, spec, "no such file or directory");
    ASSERT_TRUE(p.signal(sig));
    const outcome o = finish(p, started);
    EXPECT_EQ(o.status, exit_status::exited_with(128 + sig)) << o;
    EXPECT_TRUE(contains(o.err, "harness: interrupted by " + harness::signal_name(sig) +
                                    "; 1 of 1 not ready:\n  " + spec))
        << o;
  }
}

}  // namespace
