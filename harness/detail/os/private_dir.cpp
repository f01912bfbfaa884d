#include "harness/detail/os/private_dir.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

namespace harness::detail {

result<void> ensure_private_dir(const std::filesystem::path& dir) {
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return make_failure(errc::unsafe_state_dir,
                        "cannot create " + dir.string() + ": " + std::strerror(errno));
  }
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    return make_failure(errc::unsafe_state_dir,
                        dir.string() + (err == ELOOP || err == ENOTDIR
                                            ? " is not a directory (or is a symlink)"
                                            : std::string(": ") + std::strerror(err)));
  }
  struct stat st {};
  const int rc = ::fstat(fd, &st);
  ::close(fd);
  if (rc != 0) return make_system_failure(errno, "fstat " + dir.string());
  if (st.st_uid != ::getuid()) {
    return make_failure(errc::unsafe_state_dir,
                        dir.string() + " is owned by uid " + std::to_string(st.st_uid) +
                            ", not by us (uid " + std::to_string(::getuid()) + ")");
  }
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 0777));
    // A shared directory (/tmp) must never be made private: point to one of your own.
    const bool shared = (st.st_mode & (S_ISVTX | S_IWOTH)) != 0;
    return make_failure(errc::unsafe_state_dir,
                        dir.string() + " has mode " + mode + "; it must be private (0700). " +
                            (shared ? "It is a shared directory: set HARNESS_STATE_DIR to a private directory of "
                                      "your own inside it, e.g. mkdir -m 700 " +
                                          (dir / ("serve-harness-" + std::to_string(::getuid()))).string()
                                    : "If it is yours alone: chmod 700 " + dir.string() +
                                          "; otherwise set HARNESS_STATE_DIR to a private directory"));
  }
  return {};
}

namespace {

std::filesystem::path default_location() {
  if (const char* v = std::getenv("HARNESS_STATE_DIR"); v != nullptr && *v != '\0') return v;
  if (const char* v = std::getenv("XDG_RUNTIME_DIR"); v != nullptr && *v == '/') {
    return std::filesystem::path(v) / "serve-harness";
  }
  const char* tmp = std::getenv("TMPDIR");
  std::filesystem::path base = (tmp != nullptr && *tmp == '/') ? tmp : "/tmp";
  return base / ("serve-harness-" + std::to_string(::getuid()));
}

}  // namespace

result<std::filesystem::path> state_dir() {
  static std::mutex m;
  static std::filesystem::path cached;
  std::lock_guard lock(m);
  if (!cached.empty()) return cached;
  auto dir = default_location();
  if (auto ok = ensure_private_dir(dir); !ok) return std::move(ok).error();
  cached = dir;
  return dir;
}

result<std::filesystem::path> state_subdir(std::string_view name) {
  auto base = state_dir();
  if (!base) return std::move(base).error();
  auto dir = *base / std::string(name);
  if (auto ok = ensure_private_dir(dir); !ok) return std::move(ok).error();
  return dir;
}

}  // namespace harness::detail
