// Private: the per-user state directory (leases, logs, shared-server state).
//
// Location: $HARNESS_STATE_DIR when set; else $XDG_RUNTIME_DIR/serve-harness when
// XDG_RUNTIME_DIR is set; else <$TMPDIR or /tmp>/serve-harness-<uid>.
// Each directory is created 0700 and then checked through an O_NOFOLLOW handle: it
// must be a real directory (not a symlink), owned by us, with no group/other access.
// Anything else is refused with errc::unsafe_state_dir; nothing is chmod'ed, moved
// or deleted to "fix" it.
#pragma once

#include <filesystem>
#include <string_view>

#include "harness/error.hpp"

namespace harness::detail {

// The state directory, created and checked (the result is cached per process only
// when it succeeded).
result<std::filesystem::path> state_dir();

// <state_dir>/<name>, created and checked the same way.
result<std::filesystem::path> state_subdir(std::string_view name);

// Creates `dir` (one level) with mode 0700 if missing and checks it as above.
result<void> ensure_private_dir(const std::filesystem::path& dir);

}  // namespace harness::detail
