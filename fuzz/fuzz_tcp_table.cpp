// /proc/net/tcp and /proc/net/tcp6, as procnet::parse_tcp_table() reads them when
// sock_diag is not available: a header line, then one socket per line.
//
// Properties: at most one socket per line after the header; the sockets read, written
// back as the kernel writes them, read back the same; a table made from values taken
// from the input reads back with those values.
#include <charconv>
#include <cstdio>
#include <string>
#include <vector>

#include "fuzz.hpp"
#include "harness/detail/os/proc_net.hpp"

namespace procnet = harness::detail::procnet;

namespace {

constexpr const char* header =
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
    "timeout inode\n";

// One line as the kernel prints it (tcp4_seq_show), with the fields we read.
std::string line_for(int slot, const procnet::tcp_socket& s) {
  char state[16];
  const auto r = std::to_chars(state, state + sizeof state, s.state, 16);
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "%4d: 0100007F:%04X 00000000:0000 %.*s 00000000:00000000 00:00000000 00000000 "
                "%5u        0 %llu 1 0000000000000000 100 0 0 10 0\n",
                slot, static_cast<unsigned>(s.local_port), static_cast<int>(r.ptr - state), state,
                s.uid, static_cast<unsigned long long>(s.inode));
  return buf;
}

bool same(const std::vector<procnet::tcp_socket>& a, const std::vector<procnet::tcp_socket>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i].local_port != b[i].local_port || a[i].state != b[i].state ||
        a[i].inode != b[i].inode || a[i].uid != b[i].uid) {
      return false;
    }
  }
  return true;
}

std::vector<procnet::tcp_socket> read_back(const std::vector<procnet::tcp_socket>& sockets) {
  std::string table = header;
  for (std::size_t i = 0; i < sockets.size(); ++i) table += line_for(static_cast<int>(i), sockets[i]);
  return procnet::parse_tcp_table(table);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto sockets = procnet::parse_tcp_table(text);
  std::size_t lines = 0;
  for (std::size_t at = 0; at < text.size(); ++lines) {
    const auto eol = text.find('\n', at);
    at = eol == std::string_view::npos ? text.size() : eol + 1;
  }
  FUZZ_CHECK(sockets.size() + 1 <= lines || sockets.empty());
  FUZZ_CHECK(same(read_back(sockets), sockets));

  harness_fuzz::reader in(data, size);
  std::vector<procnet::tcp_socket> made;
  while (!in.rest().empty()) {
    procnet::tcp_socket s;
    s.local_port = in.take<std::uint16_t>();
    s.state = in.take<std::uint8_t>();
    s.uid = in.take<std::uint32_t>();
    s.inode = in.take<std::uint64_t>();
    made.push_back(s);
  }
  FUZZ_CHECK(same(read_back(made), made));
  return 0;
}
