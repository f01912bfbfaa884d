#include "harness/detail/shared/failure_json.hpp"

#include <exception>

#include <nlohmann/json.hpp>

#include "harness/detail/shared/json_number.hpp"

namespace harness::detail {

std::string failure_to_json(const failure& f) {
  const char* category = f.code.category() == harness_category()         ? "harness"
                         : f.code.category() == std::system_category()  ? "system"
                         : f.code.category() == std::generic_category() ? "generic"
                                                                        : "other";
  const nlohmann::json j = {{"category", category}, {"code", f.code.value()}, {"detail", f.detail}};
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

failure failure_from_json(std::string_view text) {
  try {
    const auto j = nlohmann::json::parse(text);
    const std::string category = j.at("category").get<std::string>();
    const int code = json_integer<int>(j.at("code"));
    std::string detail = j.at("detail").get<std::string>();
    if (category == "harness") return failure{std::error_code(code, harness_category()), std::move(detail)};
    if (category == "system") return failure{std::error_code(code, std::system_category()), std::move(detail)};
    if (category == "generic") return failure{std::error_code(code, std::generic_category()), std::move(detail)};
    return make_failure(errc::spawn_failed, std::move(detail));
  } catch (const std::exception&) {
    return make_failure(errc::spawn_failed, std::string(text));
  }
}

}  // namespace harness::detail
