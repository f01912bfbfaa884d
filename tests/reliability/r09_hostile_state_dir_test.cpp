// R9: the lock/state directory is a symlink, world- or group-writable, owned by another
// user, not a directory at all, or a link to a shared sticky directory; lock files are
// FIFOs, symlinks or hard links to a file elsewhere, another user's, or directories. Each
// is refused (errc::unsafe_state_dir, or the lock file skipped) or a fresh private
// directory is used; nothing outside is touched (a snapshot of a decoy directory, the
// usual target of such links, is compared before and after); nothing hangs.
//
// Leases are taken in this process (lease_options::directory). Whole runners are started
// with HARNESS_STATE_DIR pointing at such a layout (the state directory is resolved once
// per process), their servers' logs going there too.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <functional>
#include <random>

#include "battery.hpp"
#include "harness/lease.hpp"
#include "harness/process.hpp"

namespace {

using namespace std::chrono_literals;
using harness::errc;
namespace fs = std::filesystem;

constexpr uid_t other_uid = 4242;

// Everything below `dir`, without following links: names, types, modes, owners, and the
// contents of regular files.
std::string snapshot(const fs::path& dir) {
  std::string out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    struct stat st {};
    if (::lstat(e.path().c_str(), &st) != 0) continue;
    out += e.path().string() + " " + std::to_string(st.st_mode) + " " + std::to_string(st.st_uid) + " " +
           std::to_string(st.st_nlink);
    if (S_ISREG(st.st_mode)) out += " [" + harness_test::read_text(e.path().string()) + "]";
    out += "\n";
  }
  return out;
}

// A scratch root with the decoy directory `outside` (a private directory of ours with a
// file in it): what hostile links point at.
struct scene {
  harness_test::temp_dir root{"harness-r09"};
  fs::path outside = root.path() / "outside";
  fs::path decoy = outside / "decoy";
  std::string before;

  explicit scene(unsigned token) {
    fs::create_directory(outside);
    ::chmod(outside.c_str(), 0700);
    std::ofstream(decoy) << "keep me " << token << "\n";
  }
  // Once the hostile layout is in place (a hard link changes the decoy's link count).
  void take_snapshot() { before = snapshot(outside); }
  void expect_untouched() const { EXPECT_EQ(snapshot(outside), before) << "something outside was touched"; }
};

bool root() { return ::geteuid() == 0; }

// Makes `dir` in one of the hostile ways; returns its name. Only ways that need not be
// root, unless we are.
std::string make_hostile_dir(const fs::path& dir, const scene& s, std::mt19937& rng) {
  for (;;) {
    switch (rng() % 6) {
      case 0:
        fs::create_directory_symlink(s.outside, dir);
        return "a symlink to a private directory";
      case 1:
        fs::create_directory(dir);
        ::chmod(dir.c_str(), 0777);
        return "world-writable";
      case 2:
        fs::create_directory(dir);
        ::chmod(dir.c_str(), 0770);
        return "group-writable";
      case 3:
        if (!root()) continue;
        fs::create_directory(dir);
        ::chmod(dir.c_str(), 0700);
        if (::chown(dir.c_str(), other_uid, other_uid) != 0) continue;
        return "another user's";
      case 4:
        std::ofstream(dir) << "not a directory\n";
        return "a regular file";
      default: {
        const auto shared = s.root.path() / "shared";
        fs::create_directory(shared);
        ::chmod(shared.c_str(), 01777);
        fs::create_directory_symlink(shared, dir);
        return "a symlink to a shared sticky directory";
      }
    }
  }
}

// Makes the lock file of `port` in `dir` hostile; returns how.
std::string make_hostile_lock(const fs::path& dir, std::uint16_t port, const scene& s, std::mt19937& rng) {
  const auto lock = dir / (std::to_string(port) + ".lock");
  for (;;) {
    switch (rng() % 5) {
      case 0:
        ::mkfifo(lock.c_str(), 0600);
        return "a FIFO";
      case 1:
        fs::create_symlink(s.decoy, lock);
        return "a symlink to the decoy";
      case 2:
        fs::create_hard_link(s.decoy, lock);
        return "a hard link to the decoy";
      case 3: {
        if (!root()) continue;
        std::ofstream(lock) << "pid=1\n";
        ::chmod(lock.c_str(), 0600);
        if (::chown(lock.c_str(), other_uid, other_uid) != 0) continue;
        return "another user's file";
      }
      default:
        fs::create_directory(lock);
        return "a directory";
    }
  }
}

