// harness/collision.hpp — recognising "address already in use" in a server's output.
//
// In lease mode a server may still lose its port (to a program that does not use the
// pool). The session looks for that structurally first (the child exited and the
// port is held by another process; the listener on the port is not in the child's
// tree), and second through this classifier, which knows how the common ecosystems
// word the error:
//
//   auto c = harness::collision_classifier::make().value();
//   c.classify("OSError: [Errno 98] Address already in use");   // "python"
//   c.classify("listening on 8080");                             // nullopt
//
// Add your own with extra patterns (checked before the built-in ones):
//   harness::collision_classifier::make({{"myserver", R"(port \d+ is busy)"}});
//
// Patterns are case-sensitive Perl-style regular expressions searched anywhere in a
// line; the first and the last 4096 bytes of a line are looked at. A session then takes a
// matching line as its port being taken unless the line names ports only in forms that
// leave no doubt ("port 11211", "127.0.0.1:8080", "*:6379", "[::]:8080", ":::8080") and
// none of them is the session's (memcached's fixed UDP port, say); this applies to
// your patterns too.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "harness/error.hpp"

namespace harness {

struct collision_pattern {
  std::string ecosystem{};  // a label for messages ("python", "nginx", ...)
  std::string regex{};
};

namespace detail {
class regex;
}

class collision_classifier {
 public:
  // The built-in patterns, most specific first.
  static const std::vector<collision_pattern>& builtin();

  // The built-in table plus `extra` (checked first). errc::bad_pattern names a bad one.
  [[nodiscard]] static result<collision_classifier> make(
      const std::vector<collision_pattern>& extra = {});

  // The ecosystem whose port-in-use message `line` is, or nullopt.
  [[nodiscard]] std::optional<std::string> classify(std::string_view line) const;

  collision_classifier(const collision_classifier&);
  collision_classifier(collision_classifier&&) noexcept;
  collision_classifier& operator=(const collision_classifier&);
  collision_classifier& operator=(collision_classifier&&) noexcept;
  ~collision_classifier();

 private:
  struct entry;
  collision_classifier();
  std::vector<entry> entries_;
};

}  // namespace harness
