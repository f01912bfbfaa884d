#include "harness/collision.hpp"

#include <algorithm>
#include <cctype>

#include "harness/detail/text/regex.hpp"

namespace harness {

struct collision_classifier::entry {
  std::string ecosystem;
  detail::regex re;
  bool builtin = false;
};

namespace {

bool contains_icase(std::string_view text, std::string_view needle) {
  auto it = std::search(text.begin(), text.end(), needle.begin(), needle.end(), [](char a, char b) {
    return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
  });
  return it != text.end();
}

// Every built-in message says "in use" ("Address already in use", EADDRINUSE,
// AddrInUse) or errno 98: a line with none of those cannot match one, and skipping
// the regular expressions for it keeps a server that prints megabytes cheap to watch.
bool may_match_builtin(std::string_view line) {
  return line.find("98") != std::string_view::npos || contains_icase(line, "in use") ||
         contains_icase(line, "inuse");
}

}  // namespace

const std::vector<collision_pattern>& collision_classifier::builtin() {
  // Real messages, most specific first; the generic strerror() text comes last so
  // that the label names the ecosystem when it can.
  static const std::vector<collision_pattern> table = {
      // nginx: [emerg] bind() to 127.0.0.1:8080 failed (98: Address already in use)
      {"nginx", R"(bind\(\) to \S+ failed \(98: )"},
      // redis >= 5: Could not create server TCP listening socket *:6379: bind: Address already in use
      // redis 2.8-4: Creating Server TCP listening socket *:6379: bind: Address already in use
      // (the same lines with "Cannot assign requested address" are not collisions: redis
      // logs them for an optional address such as ::1 and keeps running)
      {"redis", R"((Could not create|Creating) [Ss]erver TCP listening socket .*Address already in use)"},
      // memcached: failed to listen on TCP port 11211: Address already in use
      //            failed to listen on one of interface(s) 127.0.0.1: Address already in use
      {"memcached", R"(failed to listen on (TCP port \d+|UDP port \d+|one of interface\(s\) \S+): Address already in use)"},
      // postgres: LOG:  could not bind IPv4 address "127.0.0.1": Address already in use
      {"postgres", R"(could not bind (IPv4|IPv6|Unix)? ?(address|socket).*Address already in use)"},
      // Python: OSError: [Errno 98] Address already in use
      {"python", R"(\[Errno 98\])"},
      // Rust: Os { code: 98, kind: AddrInUse, ... } / Address already in use (os error 98)
      {"rust", R"(\(os error 98\)|kind: AddrInUse\b)"},
      // Go: listen tcp 127.0.0.1:8080: bind: address already in use
      {"go", R"(listen tcp\d? \S+: bind: address already in use)"},
      // Node: Error: listen EADDRINUSE: address already in use 127.0.0.1:3000
      {"node", R"((?<!::)\bEADDRINUSE\b)"},
      // Java: java.net.BindException: Address already in use
      {"java", R"(java\.net\.BindException: Address already in use)"},
      // Ruby: Errno::EADDRINUSE: Address already in use - bind(2) for "127.0.0.1" port 3000
      {"ruby", R"(Errno::EADDRINUSE)"},
      // C/glibc strerror(EADDRINUSE), and everything that prints it verbatim.
      {"c", R"(Address already in use|address already in use)"},
  };
  return table;
}

collision_classifier::collision_classifier() = default;
collision_classifier::collision_classifier(const collision_classifier&) = default;
collision_classifier::collision_classifier(collision_classifier&&) noexcept = default;
collision_classifier& collision_classifier::operator=(const collision_classifier&) = default;
collision_classifier& collision_classifier::operator=(collision_classifier&&) noexcept = default;
collision_classifier::~collision_classifier() = default;

result<collision_classifier> collision_classifier::make(const std::vector<collision_pattern>& extra) {
  collision_classifier c;
  auto add = [&](const collision_pattern& p, bool is_builtin) -> result<void> {
    auto re = detail::regex::compile(p.regex);
    if (!re) {
      return make_failure(errc::bad_pattern,
                          "collision pattern \"" + p.ecosystem + "\": " + re.error().detail);
    }
    c.entries_.push_back(entry{p.ecosystem, std::move(*re), is_builtin});
    return {};
  };
  for (const auto& p : extra) {
    if (auto ok = add(p, false); !ok) return std::move(ok).error();
  }
  for (const auto& p : builtin()) {
    if (auto ok = add(p, true); !ok) return std::move(ok).error();
  }
  return c;
}

std::optional<std::string> collision_classifier::classify(std::string_view line) const {
  // The first and the last 4 KiB of a line: the message is at one end or the other
  // (a long JSON log record, a prefix of context), and the regex cost stays bounded.
  constexpr std::size_t window = 4096;
  auto in = [&](std::string_view part) -> std::optional<std::string> {
    const bool builtin_possible = may_match_builtin(part);
    for (const auto& e : entries_) {
      if (e.builtin && !builtin_possible) continue;
      if (e.re.matches(part)) return e.ecosystem;
    }
    return std::nullopt;
  };
  if (auto eco = in(line.substr(0, window))) return eco;
  if (line.size() > window) return in(line.substr(line.size() - window));
  return std::nullopt;
}

}  // namespace harness
