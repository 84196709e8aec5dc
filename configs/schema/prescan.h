// Internal to tandem_config: a cheap pass over raw YAML text that refuses what could hurt the
// parser, before yaml-cpp (which recurses once per nesting level) ever sees it.
//
// Depth is an upper bound counted without parsing: every open indentation level, every "- ",
// "? " or ": " that starts a line's content, and every open [ or { is one level; quoted and block
// scalars and comments are skipped. A real experiment is 3 levels deep; the limit is 64.
//
// Also refused: a value that starts with ',' (YAML forbids it; yaml-cpp 0.7 loops forever on one
// where a document's first node belongs).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace tandem::config_internal {

struct PrescanError {
  int line = 0;    // 1-based; 0 when the error is about the text as a whole (its size)
  int column = 0;  // 1-based
  std::string message;
};

// "file is 2097152 bytes; experiment files are limited to 1 MiB (1048576 bytes)".
std::string size_message(const std::string& what, int64_t bytes);

// `what` names the text in the size message ("file", "value").
std::optional<PrescanError> prescan(const std::string& text, const std::string& what);

}  // namespace tandem::config_internal
