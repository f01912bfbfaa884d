// Leases: the cross-process port pool.
#include "harness/lease.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <thread>

#include "harness/process.hpp"
#include "support.hpp"

namespace {

using namespace std::chrono_literals;
using harness_test::listen_on;
using harness_test::reserve_block;
using harness::errc;
using harness::lease;
using harness::port_range;

class LeaseTest : public testing::Test {
 protected:
  // A private pool carved out of a block this process leased: not claimed again
  // network-wide (the block's own leases hold those names).
  harness::lease_options opts(port_range r) { return {.range = r, .directory = dir_, .network_wide = false}; }
  const harness_test::temp_dir tmp_{"harness-lease-test"};
  const std::filesystem::path& dir_ = tmp_.path();
};

TEST_F(LeaseTest, HandsOutAPortOfTheRangeAndHoldsIt) {
  auto block = reserve_block(3);
  ASSERT_EQ(block.size(), 3u);
  const port_range r{block[0].port(), block[2].port()};
  lease l = lease::acquire(opts(r));
  EXPECT_GE(l.port(), r.first);
  EXPECT_LE(l.port(), r.last);
  struct stat st {};
  ASSERT_EQ(::stat(l.lock_file().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  const auto record = harness_test::read_text(l.lock_file().string());
  EXPECT_NE(record.find("pid=" + std::to_string(::getpid())), std::string::npos) << record;
}

TEST_F(LeaseTest, AHeldPortIsNotHandedOutTwice) {
  auto block = reserve_block(1);
  const port_range one{block[0].port(), block[0].port()};
  lease l = lease::acquire(opts(one));
  auto again = lease::try_acquire(opts(one));
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, errc::pool_exhausted);
  EXPECT_NE(again.error().message().find("1 leased by other sessions"), std::string::npos)
      << again.error().message();
  const auto file = l.lock_file();
  l.release();
  EXPECT_TRUE(std::filesystem::exists(file)) << "lock files are never deleted";
  auto after = lease::try_acquire(opts(one));
  ASSERT_TRUE(after) << after.error().message();
  EXPECT_EQ(after->port(), one.first);
}

TEST_F(LeaseTest, ConcurrentThreadsNeverShareAPort) {
  auto block = reserve_block(16);
  ASSERT_EQ(block.size(), 16u);
  const port_range r{block.front().port(), block.back().port()};
  std::mutex m;
  std::multiset<std::uint16_t> held;
  int violations = 0, acquired = 0;
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 200; ++i) {
        auto l = lease::try_acquire(opts(r));
        if (!l) continue;  // all 16 taken at this instant
        {
          std::lock_guard lock(m);
          ++acquired;
          if (held.count(l->port()) != 0) ++violations;
          held.insert(l->port());
        }
        std::this_thread::yield();
        std::lock_guard lock(m);
        held.erase(held.find(l->port()));
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(violations, 0);
  EXPECT_GT(acquired, 800);
}

TEST_F(LeaseTest, OtherProcessesLeaseAndAKilledHolderFreesAtOnce) {
  auto block = reserve_block(1);
  const port_range one{block[0].port(), block[0].port()};
  const std::string range = std::to_string(one.first) + "-" + std::to_string(one.last);
  harness::process holder =
      harness::process::spawn({.argv = {HARNESS_LEASE_HOLDER, dir_.string(), range}});
  auto line = holder.output().wait_for_line(R"(^PORT (\d+)$)", 10s);
  ASSERT_TRUE(line) << line.error().message() << holder.output().tail(harness::stream::err);
  EXPECT_EQ(std::stoi(line->groups[1]), one.first);
  // While it lives, nobody else gets the port...
  auto mine = lease::try_acquire(opts(one));
  ASSERT_FALSE(mine);
  EXPECT_EQ(mine.error().code, errc::pool_exhausted);
  auto listed = harness::list_leases(dir_);
  ASSERT_TRUE(listed);
  // (The list also has the ports other processes lease meanwhile, from other directories.)
  const auto it = std::find_if(listed->begin(), listed->end(),
                               [&](const harness::lease_record& r) { return r.port == one.first; });
  ASSERT_NE(it, listed->end());
  EXPECT_TRUE(it->held);
  EXPECT_EQ(it->pid, holder.pid());
  EXPECT_EQ(it->note, "lease-holder");
  // ...and the moment it is SIGKILLed, the kernel drops its lock: no cleanup needed.
  ASSERT_TRUE(holder.signal(SIGKILL));
  ASSERT_TRUE(holder.wait_for(10s));
  holder.stop();
  auto after = lease::try_acquire(opts(one));
  ASSERT_TRUE(after) << after.error().message();
  EXPECT_EQ(after->port(), one.first);
}

// A listener on another address of the port, or in the other family, takes a
// wildcard-binding server's socket (memcached, redis): such a port is never handed out.
TEST_F(LeaseTest, AListenerOnAnyAddressOrFamilyOfThePortIsSkipped) {
  struct stranger {
    const char* name;
    int family;
    const char* address;
  };
  const stranger cases[] = {{"127.0.0.2", AF_INET, "127.0.0.2"}, {"[::1]", AF_INET6, "::1"}};
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    auto block = reserve_block(1);
    ASSERT_EQ(block.size(), 1u);
    const std::uint16_t port = block[0].port();
    const int fd = harness_test::listen_on_address(c.family, c.address, port);
    if (fd < 0) {
      if (c.family == AF_INET6) continue;  // no IPv6 loopback on this machine
      FAIL() << "listen on " << c.name << ": " << std::strerror(errno);
    }
    auto r = lease::try_acquire(opts({port, port}));
    EXPECT_FALSE(r) << "port " << port << " handed out while " << c.name << " listens on it";
    if (!r) {
      EXPECT_NE(r.error().message().find("1 in use by other programs"), std::string::npos) << r.error().message();
    }
    ::close(fd);
    auto after = lease::try_acquire(opts({port, port}));
    EXPECT_TRUE(after) << after.error().message();
  }
}

// The lease domain is the network namespace: pools in different state directories
// (another TMPDIR, a sandbox per test) never hand out the same port at once.
TEST_F(LeaseTest, PoolsInDifferentDirectoriesNeverShareAPort) {
  const auto a = dir_ / "a", b = dir_ / "b";
  std::filesystem::create_directory(a);
  std::filesystem::create_directory(b);
  ::chmod(a.c_str(), 0700);
  ::chmod(b.c_str(), 0700);
  auto block = reserve_block(1);
  ASSERT_EQ(block.size(), 1u);
  const port_range one{block[0].port(), block[0].port()};
  lease first = lease::acquire({.range = one, .directory = a, .note = "first"});
  auto second = lease::try_acquire({.range = one, .directory = b});
  ASSERT_FALSE(second) << "port " << first.port() << " leased from two directories at once";
  EXPECT_EQ(second.error().code, errc::pool_exhausted);
  EXPECT_NE(second.error().message().find("1 leased by other sessions"), std::string::npos)
      << second.error().message();
  // Another process, another directory: the same.
  const std::string range = std::to_string(one.first) + "-" + std::to_string(one.last);
  harness::process holder = harness::process::spawn(
      {.argv = {HARNESS_LEASE_HOLDER, (dir_ / "c").string(), range, "network-wide"}});
  EXPECT_TRUE(holder.wait_for(10s)) << "lease-holder got a port leased from another directory";
  EXPECT_EQ(holder.status(), harness::exit_status::exited_with(1)) << holder.output().tail(harness::stream::err);
  // `harness ports` of directory b sees the lease from a.
  auto listed = harness::list_leases(b);
  ASSERT_TRUE(listed) << listed.error().message();
  const auto it = std::find_if(listed->begin(), listed->end(),
                               [&](const harness::lease_record& r) { return r.port == one.first; });
  ASSERT_NE(it, listed->end());
  EXPECT_TRUE(it->held);
  EXPECT_NE(it->note.find("another state directory"), std::string::npos) << it->note;
  // (That a released or killed holder's port can be leased again at once, from any
  // directory, is R07's and R01's: asserting it here would race every other test
  // process that leases from a state directory of its own.)
}

TEST(LeaseClaims, PortsAreReadFromProcNetUnix) {
  const std::string text =
      "Num       RefCount Protocol Flags    Type St Inode Path\n"
      "0000000000000000: 00000002 00000000 00010000 0001 01 12345 /run/systemd/notify\n"
      "0000000000000000: 00000002 00000000 00000000 0001 01 22222 @serve-harness/port/21042\n"
      "0000000000000000: 00000002 00000000 00000000 0001 01 22223 @serve-harness/port/21042\n"
      "0000000000000000: 00000002 00000000 00000000 0001 01 22224 @serve-harness/port/99999\n"
      "0000000000000000: 00000002 00000000 00000000 0001 01 22225 @serve-harness/port/0\n"
      "0000000000000000: 00000002 00000000 00000000 0001 01 22226 @serve-harness/port/\n"
      "0000000000000000: 00000002 00000000 00000000 0001 01 22227 @serve-harness/port/21043x\n"
      "0000000000000000: 00000002 00000000 00000000 0001 01 22228 @serve-harness/port/20001";
  EXPECT_EQ(harness::claimed_ports(text), (std::vector<std::uint16_t>{21042, 20001}));
  EXPECT_TRUE(harness::claimed_ports("").empty());
}

TEST(LeasePoolWarning, EphemeralAndPrivilegedRangesAreNamed) {
  const auto eph = harness::ephemeral_port_range();
  const auto inside = harness::port_range_warning({eph.first, static_cast<std::uint16_t>(eph.first + 10)});
  EXPECT_NE(inside.find("overlaps the kernel's ephemeral range"), std::string::npos) << inside;
  EXPECT_NE(inside.find("no lease can prevent"), std::string::npos) << inside;
  const auto low = harness::port_range_warning({80, 90});
  EXPECT_NE(low.find("needs privileges"), std::string::npos) << low;
  EXPECT_EQ(harness::port_range_warning(harness::default_port_range().value()), "");
}

TEST_F(LeaseTest, AForeignListenerIsSkippedAndLeftAlone) {
  auto block = reserve_block(2);
  ASSERT_EQ(block.size(), 2u);
  const int foreign = listen_on(block[0].port());
  ASSERT_GE(foreign, 0);
  const port_range both{block[0].port(), block[1].port()};
  for (int i = 0; i < 20; ++i) {
    lease l = lease::acquire(opts(both));
    EXPECT_EQ(l.port(), block[1].port());
  }
  const port_range only_foreign{block[0].port(), block[0].port()};
  auto none = lease::try_acquire(opts(only_foreign));
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, errc::pool_exhausted);
  EXPECT_NE(none.error().message().find("1 in use by other programs"), std::string::npos);
  // The foreign listener still works.
  const int client = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(block[0].port());
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::connect(client, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ::close(client);
  ::close(foreign);
}

TEST_F(LeaseTest, BadRanges) {
  EXPECT_EQ(harness::parse_port_range("20000-20010").value(), (port_range{20000, 20010}));
  for (const char* bad : {"", "-", "20000", "20010-20000", "0-10", "1-70000", "a-b", "1-2-3",
                          " 5 - x"}) {
    auto r = harness::parse_port_range(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code, errc::bad_port_range) << bad;
  }
  auto inverted = lease::try_acquire(opts({30010, 30000}));
  ASSERT_FALSE(inverted);
  EXPECT_EQ(inverted.error().code, errc::bad_port_range);
  auto empty = lease::try_acquire(opts({0, 0}));
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error().code, errc::bad_port_range);
  auto host = lease::try_acquire({.range = port_range{30000, 30001}, .host = "example.com",
                                  .directory = dir_});
  ASSERT_FALSE(host);
  EXPECT_EQ(host.error().code, errc::invalid_argument);
}

