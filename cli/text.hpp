// cli/text.hpp — how the listing commands (ports, ps, who, gc) print what they found.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace harness_cli {

// "42s", "3m05s", "2h07m", "4d03h"; "-" for a negative age (unknown).
std::string age_text(std::int64_t seconds);

// The text as a terminal shows it: control characters (an escape sequence in a server's
// command line would otherwise reach the terminal) become \xNN.
std::string printable(std::string_view text);

}  // namespace harness_cli
