#include "harness/detail/text/regex.hpp"

#include <boost/regex.hpp>

namespace harness::detail {

struct regex::impl {
  std::string pattern;
  boost::regex re;
};

result<regex> regex::compile(std::string_view pattern, bool icase) {
  auto p = std::make_shared<impl>();
  p->pattern = std::string(pattern);
  try {
    boost::regex::flag_type flags = boost::regex::perl;
    if (icase) flags |= boost::regex::icase;
    p->re.assign(p->pattern, flags);
  } catch (const boost::regex_error& e) {
    return make_failure(errc::bad_pattern, "\"" + p->pattern + "\": " + e.what());
  }
  return regex(std::move(p));
}

std::optional<std::vector<std::string>> regex::search(std::string_view text) const {
  boost::match_results<std::string_view::const_iterator> m;
  try {
    if (!boost::regex_search(text.begin(), text.end(), m, impl_->re)) return std::nullopt;
  } catch (const std::runtime_error&) {
    // Too complex for this input (Boost.Regex's backtracking limit): no match.
    return std::nullopt;
  }
  std::vector<std::string> groups;
  groups.reserve(m.size());
  for (const auto& g : m) groups.emplace_back(g.matched ? std::string(g.first, g.second) : "");
  return groups;
}

const std::string& regex::pattern() const { return impl_->pattern; }

unsigned regex::groups() const { return static_cast<unsigned>(impl_->re.mark_count()); }

}  // namespace harness::detail
