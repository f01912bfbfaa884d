// Private: stopping an owner (process, session) where nothing may escape: destructors
// and move-assignment over a live object.
#pragma once

namespace harness::detail {

template <class Owner>
void stop_quietly(Owner& owner) noexcept {
  try {
    owner.stop();
  } catch (...) {
    // stop() does not throw by design; never let anything out of a noexcept path.
  }
}

}  // namespace harness::detail
