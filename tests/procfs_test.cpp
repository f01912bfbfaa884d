// /proc and netlink readers: parsers, listeners, and the process-tree scan.
#include <gtest/gtest.h>
#include <unistd.h>

#include <csignal>

#include <algorithm>
#include <set>

#include "harness/detail/os/proc_fs.hpp"
#include "harness/detail/os/proc_tree.hpp"
#include "harness/detail/os/proc_net.hpp"
#include "harness/process.hpp"
#include "support.hpp"

namespace {

using namespace std::chrono_literals;
namespace procfs = harness::detail::procfs;
namespace procnet = harness::detail::procnet;

TEST(ProcStat, ParsesTheFieldsWeUse) {
  auto s = procfs::parse_stat(
      "4242 (my server) S 1 4242 4200 0 -1 4194304 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10\n");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->pid, 4242);
  EXPECT_EQ(s->comm, "my server");
  EXPECT_EQ(s->state, 'S');
  EXPECT_EQ(s->ppid, 1);
  EXPECT_EQ(s->pgrp, 4242);
  EXPECT_EQ(s->session, 4200);
  EXPECT_EQ(s->start_time, 987654u);
}

TEST(ProcStat, CommMayHoldParenthesesAndSpaces) {
  auto s = procfs::parse_stat("7 (a) (b c)) Z 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 55 0 0\n");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->comm, "a) (b c)");
  EXPECT_EQ(s->state, 'Z');
  EXPECT_EQ(s->start_time, 55u);
}

TEST(ProcStat, RejectsGarbage) {
  for (const char* bad : {"", "12", "12 (x", "12 (x) S", "x (y) S 1 2 3 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5",
                          "12 (x) SS 1 2 3 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5"}) {
    EXPECT_FALSE(procfs::parse_stat(bad)) << bad;
  }
}

TEST(ProcStat, ReadsOurOwnProcess) {
  auto s = procfs::read_stat(::getpid());
  ASSERT_TRUE(s);
  EXPECT_EQ(s->pid, ::getpid());
  EXPECT_EQ(s->ppid, ::getppid());
  EXPECT_GT(s->start_time, 0u);
}

TEST(ProcNet, ParsesTheTcpTable) {
  const char* text =
      "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
      "   0: 0100007F:4E21 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1603 1 0 100 0 0 10 0\n"
      "   1: 0100007F:9C40 0100007F:4E21 01 00000000:00000000 00:00000000 00000000  1000        0 1777 1 0 20 4 30 10 -1\n"
      "   2: garbage line\n";
  auto rows = procnet::parse_tcp_table(text);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].local_port, 20001);
  EXPECT_EQ(rows[0].state, 0x0A);
  EXPECT_EQ(rows[0].inode, 1603u);
  EXPECT_EQ(rows[1].local_port, 40000);
  EXPECT_EQ(rows[1].uid, 1000u);
}

TEST(ProcNet, FindsOurListenerAndItsHolder) {
  auto block = harness_test::reserve_block(1);
  const auto port = block[0].port();
  const int fd = harness_test::listen_on(port);
  ASSERT_GE(fd, 0);
  const auto inodes = procnet::listening_inodes(port);
  ASSERT_EQ(inodes.size(), 1u);
  // The same inode is one of our own socket fds.
  const auto mine = procnet::socket_inodes(::getpid());
  EXPECT_NE(std::find(mine.begin(), mine.end(), inodes[0]), mine.end());
  // ...and the /proc/net/tcp table agrees with what netlink said.
  const auto table = procnet::parse_tcp_table(harness_test::read_text("/proc/net/tcp"));
  EXPECT_TRUE(std::any_of(table.begin(), table.end(), [&](const procnet::tcp_socket& s) {
    return s.local_port == port && s.state == 0x0A && s.inode == inodes[0];
  }));
  EXPECT_EQ(procnet::listener_owner(port, {::getpid()}), procnet::ownership::ours);
  EXPECT_EQ(procnet::listener_owner(port, {1}), procnet::ownership::foreign);
  EXPECT_NE(procnet::describe_holders(port).find("held by pid " + std::to_string(::getpid())),
            std::string::npos);
  ::close(fd);
  EXPECT_EQ(procnet::listener_owner(port, {::getpid()}), procnet::ownership::nobody);
  EXPECT_EQ(procnet::describe_holders(port), "nobody listens on port " + std::to_string(port));
}

TEST(ProcTree, TheTreeIsEverythingBelowTheSupervisorWithOrWithoutChildLists) {
  harness::process p = harness::process::spawn(
      {.argv = {harness_test::fixture_server(), "--port=0", "--serve=none", "--fork-child",
                "--fork-setsid", "--fork-daemon", "--announce-line=FORKS-DONE"}});
  std::set<int> expected{p.pid()};
  for (const char* tag : {"CHILD", "SETSID", "DAEMON"}) {
    auto line = p.output().wait_for_line(std::string("^") + tag + R"( (\d+)$)", 10s);
    ASSERT_TRUE(line) << line.error().message();
    expected.insert(std::stoi(line->groups[1]));
  }
  // The daemon prints its line while the middle process of its double fork may still be
  // exiting; the server prints this one after it has reaped that process.
  ASSERT_TRUE(p.output().wait_for_line("^FORKS-DONE$", 10s));
  auto tree = p.tree();
  EXPECT_EQ(std::set<int>(tree.begin(), tree.end()), expected);
  EXPECT_EQ(tree.front(), p.pid());

  // The /proc scan used on kernels without child lists finds the same processes.
  harness::detail::proctree::disable_child_lists_for_testing(true);
  auto scanned = p.tree();
  harness::detail::proctree::disable_child_lists_for_testing(false);
  EXPECT_EQ(std::set<int>(scanned.begin(), scanned.end()), expected);

  p.stop();
  EXPECT_TRUE(p.tree().empty());
  for (int pid : expected) EXPECT_NE(::kill(pid, 0), 0) << "pid " << pid << " outlived stop()";
}

TEST(ProcTree, ReadsStateParentAndStartTime) {
  // read_brief() on ourselves: state, parent and a start time.
  harness::detail::proctree::brief b;
  ASSERT_TRUE(harness::detail::proctree::read_brief(::getpid(), b));
  EXPECT_EQ(b.ppid, ::getppid());
  EXPECT_GT(b.start, 0u);
  EXPECT_FALSE(harness::detail::proctree::read_brief(0x3ffffff0, b));
}

}  // namespace
