// Real servers with config files, scratch space and health commands: nginx, redis,
// memcached and postgres as Debian installs them (scripts/setup; postgres with
// scripts/setup --with-postgres). A test whose server is not installed is skipped.
//
// The session's private scratch directory is {dir}: `files` are rendered into it before
// every start attempt ({port}, {host} and {dir} filled in), the server keeps its pid
// file, data and sockets there, and it is removed after the test (kept when it fails).
#include <harness/gtest/gtest.hpp>

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "line_client.hpp"

namespace {

using namespace std::chrono_literals;
using harness::probe;
using harness::gtest::ExitedWith;
using harness::gtest::if_unavailable;

// A template from examples/servers/ (the `harness run --file` examples use the same files).
std::string server_template(const std::string& name) {
  std::ifstream in(std::string(EXAMPLE_SERVERS_DIR) + "/" + name);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

class RealServers : public harness::gtest::server_test {};

// nginx reads its port only from its config file: servers/nginx.conf.in becomes
// {dir}/nginx.conf, and -p {dir} keeps its pid file and temp files there.
TEST_F(RealServers, Nginx) {
  auto* nginx = start_server({
      .command = {"nginx", "-p", "{dir}", "-c", "{dir}/nginx.conf", "-e", "stderr"},
      .ready = {.probes = {probe::http("/health")}},  // any 2xx (here 204)
      .stop = {.steps = {{SIGQUIT, 5s}}},             // nginx's graceful stop, then SIGKILL
      .name = "nginx",
      .files = {{"nginx.conf", server_template("nginx.conf.in")}},
  }, if_unavailable::skip);  // skipped, with the reason, where nginx is not installed
  if (nginx == nullptr) return;

  EXPECT_EQ(example::http_get(nginx->port(), "/"), "hello\n");
  EXPECT_TRUE(std::filesystem::exists(nginx->dir() / "nginx.pid"));
  EXPECT_THAT(nginx->stop(), ExitedWith(0));  // SIGQUIT was enough
}

// redis from servers/redis.conf.in (port, bind address, dir {dir}, no persistence);
// ready when it answers PING (spoken by the harness itself: no redis-cli needed).
TEST_F(RealServers, Redis) {
  auto* redis = start_server({
      .command = {"redis-server", "{dir}/redis.conf"},
      .ready = {.probes = {probe::redis()}},
      .name = "redis",
      .files = {{"redis.conf", server_template("redis.conf.in")}},
  }, if_unavailable::skip);
  if (redis == nullptr) return;

  EXPECT_EQ(example::ask_line(redis->port(), "SET greeting hello\r\n"), "+OK");
  EXPECT_EQ(example::ask_line(redis->port(), "EXISTS greeting\r\n"), ":1");
}

// memcached takes everything on its command line; ready when it answers "version".
TEST_F(RealServers, Memcached) {
  auto* memcached = start_server({
      // -U 0: no UDP. -u nobody: as root, memcached must be told whom to run as
      // (ignored when not root).
      .command = {"memcached", "-l", "{host}", "-p", "{port}", "-U", "0", "-u", "nobody"},
      .ready = {.probes = {probe::memcached()}},
      .name = "memcached",
  }, if_unavailable::skip);
  if (memcached == nullptr) return;

  EXPECT_EQ(example::ask_line(memcached->port(), "set greeting 0 0 5\r\nhello\r\n"), "STORED");
}

// Where this machine's postgres programs are: /usr/lib/postgresql/<version>/bin (the
// newest version), or empty when postgres is not installed.
std::filesystem::path postgres_bin() {
  std::filesystem::path best;
  long best_version = -1;
  std::error_code ec;
  for (std::filesystem::directory_iterator it("/usr/lib/postgresql", ec), end; !ec && it != end;
       it.increment(ec)) {
    const long version = std::strtol(it->path().filename().c_str(), nullptr, 10);
    if (version > best_version && ::access((it->path() / "bin" / "postgres").c_str(), X_OK) == 0) {
      best = it->path() / "bin";
      best_version = version;
    }
  }
  return best;
}

// postgres needs initdb before it starts, and refuses to run as root. A start script,
// rendered into {dir} like a config file, does both: run as root, it hands {dir} to the
// postgres user and runs itself again as that user (setpriv execs, so the server is
// still the process the harness started). initdb runs once per session: a restart on a
// fresh port finds the data already there.
constexpr const char* postgres_start = R"sh(set -e
if [ "$(id -u)" = 0 ]; then
  chown -R postgres: {dir}
  exec setpriv --reuid=postgres --regid=postgres --init-groups -- /bin/sh "$0"
fi
if [ ! -f {dir}/data/PG_VERSION ]; then
  "$PG_BIN/initdb" -D {dir}/data -U postgres -A trust --no-sync --no-locale >{dir}/initdb.log
fi
exec "$PG_BIN/postgres" -D {dir}/data -h {host} -p {port} -k {dir} -c fsync=off
)sh";

TEST_F(RealServers, Postgres) {
  const std::filesystem::path bin = postgres_bin();
  if (bin.empty()) {
    GTEST_SKIP() << "postgres is not installed here (no /usr/lib/postgresql/*/bin/postgres); "
                    "scripts/setup --with-postgres installs it";
  }
  harness::server_spec spec{
      .command = {"/bin/sh", "{dir}/start.sh"},
      // Ready when pg_isready says it accepts connections (it exits 0), like a Docker
      // HEALTHCHECK. initdb counts against this deadline too.
      .ready = {.probes = {probe::command({(bin / "pg_isready").string(), "-h", "{host}", "-p", "{port}"})},
                .timeout = 60s},
      .env = {.set = {{"PG_BIN", bin.string()}}},
      .cwd = "{dir}",
      .stop = {.signal = SIGINT},  // postgres' "fast shutdown"; SIGTERM waits for clients
      .name = "postgres",
      .files = {{"start.sh", postgres_start}},
  };
  if (::geteuid() == 0) {
    // The postgres user must be able to reach {dir}: the default parent of scratch
    // directories is private to us (0700).
    spec.scratch.parent = std::filesystem::temp_directory_path() / "serve-harness-postgres";
    std::filesystem::create_directories(spec.scratch.parent);
    std::filesystem::permissions(spec.scratch.parent, std::filesystem::perms::owner_all |
                                                          std::filesystem::perms::group_exec |
                                                          std::filesystem::perms::others_exec);
  }
  auto* postgres = start_server(std::move(spec), if_unavailable::skip);
  if (postgres == nullptr) return;

  const std::string psql = (bin / "psql").string() + " -h " + postgres->host() + " -p " +
                           std::to_string(postgres->port()) + " -U postgres -tAc 'SELECT 6 * 7'";
  std::FILE* out = ::popen(psql.c_str(), "r");
  ASSERT_NE(out, nullptr);
  char answer[64] = {};
  const bool read = std::fgets(answer, sizeof answer, out) != nullptr;
  EXPECT_EQ(::pclose(out), 0) << psql;
  EXPECT_TRUE(read);
  EXPECT_STREQ(answer, "42\n");
  EXPECT_THAT(postgres->stop(), ExitedWith(0));
}

}  // namespace
