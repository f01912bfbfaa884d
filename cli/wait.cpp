#include "wait.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>

#include "exit_codes.hpp"
#include "harness/detail/os/net.hpp"
#include "harness/detail/session/http_probe.hpp"
#include "harness/exit_status.hpp"
#include "harness/timeouts.hpp"
#include "run_options.hpp"

namespace harness_cli {
namespace {

using namespace std::chrono_literals;
using std::chrono::milliseconds;
using clock_type = std::chrono::steady_clock;
namespace net = harness::detail::net;

constexpr milliseconds backoff_first{1};
constexpr milliseconds backoff_cap{100};

constexpr std::string_view spec_forms =
    "  tcp:HOST:PORT            something accepts a TCP connection on HOST:PORT\n"
    "  http://HOST:PORT[/PATH]  a GET of PATH (default /) answers with a 2xx status\n"
    "  file:PATH                PATH exists (any kind of file; symlinks are followed)\n"
    "  unix:PATH                a unix stream socket at PATH accepts a connection\n"
    "HOST is an IPv4 literal, an IPv6 literal in brackets ([::1]) or localhost\n"
    "(127.0.0.1); names are not resolved. PORT is 1..65535.";

// ---- parsing ----------------------------------------------------------------------

enum class kind { tcp, http, file, unix_socket };

struct target {
  std::string text;     // the SPEC as given
  kind what = kind::tcp;
  net::address at{};    // tcp, http, unix
  std::string host;     // http: the Host header
  std::string path;     // http: the request target; file, unix: the file
};

[[noreturn]] void bad_spec(std::string_view spec, const std::string& reason) {
  throw usage_error("bad SPEC '" + std::string(spec) + "': " + reason + "\nA SPEC is one of:\n" +
                    std::string(spec_forms));
}

std::uint16_t parse_port(std::string_view spec, std::string_view text) {
  if (text.empty()) bad_spec(spec, "the port is missing");
  unsigned value = 0;
  const auto [end, err] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.find_first_not_of("0123456789") != std::string_view::npos) {
    bad_spec(spec, "the port '" + std::string(text) + "' is not a number");
  }
  if (err != std::errc{} || end != text.data() + text.size() || value < 1 || value > 65535) {
    bad_spec(spec, "the port must be 1..65535, not " + std::string(text));
  }
  return static_cast<std::uint16_t>(value);
}

// "HOST:PORT" (HOST: 127.0.0.1, [::1], localhost) into `t.at`; returns "HOST:PORT" as
// the Host header of an HTTP request.
std::string parse_endpoint(std::string_view spec, std::string_view text, std::string_view form,
                           target& t) {
  std::string_view host;
  std::string_view port;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos) bad_spec(spec, "the '[' of the host has no ']'");
    host = text.substr(0, close + 1);
    const std::string_view rest = text.substr(close + 1);
    if (rest.empty() || rest.front() != ':') {
      bad_spec(spec, "':PORT' must follow " + std::string(host) + " (" + std::string(form) + ")");
    }
    port = rest.substr(1);
    if (host.substr(1, host.size() - 2).find(':') == std::string_view::npos) {
      bad_spec(spec, "brackets are only for IPv6 addresses ([::1]), not " + std::string(host));
    }
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      bad_spec(spec, "':PORT' is missing (" + std::string(form) + ")");
    }
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      bad_spec(spec, "an IPv6 address goes in brackets: [" + std::string(host) + "]:PORT");
    }
  }
  if (host.empty()) bad_spec(spec, "the host is missing (" + std::string(form) + ")");
  const std::uint16_t number = parse_port(spec, port);
  auto at = net::parse_host(host, number);
  if (!at) bad_spec(spec, at.error().detail);
  t.at = *at;
  return net::format_endpoint(host, number);
}

