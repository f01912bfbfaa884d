// Private: handing a lease this process holds to the next lease-mode start that asks
// for exactly its port (a range of one port), so that the port never is free in
// between. The keeper of a reserved named server uses it: the tests were told the
// reserved port, and the server must get that one.
#pragma once

#include <cstdint>
#include <optional>

#include "harness/lease.hpp"

namespace harness::detail {

void offer_lease(lease l);
std::optional<lease> take_offered_lease(std::uint16_t port);

}  // namespace harness::detail
