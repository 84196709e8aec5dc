// JSON from files and the wire (safetensors headers, trainer_state.json), parsed with nlohmann
// under two bounds: nesting depth and how much of a value an error message shows.
//
// The one decision: depth is refused while parsing (a parser callback), not checked afterwards.
// nlohmann's parser keeps its own stack, but the DOM it builds is recursive to use: dump(),
// copies and comparisons recurse through it, so 200,000 nested lists overflow the stack the
// first time an error message prints the value. Nothing deeper than kMaxJsonDepth is ever built.
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace tandem {

// Deeper than any document tandem writes (trainer_state.json: 3 levels, safetensors: 3).
inline constexpr int kMaxJsonDepth = 64;

// Parses `text` into *out. False with *error set to one line ("nesting deeper than 64 levels", or
// nlohmann's message cut short) when it is not a JSON document of at most kMaxJsonDepth levels.
bool parse_json_bounded(std::string_view text, nlohmann::json* out, std::string* error);

// A value for an error message, at most about `max_chars` long: strings quoted and cut, numbers
// and booleans as written, lists and objects as "a list of N items" / "an object of N keys".
std::string json_excerpt(const nlohmann::json& value, size_t max_chars = 60);

// A name from untrusted input for an error message: at most `max_chars` characters, control
// characters shown as '?', "..." when cut.
std::string name_excerpt(std::string_view name, size_t max_chars = 80);

}  // namespace tandem
