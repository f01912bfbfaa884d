// What harness-supervisor reads from the runner: the launch request (NUL-separated
// fields in a memfd) and the control messages "T <sig> <ms>..." and "G <sig>" (one
// packet each, NUL-terminated by the supervisor after recv()).
//
// Input: a mode byte, then the bytes.
// Properties: an accepted request has ARGC >= 1 arguments, passed fds >= 3, at most
// max_stop_steps stop steps with real signals and times >= 0, a umask within 0777;
// written back the way the runner writes requests it parses to the same request. A
// stop message gives at most max_stop_steps such steps; a group signal is a real one.
// Messages are parsed from a buffer of exactly their size, so that a read past the
// terminating NUL is caught.
#include <signal.h>

#include <cstring>
#include <memory>
#include <string>

#include "fuzz.hpp"
#include "harness/detail/proc/supervisor_protocol.hpp"

namespace protocol = harness::detail::supervisor_protocol;

namespace {

bool valid_steps(const std::vector<protocol::stop_step>& steps) {
  if (static_cast<int>(steps.size()) > protocol::max_stop_steps) return false;
  for (const auto& s : steps) {
    if (s.signal <= 0 || s.signal >= NSIG || s.ms < 0) return false;
  }
  return true;
}

// The request text as spawn_posix.cpp's write_request() lays it out.
std::string write(const protocol::launch_request& r) {
  std::string text;
  auto field = [&text](const std::string& f) {
    text += f;
    text.push_back('\0');
  };
  std::string flags;
  if (r.follow) flags += 'f';
  if (r.own_group) flags += 'g';
  if (r.listen_pid) flags += 'l';
  field(flags.empty() ? "-" : flags);
  std::string fds;
  for (int fd : r.keep_fds) fds += (fds.empty() ? "" : ",") + std::to_string(fd);
  field(fds.empty() ? "-" : fds);
  std::string steps;
  for (const auto& s : r.stop) {
    steps += (steps.empty() ? "" : ",") + std::to_string(s.signal) + ":" + std::to_string(s.ms);
  }
  field(steps);
  field(r.cwd);
  char mask[8];
  std::snprintf(mask, sizeof mask, "%03o", static_cast<unsigned>(r.umask));
  field(r.set_umask ? mask : "-");
  field(r.program);
  field(std::to_string(r.argc));
  for (const auto& a : r.args) field(a);
  return text;
}

bool same(const protocol::launch_request& a, const protocol::launch_request& b) {
  auto steps_equal = [](const auto& x, const auto& y) {
    if (x.size() != y.size()) return false;
    for (std::size_t i = 0; i < x.size(); ++i) {
      if (x[i].signal != y[i].signal || x[i].ms != y[i].ms) return false;
    }
    return true;
  };
  return a.listen_pid == b.listen_pid && a.follow == b.follow && a.own_group == b.own_group &&
         a.keep_fds == b.keep_fds && steps_equal(a.stop, b.stop) && a.cwd == b.cwd &&
         a.set_umask == b.set_umask && a.umask == b.umask && a.program == b.program &&
         a.argc == b.argc && a.args == b.args;
}

void request(std::string_view text) {
  protocol::launch_request r;
  if (protocol::parse_launch_request(text, r) != protocol::request_error::none) return;
  FUZZ_CHECK(r.argc >= 1 && r.args.size() >= r.argc);
  for (int fd : r.keep_fds) FUZZ_CHECK(fd >= 3);
  FUZZ_CHECK(valid_steps(r.stop));
  FUZZ_CHECK(r.umask <= 0777);
  protocol::launch_request again;
  FUZZ_CHECK(protocol::parse_launch_request(write(r), again) == protocol::request_error::none);
  FUZZ_CHECK(same(r, again));
}

void control_message(std::string_view bytes) {
  // As the supervisor's loop holds it: the packet, then a NUL.
  const std::unique_ptr<char[]> text(new char[bytes.size() + 1]);
  if (!bytes.empty()) std::memcpy(text.get(), bytes.data(), bytes.size());
  text[bytes.size()] = '\0';
  if (text[0] == 'T') FUZZ_CHECK(valid_steps(protocol::parse_stop_message(text.get())));
  const int sig = protocol::parse_group_signal(text.get());
  FUZZ_CHECK(sig >= 0 && sig < NSIG);
  FUZZ_CHECK(sig == 0 || text[0] == 'G');
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  harness_fuzz::reader in(data, size);
  const auto mode = in.take<std::uint8_t>();
  if (mode % 2 == 0) {
    request(in.rest());
  } else {
    control_message(in.rest());
  }
  return 0;
}
