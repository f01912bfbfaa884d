#include "harness/lease.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <charconv>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <optional>
#include <random>

#include "harness/detail/lease_offer.hpp"
#include "harness/detail/lease_record.hpp"
#include "harness/detail/os/net.hpp"
#include "harness/detail/os/private_dir.hpp"
#include "harness/detail/os/proc_fs.hpp"
#include "harness/detail/os/unique_fd.hpp"

namespace harness {

namespace {

bool parse_u16(std::string_view s, std::uint16_t& out) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  unsigned v = 0;
  auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (r.ec != std::errc() || r.ptr != s.data() + s.size() || v > 65535) return false;
  out = static_cast<std::uint16_t>(v);
  return true;
}

std::string describe(const port_range& r) {
  return std::to_string(r.first) + "-" + std::to_string(r.last);
}

}  // namespace

result<port_range> parse_port_range(std::string_view text) {
  const auto dash = text.find('-');
  port_range r;
  if (dash == std::string_view::npos || !parse_u16(text.substr(0, dash), r.first) ||
      !parse_u16(text.substr(dash + 1), r.last)) {
    return make_failure(errc::bad_port_range,
                        "\"" + std::string(text) + "\" is not of the form LOW-HIGH (e.g. 20000-29999)");
  }
  if (r.first == 0) {
    return make_failure(errc::bad_port_range, "\"" + std::string(text) + "\": ports start at 1");
  }
  if (r.first > r.last) {
    return make_failure(errc::bad_port_range,
                        "\"" + std::string(text) + "\" is inverted (LOW must not exceed HIGH)");
  }
  return r;
}

port_range ephemeral_port_range() {
  port_range r{32768, 60999};
  std::ifstream in("/proc/sys/net/ipv4/ip_local_port_range");
  unsigned lo = 0, hi = 0;
  if (in >> lo >> hi && lo >= 1 && lo <= hi && hi <= 65535) {
    r = {static_cast<std::uint16_t>(lo), static_cast<std::uint16_t>(hi)};
  }
  return r;
}

std::string port_range_warning(const port_range& r) {
  std::string out;
  const port_range eph = ephemeral_port_range();
  if (r.first <= eph.last && eph.first <= r.last) {
    out = describe(r) + " overlaps the kernel's ephemeral range " + describe(eph) +
          " (net.ipv4.ip_local_port_range): the kernel may give those ports to any bind(0) or outgoing "
          "connection at any moment, which no lease can prevent, so a server can lose its port between the "
          "lease and its bind (a session then starts it again on another port)";
  }
  unsigned unprivileged = 1024;
  if (std::ifstream in("/proc/sys/net/ipv4/ip_unprivileged_port_start"); !(in >> unprivileged)) unprivileged = 1024;
  if (r.first < unprivileged) {
    out += std::string(out.empty() ? "" : "; ") + describe(r) + " reaches below " + std::to_string(unprivileged) +
           ": binding those ports needs privileges (servers not run as root fail with EACCES) and they belong "
           "to system services";
  }
  return out;
}

result<port_range> default_port_range() {
  if (const char* env = std::getenv("HARNESS_PORT_RANGE"); env != nullptr && *env != '\0') {
    auto r = parse_port_range(env);
    if (!r) {
      return make_failure(errc::bad_port_range, "HARNESS_PORT_RANGE: " + r.error().detail);
    }
    // Said once per process: the range is still used, as asked.
    static std::once_flag warned;
    std::call_once(warned, [&] {
      if (const auto w = port_range_warning(*r); !w.empty()) {
        const std::string line = "serve-harness: warning: HARNESS_PORT_RANGE " + w + "\n";
        (void)!::write(STDERR_FILENO, line.data(), line.size());
      }
    });
    return r;
  }
  const port_range eph = ephemeral_port_range();
  // Below the ephemeral range, from 20000 up (keeps clear of the well-known service
  // ports under 20000), when that leaves a useful pool.
  if (eph.first > 20000 + 1000) return port_range{20000, static_cast<std::uint16_t>(eph.first - 1)};
  // Otherwise the larger of the two gaps around the ephemeral range.
  const port_range below{1024, static_cast<std::uint16_t>(eph.first > 1024 ? eph.first - 1 : 1024)};
  const port_range above{static_cast<std::uint16_t>(eph.last < 65535 ? eph.last + 1 : 65535), 65535};
  const std::size_t below_size = eph.first > 1024 ? below.size() : 0;
  const std::size_t above_size = eph.last < 65535 ? above.size() : 0;
  if (below_size == 0 && above_size == 0) {
    return make_failure(errc::bad_port_range,
                        "the ephemeral range " + describe(eph) +
                            " leaves no ports for a pool; set HARNESS_PORT_RANGE");
  }
  return above_size > below_size ? above : below;
}

