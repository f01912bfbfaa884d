// A sock_diag (NETLINK_SOCK_DIAG) dump reply, as procnet::parse_diag_reply() reads
// each buffer recv() returned: netlink messages of inet_diag_msg, then NLMSG_DONE.
//
// Input: two bytes of port, a byte of mode, then the reply. Raw (mode even): the bytes
// as one buffer; no read outside it, and every listener found has an inode.
// Structured (mode odd): messages made from values taken from the input, maybe ending
// with NLMSG_DONE or NLMSG_ERROR: the listeners found are exactly those on the port
// with an inode, and the verdict is that of the last message.
#include <arpa/inet.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>

#include <cstring>
#include <memory>
#include <vector>

#include "fuzz.hpp"
#include "harness/detail/os/proc_net.hpp"

namespace procnet = harness::detail::procnet;

namespace {

// Parses `bytes` from a heap copy of exactly their size (aligned for nlmsghdr, as
// operator new aligns), so that ASan sees a read past the end.
procnet::diag_reply parse(const std::vector<char>& bytes, std::uint16_t port,
                          std::vector<procnet::listener>& out) {
  const std::unique_ptr<char[]> copy(new char[bytes.size()]);
  if (!bytes.empty()) std::memcpy(copy.get(), bytes.data(), bytes.size());
  return procnet::parse_diag_reply(copy.get(), bytes.size(), port, out);
}

void append(std::vector<char>& out, const void* p, std::size_t n) {
  const auto* c = static_cast<const char*>(p);
  out.insert(out.end(), c, c + n);
}

void raw(std::uint16_t port, std::string_view bytes) {
  std::vector<procnet::listener> found;
  parse(std::vector<char>(bytes.begin(), bytes.end()), port, found);
  for (const auto& l : found) FUZZ_CHECK(l.inode != 0);
}

void structured(std::uint16_t port, harness_fuzz::reader in) {
  std::vector<char> reply;
  std::vector<procnet::listener> expected;
  procnet::diag_reply verdict = procnet::diag_reply::more;
  while (!in.rest().empty() && verdict == procnet::diag_reply::more) {
    const auto what = in.take<std::uint8_t>();
    nlmsghdr h{};
    h.nlmsg_seq = 1;
    if (what % 16 == 0 || what % 16 == 1) {
      h.nlmsg_type = what % 16 == 0 ? NLMSG_DONE : NLMSG_ERROR;
      h.nlmsg_len = NLMSG_LENGTH(sizeof(int));
      verdict = what % 16 == 0 ? procnet::diag_reply::done : procnet::diag_reply::error;
      const int error = 0;
      append(reply, &h, sizeof h);
      append(reply, &error, sizeof error);
      continue;
    }
    inet_diag_msg d{};
    d.idiag_family = (what & 16) != 0 ? AF_INET6 : AF_INET;
    d.idiag_state = 10;
    // Half the sockets on the port asked about, so that the filter is exercised.
    d.id.idiag_sport = htons((what & 32) != 0 ? port : in.take<std::uint16_t>());
    d.idiag_uid = in.take<std::uint32_t>();
    d.idiag_inode = (what & 64) != 0 ? 0 : in.take<std::uint32_t>();
    h.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    h.nlmsg_len = NLMSG_LENGTH(sizeof d);
    append(reply, &h, sizeof h);
    append(reply, &d, sizeof d);
    reply.resize(NLMSG_ALIGN(reply.size()));
    if (ntohs(d.id.idiag_sport) == port && d.idiag_inode != 0) {
      expected.push_back({d.idiag_inode, d.idiag_uid});
    }
  }
  std::vector<procnet::listener> found;
  FUZZ_CHECK(parse(reply, port, found) == verdict);
  FUZZ_CHECK(found.size() == expected.size());
  for (std::size_t i = 0; i < found.size(); ++i) {
    FUZZ_CHECK(found[i].inode == expected[i].inode && found[i].uid == expected[i].uid);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  harness_fuzz::reader in(data, size);
  const auto port = in.take<std::uint16_t>();
  const auto mode = in.take<std::uint8_t>();
  if (mode % 2 == 0) {
    raw(port, in.rest());
  } else {
    structured(port, in);
  }
  return 0;
}
