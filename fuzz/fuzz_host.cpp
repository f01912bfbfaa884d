// A host for a port (port.host, lease_options::host, `harness run --host`), as
// net::parse_host() reads it: an IPv4 or IPv6 literal, "[::1]", or "localhost". No DNS.
//
// Input: two bytes of port, then the host.
// Properties: an accepted host is exactly an address literal (no byte of it ignored),
// of the family its length says, with the port; printed back it parses to the same
// address; format_endpoint() puts the port last.
#include <arpa/inet.h>

#include <cstring>
#include <string>

#include "fuzz.hpp"
#include "harness/detail/os/net.hpp"

namespace net = harness::detail::net;

namespace {

// The address part of `a` as text.
std::string print(const net::address& a) {
  char text[INET6_ADDRSTRLEN] = {};
  if (a.family() == AF_INET) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(&a.storage);
    ::inet_ntop(AF_INET, &v4->sin_addr, text, sizeof text);
  } else {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&a.storage);
    ::inet_ntop(AF_INET6, &v6->sin6_addr, text, sizeof text);
  }
  return text;
}

std::uint16_t port_of(const net::address& a) {
  if (a.family() == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&a.storage)->sin_port);
  return ntohs(reinterpret_cast<const sockaddr_in6*>(&a.storage)->sin6_port);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  harness_fuzz::reader in(data, size);
  const auto port = in.take<std::uint16_t>();
  const std::string_view host = in.rest();

  const std::string endpoint = net::format_endpoint(host, port);
  FUZZ_CHECK(endpoint.size() > host.size());
  const std::string suffix = ":" + std::to_string(port);
  FUZZ_CHECK(endpoint.compare(endpoint.size() - suffix.size(), suffix.size(), suffix) == 0);

  const auto address = net::parse_host(host, port);
  if (!address) {
    FUZZ_CHECK(address.error().code == harness::errc::invalid_argument);
    return 0;
  }
  FUZZ_CHECK(host.find('\0') == std::string_view::npos);
  FUZZ_CHECK((address->family() == AF_INET && address->length == sizeof(sockaddr_in)) ||
             (address->family() == AF_INET6 && address->length == sizeof(sockaddr_in6)));
  FUZZ_CHECK(port_of(*address) == port);
  const auto again = net::parse_host(print(*address), port);
  FUZZ_CHECK(again && again->length == address->length &&
             std::memcmp(&again->storage, &address->storage, address->length) == 0);
  return 0;
}
