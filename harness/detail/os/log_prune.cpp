#include "harness/detail/os/log_prune.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <mutex>
#include <set>
#include <system_error>
#include <thread>

#include "harness/detail/os/unique_fd.hpp"

#include "harness/timeouts.hpp"

namespace harness::detail {

namespace {

bool all_of(std::string_view s, bool (*pred)(char)) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!pred(c)) return false;
  }
  return true;
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_hex(char c) { return is_digit(c) || (c >= 'a' && c <= 'f'); }

std::chrono::hours keep_hours() {
  const char* v = std::getenv("HARNESS_LOG_KEEP_HOURS");
  if (v == nullptr || *v == '\0') return std::chrono::hours(24);
  char* end = nullptr;
  const long h = std::strtol(v, &end, 10);
  if (end == v || *end != '\0' || h < 0) return std::chrono::hours(24);
  return std::chrono::hours(h);
}

}  // namespace

bool is_harness_log_name(std::string_view name) {
  // <name>-<pid>-<12 hex>-<n>.log, where <name> may itself contain dashes.
  if (name.size() < 4 || name.substr(name.size() - 4) != ".log") return false;
  name.remove_suffix(4);
  const auto d3 = name.rfind('-');
  if (d3 == std::string_view::npos || !all_of(name.substr(d3 + 1), is_digit)) return false;
  name = name.substr(0, d3);
  const auto d2 = name.rfind('-');
  if (d2 == std::string_view::npos) return false;
  const auto token = name.substr(d2 + 1);
  if (token.size() != 12 || !all_of(token, is_hex)) return false;
  name = name.substr(0, d2);
  const auto d1 = name.rfind('-');
  return d1 != std::string_view::npos && d1 > 0 && all_of(name.substr(d1 + 1), is_digit);
}

std::size_t prune_logs(const std::filesystem::path& dir, std::chrono::hours max_age) {
  std::size_t removed = 0;
  std::error_code ec;
  const auto cutoff = std::filesystem::file_time_type::clock::now() - max_age;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const auto name = it->path().filename().string();
    if (!is_harness_log_name(name)) continue;
    std::error_code e;
    if (!it->is_regular_file(e) || e) continue;
    const auto written = it->last_write_time(e);
    if (e || written >= cutoff) continue;
    if (std::filesystem::remove(it->path(), e) && !e) ++removed;
  }
  return removed;
}

void prune_logs_in_background(const std::filesystem::path& dir) {
  const auto max_age = keep_hours();
  if (max_age.count() == 0) return;
  // Once per directory per process, and once an hour per directory across processes.
  static std::mutex m;
  static std::set<std::filesystem::path> seen;
  {
    std::lock_guard lock(m);
    if (!seen.insert(dir).second) return;
  }
  const auto stamp = dir / ".pruned";
  struct stat st {};
  if (::stat(stamp.c_str(), &st) == 0 && ::time(nullptr) - st.st_mtime < 3600) return;
  // Never blocks (a FIFO put there opens with ENXIO) and never writes through a link: the
  // stamp must be a regular file of ours with one name; only its time is touched.
  const unique_fd fd(::open(stamp.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0600));
  if (!fd) return;
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != ::getuid() || st.st_nlink != 1) return;
  try {
    std::thread([dir, max_age] { prune_logs(dir, max_age); }).detach();
  } catch (const std::system_error&) {
    return;  // no thread to be had now (RLIMIT_NPROC, say): pruning waits for the next spawn
  }
  ::futimens(fd.get(), nullptr);
}

}  // namespace harness::detail