lease::lease(lease&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      claim_(std::exchange(other.claim_, -1)),
      port_(std::exchange(other.port_, 0)),
      path_(std::move(other.path_)) {}

lease& lease::operator=(lease&& other) noexcept {
  if (this != &other) {
    release();
    fd_ = std::exchange(other.fd_, -1);
    claim_ = std::exchange(other.claim_, -1);
    port_ = std::exchange(other.port_, 0);
    path_ = std::move(other.path_);
  }
  return *this;
}

namespace {

// The lock fds this process holds, for the fork handler. Lock-free: the handler runs in
// a fork()ed child, where a mutex may be held by a thread that does not exist there.
constexpr int max_held = 4096;
std::atomic<int> held_fds[max_held];

// In the child: each lock fd is replaced by /dev/null. That drops the child's hold on
// the lock (the parent's stays: it has its own fd), and the number stays valid, so a
// lease object the child later destroys closes /dev/null, not some other file.
void close_held_after_fork() {
  const int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  for (auto& slot : held_fds) {
    const int fd = slot.exchange(-1);
    if (fd < 0) continue;
    if (null < 0 || ::dup3(null, fd, O_CLOEXEC) < 0) ::close(fd);
  }
  if (null >= 0) ::close(null);
}

void remember_held(int fd) {
  static std::once_flag once;
  std::call_once(once, [] {
    for (auto& slot : held_fds) slot.store(-1);
    ::pthread_atfork(nullptr, nullptr, close_held_after_fork);
  });
  for (auto& slot : held_fds) {
    int empty = -1;
    if (slot.compare_exchange_strong(empty, fd)) return;
  }
}

void forget_held(int fd) {
  for (auto& slot : held_fds) {
    int expected = fd;
    if (slot.compare_exchange_strong(expected, -1)) return;
  }
}

}  // namespace

lease::lease(int fd, int claim, std::uint16_t port, std::filesystem::path path) noexcept
    : fd_(fd), claim_(claim), port_(port), path_(std::move(path)) {}

lease::~lease() { release(); }

void lease::release() noexcept {
  if (fd_ >= 0) {
    forget_held(fd_);
    ::close(fd_);  // drops the flock; the file stays
  }
  if (claim_ >= 0) {
    forget_held(claim_);
    ::close(claim_);  // frees the name
  }
  fd_ = claim_ = -1;
}

namespace {

void write_record(int fd, std::string_view note) {
  const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  const std::string text = detail::lease_record_text(::getpid(), now, note);
  // Only the lock holder writes. Write first, then cut the file to the new length:
  // truncating to zero first would make ext4 flush the file's data on every lease.
  // A reader may see a mix while we write; it reports what does not parse as unknown.
  if (::pwrite(fd, text.data(), text.size(), 0) == static_cast<ssize_t>(text.size())) {
    int ignored = ::ftruncate(fd, static_cast<off_t>(text.size()));
    (void)ignored;
  }
}

// Opens (creating if needed) a port's lock file without following symlinks, and
// refuses anything that is not a regular file of ours (a FIFO would block readers, a
// file of another user could be a trap).
detail::unique_fd open_lock_file(const std::filesystem::path& path) {
  detail::unique_fd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0600));
  if (!fd) return fd;
  struct stat st {};
  // One name only: a lock file hard-linked to a file elsewhere would get that file
  // overwritten by the record.
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != ::getuid() || st.st_nlink != 1) {
    errno = EPERM;
    return detail::unique_fd();
  }
  return fd;
}

// The abstract socket name that claims `port` in this network namespace.
std::string claim_name(std::uint16_t port) { return "serve-harness/port/" + std::to_string(port); }

// Binds the port's abstract name; EADDRINUSE when another lease (of any user, from any
// state directory) holds it. The fd is known to the fork handler before the name is
// bound, as the lock fds are.
detail::unique_fd claim_port(std::uint16_t port) {
  detail::unique_fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return fd;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::string name = claim_name(port);
  std::memcpy(addr.sun_path + 1, name.data(), name.size());  // sun_path[0] = '\0': abstract
  const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
  remember_held(fd.get());
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), len) != 0) {
    const int err = errno;
    forget_held(fd.get());
    fd.reset();
    errno = err;
  }
  return fd;
}