TEST(R09, HostileLockDirectoriesAndLockFilesAreRefusedAndNothingOutsideIsTouched) {
  const auto block = harness_test::reserve_block(4);
  ASSERT_EQ(block.size(), 4u);
  const harness::port_range range{block.front().port(), block.back().port()};
  const unsigned seed = harness_test::test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);

  harness_test::bounded_rounds(120, 10s, 12, [&](int round) {
    scene s(rng());
    const auto pool = s.root.path() / "pool";
    std::string what;
    bool expect_refused = true;
    std::vector<std::uint16_t> hostile;
    if (rng() % 2 == 0) {
      what = "pool directory " + make_hostile_dir(pool, s, rng);
    } else {
      fs::create_directory(pool);
      ::chmod(pool.c_str(), 0700);
      for (std::uint16_t p = range.first; p <= range.last; ++p) {
        if (rng() % 3 == 0) continue;
        what += std::to_string(p) + ".lock " + make_hostile_lock(pool, p, s, rng) + "; ";
        hostile.push_back(p);
      }
      expect_refused = false;
    }
    SCOPED_TRACE("round " + std::to_string(round) + ": " + what);
    s.take_snapshot();

    const auto t0 = harness_test::steady_clock::now();
    for (int i = 0; i < 3; ++i) {
      auto l = harness::lease::try_acquire({.range = range, .directory = pool});
      if (expect_refused) {
        ASSERT_FALSE(l) << "leased port " << l->port() << " from a hostile directory";
        EXPECT_EQ(l.error().code, errc::unsafe_state_dir) << l.error().message();
      } else if (hostile.size() == range.size()) {
        ASSERT_FALSE(l) << "leased port " << l->port() << " through a hostile lock file";
        EXPECT_EQ(l.error().code, errc::pool_exhausted) << l.error().message();
        EXPECT_NE(l.error().message().find("lock files refused"), std::string::npos) << l.error().message();
      } else {
        ASSERT_TRUE(l) << l.error().message();
        EXPECT_EQ(std::count(hostile.begin(), hostile.end(), l->port()), 0)
            << "leased " << l->port() << " through its hostile lock file";
      }
    }
    EXPECT_LT(harness_test::steady_clock::now() - t0, 5s) << "a lease hung on a hostile file";
    s.expect_untouched();
  });
}

// The state directory itself (HARNESS_STATE_DIR), or its ports/ or logs/, is hostile:
// a runner's start fails at once naming it; or the lock files are FIFOs and the runner
// uses another port; or it does not exist and is made private and used.
TEST(R09, ARunnerWithAHostileStateDirectoryFailsAtOnceOrUsesAPrivateOne) {
  const auto block = harness_test::reserve_block(3);
  ASSERT_EQ(block.size(), 3u);
  const std::string range = std::to_string(block.front().port()) + "-" + std::to_string(block.back().port());
  const unsigned seed = harness_test::test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);

  harness_test::bounded_rounds(30, 12s, 6, [&](int round) {
    scene s(rng());
    const auto state = s.root.path() / "state";
    std::string what;
    bool refused = true;
    bool fifos = false;
    switch (rng() % 5) {
      case 0:
        what = "state directory " + make_hostile_dir(state, s, rng);
        break;
      case 1:
      case 2: {
        fs::create_directory(state);
        ::chmod(state.c_str(), 0700);
        const char* sub = rng() % 2 == 0 ? "ports" : "logs";
        what = std::string(sub) + "/ " + make_hostile_dir(state / sub, s, rng);
        break;
      }
      case 3:
        fs::create_directory(state);
        ::chmod(state.c_str(), 0700);
        fs::create_directory(state / "ports");
        ::chmod((state / "ports").c_str(), 0700);
        ::mkfifo((state / "ports" / (std::to_string(block[0].port()) + ".lock")).c_str(), 0600);
        ::mkfifo((state / "ports" / (std::to_string(block[1].port()) + ".lock")).c_str(), 0600);
        what = "two lock files are FIFOs";
        refused = false;
        fifos = true;
        break;
      default:
        what = "no state directory yet";
        refused = false;
        break;
    }
    SCOPED_TRACE("round " + std::to_string(round) + ": " + what);
    s.take_snapshot();
    harness::process runner = harness::process::spawn(
        {.argv = {HARNESS_SERVER_RUNNER, harness_test::fixture_server(), "--port={port}"},
         .env = {.unset = {"HARNESS_LOG_DIR"},
                 .set = {{"HARNESS_STATE_DIR", state.string()}, {"HARNESS_PORT_RANGE", range}}}});
    auto end = runner.output().wait_for_line("^(READY|FAILED 0)$", 10s);
    ASSERT_TRUE(end) << "the runner neither started nor failed within 10 s: " << end.error().message() << "\n"
                     << runner.output().tail(harness::stream::err);
    if (refused) {
      EXPECT_EQ(end->groups[1], "FAILED 0");
      EXPECT_EQ(runner.wait_for(10s), harness::exit_status::exited_with(1));
      // (stderr is a pipe of its own: read to its end before looking.)
      EXPECT_TRUE(runner.output().wait_closed(10s));
      EXPECT_NE(runner.output().tail(harness::stream::err).find("unsafe state directory"), std::string::npos)
          << runner.output().tail(harness::stream::err);
    } else {
      ASSERT_EQ(end->groups[1], "READY") << runner.output().tail(harness::stream::err);
      const auto ports = harness_test::runner_ports(runner);
      ASSERT_EQ(ports.size(), 1u);
      if (fifos) {
        EXPECT_EQ(ports[0], block[2].port()) << "not the one port whose lock file is a plain file";
      } else {
        EXPECT_TRUE(ports[0] >= block.front().port() && ports[0] <= block.back().port()) << ports[0];
      }
      struct stat st {};
      ASSERT_EQ(::lstat(state.c_str(), &st), 0);
      EXPECT_TRUE(S_ISDIR(st.st_mode) && (st.st_mode & 0777) == 0700 && st.st_uid == ::getuid())
          << "the state directory is not private: mode " << (st.st_mode & 07777);
    }
    runner.stop();
    s.expect_untouched();
  });
}

}  // namespace