target parse_spec(const std::string& spec) {
  target t;
  t.text = spec;
  const std::string_view s = spec;
  const auto colon = s.find(':');
  const std::string_view scheme = s.substr(0, colon);
  const std::string_view rest = colon == std::string_view::npos ? std::string_view{} : s.substr(colon + 1);
  if (colon == std::string_view::npos) {
    bad_spec(spec, "it does not start with tcp:, http://, file: or unix:");
  }
  if (scheme == "tcp") {
    if (rest.starts_with("//")) bad_spec(spec, "write tcp:HOST:PORT, without '//'");
    t.what = kind::tcp;
    parse_endpoint(spec, rest, "tcp:HOST:PORT", t);
    return t;
  }
  if (scheme == "http") {
    if (!rest.starts_with("//")) {
      bad_spec(spec, "an http SPEC is a URL: http://HOST:PORT[/PATH]");
    }
    const std::string_view url = rest.substr(2);
    const auto slash = url.find('/');
    t.what = kind::http;
    t.host = parse_endpoint(spec, url.substr(0, slash), "http://HOST:PORT[/PATH]", t);
    t.path = slash == std::string_view::npos ? "/" : std::string(url.substr(slash));
    for (const char c : t.path) {
      const auto u = static_cast<unsigned char>(c);
      if (u <= 0x20 || u == 0x7f) {
        bad_spec(spec, "the path has a space or a control character (percent-encode it)");
      }
      if (c == '#') bad_spec(spec, "the path has a '#' (a fragment is never sent to the server)");
    }
    return t;
  }
  if (scheme == "https") bad_spec(spec, "https is not supported, only plain http://");
  if (scheme == "file" || scheme == "unix") {
    if (rest.empty()) bad_spec(spec, "the path is empty");
    t.path = std::string(rest);
    if (scheme == "file") {
      t.what = kind::file;
      return t;
    }
    t.what = kind::unix_socket;
    if (rest.front() == '@') {
      bad_spec(spec, "abstract unix sockets (@NAME) are not supported (write ./@NAME for a file)");
    }
    auto* un = reinterpret_cast<sockaddr_un*>(&t.at.storage);
    static_assert(sizeof(sockaddr_un) <= sizeof(sockaddr_storage));
    if (rest.size() >= sizeof un->sun_path) {
      bad_spec(spec, "the path is " + std::to_string(rest.size()) +
                         " bytes long; a unix socket path has at most " +
                         std::to_string(sizeof un->sun_path - 1));
    }
    un->sun_family = AF_UNIX;
    std::memcpy(un->sun_path, rest.data(), rest.size());  // the NUL is already there
    t.at.length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + rest.size() + 1);
    return t;
  }
  bad_spec(spec, "unknown kind '" + std::string(scheme) + ":' (use tcp:, http://, file: or unix:)");
}

// ---- checking ---------------------------------------------------------------------

struct attempt {
  bool ok = false;
  std::string error{};     // why not, when !ok
  bool cut_short = false;  // it failed after using all the time it had, less than a full try
};

// "No such file or directory" -> "no such file or directory".
std::string lower_first(std::string text) {
  if (!text.empty()) text.front() = static_cast<char>(std::tolower(static_cast<unsigned char>(text.front())));
  return text;
}

std::string errno_text(int err) { return lower_first(std::generic_category().message(err)); }

std::string connect_text(net::connect_result r) {
  switch (r) {
    case net::connect_result::connected: return {};
    case net::connect_result::refused: return "connection refused";
    case net::connect_result::timed_out: return "connection timed out";
    case net::connect_result::error: break;
  }
  return "could not connect";
}

