// Private: an integer read from JSON that anybody may have written (a record, a keeper
// request): it must be an integer and fit the type. nlohmann's get<int>() converts a
// floating-point value such as 1e20 with a cast whose overflow is undefined behaviour.
#pragma once

#include <cstdint>
#include <limits>
#include <stdexcept>
#include <type_traits>

namespace harness::detail {

template <class T, class Json>
T json_integer(const Json& j) {
  static_assert(std::is_integral_v<T>);
  if (j.is_number_unsigned()) {
    const auto v = j.template get<std::uint64_t>();
    if (v > static_cast<std::uint64_t>(std::numeric_limits<T>::max())) throw std::out_of_range("number out of range");
    return static_cast<T>(v);
  }
  if (j.is_number_integer()) {
    const auto v = j.template get<std::int64_t>();
    if constexpr (std::is_unsigned_v<T>) {
      if (v < 0 || static_cast<std::uint64_t>(v) > static_cast<std::uint64_t>(std::numeric_limits<T>::max())) {
        throw std::out_of_range("number out of range");
      }
    } else {
      if (v < static_cast<std::int64_t>(std::numeric_limits<T>::min()) ||
          v > static_cast<std::int64_t>(std::numeric_limits<T>::max())) {
        throw std::out_of_range("number out of range");
      }
    }
    return static_cast<T>(v);
  }
  throw std::invalid_argument("not an integer");
}

}  // namespace harness::detail