TEST_F(LeaseTest, PortRangeFromTheEnvironment) {
  ::setenv("HARNESS_PORT_RANGE", "21000-21999", 1);
  EXPECT_EQ(harness::default_port_range().value(), (port_range{21000, 21999}));
  ::setenv("HARNESS_PORT_RANGE", "21999-21000", 1);
  auto bad = harness::default_port_range();
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, errc::bad_port_range);
  EXPECT_NE(bad.error().message().find("HARNESS_PORT_RANGE"), std::string::npos);
  ::unsetenv("HARNESS_PORT_RANGE");
}

TEST(LeasePool, DefaultRangeIsOutsideTheEphemeralRange) {
  if (std::getenv("HARNESS_PORT_RANGE") != nullptr) GTEST_SKIP() << "HARNESS_PORT_RANGE is set";
  const auto eph = harness::ephemeral_port_range();
  const auto pool = harness::default_port_range().value();
  EXPECT_TRUE(pool.last < eph.first || pool.first > eph.last)
      << "pool " << pool.first << "-" << pool.last << " overlaps " << eph.first << "-" << eph.last;
  EXPECT_GE(pool.size(), 1000u);
}

// --- R9: the lock directory and files must be ours and plain -----------------------

TEST_F(LeaseTest, RefusesASymlinkedDirectory) {
  std::filesystem::create_directory(dir_ / "real", dir_);
  ::chmod((dir_ / "real").c_str(), 0700);
  std::filesystem::create_directory_symlink(dir_ / "real", dir_ / "link");
  auto r = lease::try_acquire({.range = port_range{30000, 30000}, .directory = dir_ / "link"});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::unsafe_state_dir);
  EXPECT_TRUE(std::filesystem::is_empty(dir_ / "real")) << "nothing may be created through it";
}