attempt check(const target& t, milliseconds timeout) {
  switch (t.what) {
    case kind::tcp: {
      const auto r = net::try_connect(t.at, timeout);
      return {r == net::connect_result::connected, connect_text(r)};
    }
    case kind::http: {
      std::string why;
      const auto answer = harness::detail::http_get(t.at, t.host, t.path, timeout, &why);
      if (!answer) return {false, lower_first(why.empty() ? "no answer" : why)};
      if (answer->status >= 200 && answer->status <= 299) return {true, {}};
      return {false, "answered " + std::to_string(answer->status)};
    }
    case kind::file: {
      struct stat st {};
      if (::stat(t.path.c_str(), &st) == 0) return {true, {}};
      return {false, errno_text(errno)};
    }
    case kind::unix_socket: {
      const auto r = net::try_connect(t.at, timeout);
      if (r == net::connect_result::connected) return {true, {}};
      // What is at the path says more than the connect result.
      struct stat st {};
      if (::stat(t.path.c_str(), &st) != 0) return {false, errno_text(errno)};
      if (!S_ISSOCK(st.st_mode)) return {false, "not a socket"};
      return {false, connect_text(r)};
    }
  }
  return {false, "unknown kind"};
}

// ---- the wait ---------------------------------------------------------------------

// "30", "0.25", "1.5".
std::string seconds_text(milliseconds d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", static_cast<double>(d.count()) / 1000.0);
  std::string text = buf;
  while (text.back() == '0') text.pop_back();
  if (text.back() == '.') text.pop_back();
  return text;
}

long long millis_since(clock_type::time_point t0) {
  return static_cast<long long>(
      std::chrono::duration_cast<milliseconds>(clock_type::now() - t0).count());
}

struct state {
  target spec;
  bool ready = false;
  std::string last_error{};
};

class waiter {
 public:
  waiter(std::vector<state> specs, bool verbose, signal_watch& signals)
      : specs_(std::move(specs)), verbose_(verbose), signals_(signals) {}

  int run(milliseconds limit) {
    const auto t0 = clock_type::now();
    const auto deadline = t0 + limit;
    if (verbose_) {
      std::string list;
      for (const auto& s : specs_) list += (list.empty() ? "" : ", ") + s.spec.text;
      say("waiting up to " + seconds_text(limit) + " s for " + list);
    }
    milliseconds backoff = backoff_first;
    for (;;) {
      round(deadline, t0);
      if (std::all_of(specs_.begin(), specs_.end(), [](const state& s) { return s.ready; })) {
        if (verbose_) say("all ready after " + std::to_string(millis_since(t0)) + " ms");
        return exit_code::ok;
      }
      const auto now = clock_type::now();
      if (now >= deadline) {
        say("timed out after " + seconds_text(limit) + " s; " + not_ready_list());
        return exit_code::wait_timed_out;
      }
      const auto pause = std::min<milliseconds>(
          backoff, std::chrono::ceil<milliseconds>(deadline - now));
      if (wait_any_for({signals_.fd()}, pause)) return interrupted(signals_.take());
      backoff = std::min(backoff * 2, backoff_cap);
    }
  }

 private:
  // One check of every SPEC not ready yet, each on a thread of its own, each bounded
  // by the time left (at most timeouts::connect, scaled).
  void round(clock_type::time_point deadline, clock_type::time_point t0) {
    const auto left = std::chrono::ceil<milliseconds>(deadline - clock_type::now());
    const auto per_try = std::clamp(harness::timeouts::scaled(harness::timeouts::connect), 1ms,
                                    std::max(left, 1ms));
    std::vector<std::size_t> pending;
    for (std::size_t i = 0; i < specs_.size(); ++i) {
      if (!specs_[i].ready) pending.push_back(i);
    }
    if (pending.empty()) return;
    std::vector<attempt> results(specs_.size());
    std::atomic<std::size_t> remaining{pending.size()};
    event done;
    {
      std::vector<std::jthread> threads;
      threads.reserve(pending.size());
      for (const std::size_t i : pending) {
        threads.emplace_back([&, i] {
          const auto started = clock_type::now();
          attempt& r = results[i];
          r = check(specs_[i].spec, per_try);
          // A try cut short by the deadline says less than the one before it.
          r.cut_short = !r.ok && clock_type::now() - started >= per_try &&
                        per_try < harness::timeouts::scaled(harness::timeouts::connect);
          if (remaining.fetch_sub(1) == 1) done.raise();
        });
      }
      if (wait_any({signals_.fd(), done.fd()}) == 0) {
        // Tries are still running on the threads (each ends within per_try): leave
        // without them. Nothing of ours needs cleaning up.
        std::cout.flush();
        std::_Exit(interrupted(signals_.take()));
      }
    }
    for (const std::size_t i : pending) {
      state& s = specs_[i];
      if (results[i].ok) {
        s.ready = true;
        if (verbose_) say("ready: " + s.spec.text + " (after " + std::to_string(millis_since(t0)) + " ms)");
      } else if (results[i].error != s.last_error && !(results[i].cut_short && !s.last_error.empty())) {
        s.last_error = results[i].error;
        if (verbose_) say("not ready: " + s.spec.text + " \u2014 " + s.last_error);
      }
    }
  }