std::filesystem::path lock_path(const std::filesystem::path& dir, std::uint16_t port) {
  return dir / (std::to_string(port) + ".lock");
}

result<std::filesystem::path> pool_directory(const std::filesystem::path& given) {
  if (given.empty()) return detail::state_subdir("ports");
  if (auto ok = detail::ensure_private_dir(given); !ok) return std::move(ok).error();
  return given;
}

}  // namespace

result<lease> lease::try_acquire(const lease_options& options) {
  port_range range;
  if (options.range) {
    range = *options.range;
    if (range.first == 0 || range.first > range.last) {
      return make_failure(errc::bad_port_range, describe(range) + " is empty or inverted");
    }
  } else {
    auto r = default_port_range();
    if (!r) return std::move(r).error();
    range = *r;
  }
  auto dir = pool_directory(options.directory);
  if (!dir) return std::move(dir).error();
  auto probe_address = detail::net::parse_host(options.host, 0);
  if (!probe_address) return std::move(probe_address).error();

  // Start at a random place so that concurrent runners rarely race for one port.
  thread_local std::mt19937 rng(std::random_device{}());
  const std::size_t n = range.size();
  const std::size_t start = std::uniform_int_distribution<std::size_t>(0, n - 1)(rng);
  std::size_t held = 0, busy = 0, refused = 0, denied = 0;
  std::string last_refusal;
  for (std::size_t i = 0; i < n; ++i) {
    const auto port = static_cast<std::uint16_t>(range.first + (start + i) % n);
    const auto path = lock_path(*dir, port);
    detail::unique_fd fd = open_lock_file(path);
    if (!fd) {
      ++refused;
      last_refusal = path.string() + ": " + std::strerror(errno);
      continue;
    }
    // Known to the fork handler before it holds the lock: a fork() at any moment after
    // cannot leave the lock with the child.
    remember_held(fd.get());
    if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
      forget_held(fd.get());
      ++held;
      continue;
    }
    detail::unique_fd claim;
    if (options.network_wide) {
      claim = claim_port(port);
      if (!claim) {
        forget_held(fd.get());
        if (errno == EADDRINUSE) {
          ++held;  // leased from another state directory, or by another user
        } else {
          ++refused;
          last_refusal = "@" + claim_name(port) + ": " + std::strerror(errno);
        }
        continue;
      }
    }
    // Free on the host and on the wildcard of both families: a stranger on
    // 127.0.0.2:port or [::1]:port would take a wildcard-binding server's socket.
    if (const int err = detail::net::port_unavailable(*detail::net::parse_host(options.host, port)); err != 0) {
      forget_held(fd.get());  // somebody outside the pool uses it: leave it alone
      if (claim) forget_held(claim.get());
      if (err == EACCES) {
        ++denied;
      } else {
        ++busy;
      }
      continue;
    }
    write_record(fd.get(), options.note);
    const int claim_fd = claim.release();
    return lease(fd.release(), claim_fd, port, path);
  }
  std::string detail = "no free port in " + describe(range) + " on " + options.host + " (" +
                       std::to_string(held) + " leased by other sessions, " +
                       std::to_string(busy) + " in use by other programs";
  if (denied > 0) {
    detail += ", " + std::to_string(denied) +
              " not permitted (ports below net.ipv4.ip_unprivileged_port_start need privileges)";
  }
  if (refused > 0) {
    detail += ", " + std::to_string(refused) + " lock files refused, e.g. " + last_refusal;
  }
  detail += "); widen the pool with HARNESS_PORT_RANGE";
  return make_failure(errc::pool_exhausted, detail);
}

lease lease::acquire(const lease_options& options) { return try_acquire(options).value(); }

void lease::set_note(std::string_view note) {
  if (fd_ >= 0) write_record(fd_, note);
}

