// /proc/<pid>/stat, as procfs::parse_stat() (the library) and proctree::parse_brief()
// (the library and the supervisor) read it. The name field holds whatever the process
// set (spaces, parentheses, newlines), and a process may vanish mid-read.
//
// Raw input: neither parser may crash; a parsed name is what lies between the first
// '(' and the last ')'. Structured: a stat line made from fields taken from the input
// (any name without NUL, a letter for the state, any numbers) reads back with those
// fields in both parsers.
#include <string>

#include "fuzz.hpp"
#include "harness/detail/os/proc_fs.hpp"
#include "harness/detail/os/proc_tree.hpp"

namespace procfs = harness::detail::procfs;
namespace proctree = harness::detail::proctree;

namespace {

void raw(std::string_view text) {
  if (const auto st = procfs::parse_stat(text)) {
    const auto open = text.find('(');
    const auto close = text.rfind(')');
    FUZZ_CHECK(st->comm == text.substr(open + 1, close - open - 1));
  }
  const std::string terminated(text);  // what read_brief() hands over: NUL-terminated
  proctree::brief b;
  (void)proctree::parse_brief(terminated.c_str(), b);
}

void structured(harness_fuzz::reader in) {
  const auto pid = in.take<pid_t>();
  const auto ppid = static_cast<pid_t>(in.take<std::uint32_t>() & 0x7fffffff);
  const auto pgrp = in.take<pid_t>();
  const auto session = in.take<pid_t>();
  const auto threads = in.take<std::uint32_t>();
  const auto start = in.take<std::uint64_t>();
  const char state = static_cast<char>('A' + in.take<std::uint8_t>() % 26);
  std::string comm(in.rest());
  std::erase(comm, '\0');

  const std::string text = std::to_string(pid) + " (" + comm + ") " + state + " " +
                           std::to_string(ppid) + " " + std::to_string(pgrp) + " " +
                           std::to_string(session) + " 0 -1 4194304 100 0 0 0 1 2 0 0 20 0 " +
                           std::to_string(threads) + " 0 " + std::to_string(start) + " 1000 10\n";
  const auto st = procfs::parse_stat(text);
  FUZZ_CHECK(st.has_value());
  FUZZ_CHECK(st->pid == pid && st->comm == comm && st->state == state && st->ppid == ppid &&
             st->pgrp == pgrp && st->session == session && st->start_time == start);
  proctree::brief b;
  FUZZ_CHECK(proctree::parse_brief(text.c_str(), b));
  FUZZ_CHECK(b.state == state && b.ppid == ppid && b.threads == static_cast<long>(threads) &&
             b.start == start);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  raw(std::string_view(reinterpret_cast<const char*>(data), size));
  structured(harness_fuzz::reader(data, size));
  return 0;
}