  std::string not_ready_list() const {
    std::size_t n = 0;
    std::string lines;
    for (const auto& s : specs_) {
      if (s.ready) continue;
      ++n;
      lines += "\n  " + s.spec.text + " \u2014 " + (s.last_error.empty() ? "not checked" : s.last_error);
    }
    return std::to_string(n) + " of " + std::to_string(specs_.size()) + " not ready:" + lines;
  }

  int interrupted(int sig) const {
    say("interrupted by " + harness::signal_name(sig) + "; " + not_ready_list());
    return 128 + sig;
  }

  static void say(const std::string& text) { std::cerr << "harness: " << text << "\n"; }

  std::vector<state> specs_;
  bool verbose_;
  signal_watch& signals_;
};

}  // namespace

CLI::App* add_wait_command(CLI::App& app, wait_args& a) {
  CLI::App* wait = app.add_subcommand(
      "wait", "Wait until things that already run are ready: TCP or unix socket listeners, HTTP endpoints, files.");
  wait->add_option("SPEC", a.specs, "What to wait for (all of them; the forms are below)")
      ->type_name("SPEC");
  wait->add_option("--timeout", a.timeout_seconds,
                   "Give up after this many seconds (default 30; fractions allowed;\n"
                   "scaled by HARNESS_TIMEOUT_SCALE)")
      ->type_name("SECONDS")
      ->check(CLI::Validator(
          [](std::string& value) -> std::string {
            try {
              (void)parse_seconds(value);
              return {};
            } catch (const usage_error& e) {
              return e.what();
            }
          },
          "", "SECONDS"));
  wait->add_flag("-v,--verbose", a.verbose, "Say what is checked and each change, on stderr");
  wait->footer(
      "A SPEC is one of:\n" + std::string(spec_forms) +
      "\n\n"
      "The SPECs not ready yet are checked in parallel rounds (a backoff from 1 ms\n"
      "to 100 ms between rounds); each connection or GET waits at most 1 s (scaled)\n"
      "and never past the timeout. A SPEC that passed once counts as ready.\n"
      "\n"
      "Exit status: 0 every SPEC is ready; 2 usage error (a bad SPEC, or none);\n"
      "3 the timeout passed (stderr lists each SPEC not ready with its last error);\n"
      "128+N interrupted by signal N (SIGINT, SIGTERM, SIGHUP).");
  return wait;
}

int wait_command(const wait_args& args, signal_watch& signals) {
  if (args.specs.empty()) {
    throw usage_error("no SPEC: say what to wait for (harness wait tcp:127.0.0.1:5432)\nA SPEC is one of:\n" +
                      std::string(spec_forms));
  }
  std::vector<state> specs;
  for (const auto& text : args.specs) specs.push_back({parse_spec(text)});
  const auto limit = harness::timeouts::scaled(
      milliseconds(static_cast<std::int64_t>(std::ceil(args.timeout_seconds * 1000.0))));
  return waiter(std::move(specs), args.verbose, signals).run(limit);
}

}  // namespace harness_cli