std::vector<std::uint16_t> claimed_ports(std::string_view proc_net_unix) {
  // "Num RefCount Protocol Flags Type St Inode Path" lines; an abstract name's path
  // starts with '@'.
  constexpr std::string_view prefix = " @serve-harness/port/";
  std::vector<std::uint16_t> out;
  while (!proc_net_unix.empty()) {
    const auto eol = proc_net_unix.find('\n');
    const std::string_view line = proc_net_unix.substr(0, eol);
    if (const auto at = line.find(prefix); at != std::string_view::npos) {
      std::uint16_t port = 0;
      if (parse_u16(line.substr(at + prefix.size()), port) && port != 0 &&
          std::find(out.begin(), out.end(), port) == out.end()) {
        out.push_back(port);
      }
    }
    if (eol == std::string_view::npos) break;
    proc_net_unix.remove_prefix(eol + 1);
  }
  return out;
}

namespace {
std::string slurp_proc_net_unix() { return detail::procfs::read_file("/proc/net/unix"); }
}  // namespace

namespace detail {

std::string lease_record_text(int pid, std::int64_t since, std::string_view note) {
  std::string text = "pid=" + std::to_string(pid) + "\nsince=" + std::to_string(since) + "\nnote=";
  for (char c : note) text.push_back(c == '\n' ? ' ' : c);
  text.push_back('\n');
  return text;
}

void parse_lease_record(std::string_view text, lease_record& rec) {
  while (!text.empty()) {
    auto eol = text.find('\n');
    auto line = text.substr(0, eol);
    if (line.rfind("pid=", 0) == 0) std::from_chars(line.data() + 4, line.data() + line.size(), rec.pid);
    if (line.rfind("since=", 0) == 0) {
      std::from_chars(line.data() + 6, line.data() + line.size(), rec.since);
    }
    if (line.rfind("note=", 0) == 0) rec.note = std::string(line.substr(5));
    if (eol == std::string_view::npos) break;
    text.remove_prefix(eol + 1);
  }
}

}  // namespace detail

result<std::vector<lease_record>> list_leases(const std::filesystem::path& directory) {
  auto dir = pool_directory(directory);
  if (!dir) return std::move(dir).error();
  std::vector<lease_record> out;
  DIR* d = ::opendir(dir->c_str());
  if (d == nullptr) return make_system_failure(errno, "opendir " + dir->string());
  while (const dirent* e = ::readdir(d)) {
    std::string_view name(e->d_name);
    if (name.size() <= 5 || name.substr(name.size() - 5) != ".lock") continue;
    lease_record rec;
    if (!parse_u16(name.substr(0, name.size() - 5), rec.port)) continue;
    const detail::unique_fd file(::open((*dir / std::string(name)).c_str(),
                                        O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
    if (!file) continue;
    const int fd = file.get();
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) continue;
    // Probe the lock without taking it for long: if we get it, nobody holds it.
    if (::flock(fd, LOCK_SH | LOCK_NB) == 0) {
      rec.held = false;
      ::flock(fd, LOCK_UN);
    } else {
      rec.held = true;
    }
    char buf[4096];
    const ssize_t len = ::pread(fd, buf, sizeof buf - 1, 0);
    detail::parse_lease_record(std::string_view(buf, len > 0 ? static_cast<std::size_t>(len) : 0), rec);
    out.push_back(std::move(rec));
  }
  ::closedir(d);
  // Ports claimed in this network namespace by leases this directory does not know
  // (another state directory, TMPDIR or user).
  for (const std::uint16_t port : claimed_ports(slurp_proc_net_unix())) {
    const bool known = std::any_of(out.begin(), out.end(),
                                   [&](const lease_record& r) { return r.port == port && r.held; });
    if (known) continue;
    out.erase(std::remove_if(out.begin(), out.end(), [&](const lease_record& r) { return r.port == port; }),
              out.end());
    lease_record rec;
    rec.port = port;
    rec.held = true;
    rec.note = "(leased from another state directory or by another user)";
    out.push_back(std::move(rec));
  }
  std::sort(out.begin(), out.end(),
            [](const lease_record& a, const lease_record& b) { return a.port < b.port; });
  return out;
}

}  // namespace harness

namespace harness::detail {

namespace {
std::mutex offered_m;
std::optional<lease> offered;
}  // namespace

void offer_lease(lease l) {
  std::lock_guard lock(offered_m);
  offered = std::move(l);
}

std::optional<lease> take_offered_lease(std::uint16_t port) {
  std::lock_guard lock(offered_m);
  if (!offered || offered->port() != port) return std::nullopt;
  std::optional<lease> l = std::move(offered);
  offered.reset();
  return l;
}

}  // namespace harness::detail
