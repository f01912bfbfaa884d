// The three port modes, and a real third-party server (Python's http.server).
#include <harness/gtest/gtest.hpp>

#include "line_client.hpp"

namespace {

using harness::port_mode;
using harness::probe;

class Modes : public harness::gtest::server_test {};

// lease: the harness leases a free port from the shared pool and puts it in {port}.
// If another program takes the port first, the harness notices and moves the server
// to a fresh port (session.attempts() tells the story).
TEST_F(Modes, Lease) {
  auto* s = start_server({.command = {EXAMPLE_SERVER, "--port={port}"}});
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->mode(), port_mode::lease);
  EXPECT_EQ(example::ping(s->port()), "pong: ping");
}

// announce: the server binds port 0 and reports the port it got: "PORT=<n>" on the
// fd named by HARNESS_READY_FD, or sd_notify over NOTIFY_SOCKET. Race-free.
TEST_F(Modes, AnnounceOverTheReadyFd) {
  auto* s = start_server({.command = {EXAMPLE_SERVER, "--port=0", "--announce=ready-fd"},
                          .port = {.mode = port_mode::announce}});
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(example::ping(s->port()), "pong: ping");
}

TEST_F(Modes, AnnounceOverNotify) {
  auto* s = start_server({.command = {EXAMPLE_SERVER, "--port=0", "--announce=notify"},
                          .port = {.mode = port_mode::announce}});
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(example::ping(s->port()), "pong: ping");
}

// inherit: the harness binds the socket and passes it as fd 3 (LISTEN_FDS=1), the way
// systemd socket activation does. Race-free; restart() keeps the very same socket.
TEST_F(Modes, Inherit) {
  auto* s = start_server({.command = {EXAMPLE_SERVER, "--listen-fds", "--serve=http"},
                          .port = {.mode = port_mode::inherit},
                          .ready = {.probes = {probe::http("/", 200)}}});
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(example::http_status_line(s->port()), "HTTP/1.1 200 OK");
}

// A server you did not write: Python's http.server binds port 0 and prints
//   Serving HTTP on 127.0.0.1 port 41235 (http://127.0.0.1:41235/) ...
// port_from picks the port out of that line. -u matters: without it Python buffers
// stdout when it is a pipe and the line arrives only when the buffer fills.
// Skipped (not failed) on a machine without python3.
TEST_F(Modes, PythonHttpServerAnnouncesItsPort) {
  auto* s = start_server({.command = {"python3", "-u", "-m", "http.server", "0", "--bind", "127.0.0.1"},
                          .port = {.mode = port_mode::announce,
                                   .port_from = R"(Serving HTTP on \S+ port (\d+))"},
                          .ready = {.probes = {probe::http("/", 200)}},
                          .name = "python-http"},
                         harness::gtest::if_unavailable::skip);
  if (s == nullptr) return;
  EXPECT_EQ(example::http_status_line(s->port()), "HTTP/1.0 200 OK");
  // What the server logged about our request is in its output.
  EXPECT_TRUE(s->output().wait_for_line(R"("GET / HTTP/1\.0" 200)", std::chrono::seconds(10)));
}

}  // namespace