TEST_F(LeaseTest, RefusesAWorldWritableDirectory) {
  std::filesystem::create_directory(dir_ / "open");
  ::chmod((dir_ / "open").c_str(), 0777);
  auto r = lease::try_acquire({.range = port_range{30000, 30000}, .directory = dir_ / "open"});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::unsafe_state_dir);
  EXPECT_NE(r.error().message().find("0777"), std::string::npos) << r.error().message();
}

TEST_F(LeaseTest, NeverAdvisesMakingASharedDirectoryPrivate) {
  // A sticky, world-writable directory such as /tmp: the advice is a private directory
  // inside it, never "chmod 700" of the shared one.
  std::filesystem::create_directory(dir_ / "shared");
  ::chmod((dir_ / "shared").c_str(), 01777);
  auto r = lease::try_acquire({.range = port_range{30000, 30000}, .directory = dir_ / "shared"});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::unsafe_state_dir);
  EXPECT_EQ(r.error().message().find("chmod 700"), std::string::npos) << r.error().message();
  EXPECT_NE(r.error().message().find("mkdir -m 700"), std::string::npos) << r.error().message();
}

TEST_F(LeaseTest, ALockFileLinkedToAnotherFileIsLeftAlone) {
  // A lock file hard-linked to a file elsewhere: writing the record would overwrite it.
  std::filesystem::create_directory(dir_ / "pool");
  ::chmod((dir_ / "pool").c_str(), 0700);
  const auto outside = dir_ / "precious.txt";
  std::ofstream(outside) << "keep me\n";
  ASSERT_EQ(::link(outside.c_str(), (dir_ / "pool" / "30000.lock").c_str()), 0);
  auto r = lease::try_acquire({.range = port_range{30000, 30000}, .directory = dir_ / "pool"});
  EXPECT_FALSE(r) << "the linked lock file was used";
  EXPECT_EQ(harness_test::read_text(outside.string()), "keep me\n");
}

