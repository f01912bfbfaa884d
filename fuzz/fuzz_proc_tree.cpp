// /proc/<pid>/task/<tid>/children ("12 345 6789 "), as proctree::parse_pid_list()
// reads it in the library and in the supervisor, over NUL-terminated text.
//
// Properties: the pids are exactly the runs of digits whose value is 1..0x3fffffff,
// in order; anything else (signs, huge numbers, other bytes) separates or is dropped.
#include <string>
#include <vector>

#include "fuzz.hpp"
#include "harness/detail/os/proc_tree.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  text.resize(std::strlen(text.c_str()));  // the parser reads up to the NUL

  std::vector<pid_t> expected;
  std::string_view rest = text;
  while (!rest.empty()) {
    const auto begin = rest.find_first_of("0123456789");
    if (begin == std::string_view::npos) break;
    rest.remove_prefix(begin);
    auto end = rest.find_first_not_of("0123456789");
    if (end == std::string_view::npos) end = rest.size();
    unsigned long long v = 0;
    if (harness_fuzz::decimal(rest.substr(0, end), 0x3fffffff, v) && v > 0) {
      expected.push_back(static_cast<pid_t>(v));
    }
    rest.remove_prefix(end);
  }

  std::vector<pid_t> pids{-1};  // appended to, never cleared
  harness::detail::proctree::parse_pid_list(text.c_str(), pids);
  FUZZ_CHECK(pids.front() == -1);
  FUZZ_CHECK(std::vector<pid_t>(pids.begin() + 1, pids.end()) == expected);
  return 0;
}