TEST_F(LeaseTest, RefusesADirectoryOfAnotherUser) {
  if (::getuid() != 0) GTEST_SKIP() << "needs root to create another user's directory";
  std::filesystem::create_directory(dir_ / "theirs");
  ::chmod((dir_ / "theirs").c_str(), 0700);
  ASSERT_EQ(::chown((dir_ / "theirs").c_str(), 65534, 65534), 0);
  auto r = lease::try_acquire({.range = port_range{30000, 30000}, .directory = dir_ / "theirs"});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::unsafe_state_dir);
}

TEST_F(LeaseTest, SkipsLockFilesThatAreFifosOrSymlinks) {
  auto block = reserve_block(3);
  ASSERT_EQ(block.size(), 3u);
  ::chmod(dir_.c_str(), 0700);
  const auto fifo = dir_ / (std::to_string(block[0].port()) + ".lock");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const auto victim = dir_ / "victim";
  std::ofstream(victim) << "untouched";
  std::filesystem::create_symlink(victim, dir_ / (std::to_string(block[1].port()) + ".lock"));
  for (int i = 0; i < 10; ++i) {
    lease l = lease::acquire(opts({block[0].port(), block[2].port()}));  // must not hang
    EXPECT_EQ(l.port(), block[2].port());
  }
  EXPECT_EQ(harness_test::read_text(victim.string()), "untouched");
  auto refused = lease::try_acquire(opts({block[0].port(), block[1].port()}));
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message().find("2 lock files refused"), std::string::npos)
      << refused.error().message();
}

}  // namespace

namespace {

TEST(LeaseFork, AForkedChildDropsItsCopyWithoutClosingAnythingElse) {
  // The child of a fork() (a death test) must not keep the lock, and the lease object
  // it inherited must not close an unrelated fd that reused the number.
  auto l = harness::lease::acquire();
  ASSERT_TRUE(l.valid());
  const pid_t child = ::fork();
  if (child == 0) {
    const int other = ::open("/dev/zero", O_RDONLY | O_CLOEXEC);
    l.release();  // closes what the fork handler left at the lease's number
    const bool other_open = ::fcntl(other, F_GETFD) >= 0;
    ::_exit(other_open ? 0 : 1);
  }
  ASSERT_GT(child, 0);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "the child's release closed another file";
  // The parent still holds the port.
  auto again = harness::lease::try_acquire({.range = harness::port_range{l.port(), l.port()}});
  EXPECT_FALSE(again) << "the child's release dropped the parent's lease";
}

}  // namespace
