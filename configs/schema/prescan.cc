// Size and nesting-depth limits checked on raw text (see prescan.h).
#include "configs/schema/prescan.h"

#include <string_view>
#include <vector>

#include "configs/schema/config.h"

namespace tandem::config_internal {

std::string size_message(const std::string& what, int64_t bytes) {
  return what + " is " + std::to_string(bytes) + " bytes; experiment files are limited to 1 MiB (" +
         std::to_string(kMaxConfigBytes) + " bytes)";
}

namespace {

// The scanner's state between lines: open block levels, open flow brackets, a quoted scalar that
// may span lines, and a | or > scalar whose deeper lines are text.
struct Prescanner {
  std::vector<size_t> indents;  // columns of the open block levels
  int flow = 0;                 // open [ and {
  char quote = 0;               // inside a quoted scalar that may span lines
  long block_scalar = -1;       // inside a | or > scalar: lines deeper than this column are text
  int line_no = 0;

  std::optional<PrescanError> too_deep(size_t column) const {
    if (static_cast<int>(indents.size()) + flow <= kMaxConfigDepth) return std::nullopt;
    return PrescanError{line_no, static_cast<int>(column) + 1,
                        "nesting deeper than " + std::to_string(kMaxConfigDepth) +
                            " levels; an experiment needs at most 3"};
  }

  // A line in block context: the block levels it closes and opens. Sets *i to where its node text
  // starts.
  std::optional<PrescanError> block_levels(std::string_view line, size_t indent, size_t* i) {
    while (!indents.empty() && indents.back() >= indent) indents.pop_back();
    indents.push_back(indent);
    *i = indent;
    // "- - x" opens a level per dash on one line; "? " and ": " likewise.
    while (*i < line.size() && (line[*i] == '-' || line[*i] == '?' || line[*i] == ':') &&
           (*i + 1 == line.size() || line[*i + 1] == ' ')) {
      ++*i;
      while (*i < line.size() && line[*i] == ' ') ++*i;
      if (*i < line.size() && line[*i] != '#') indents.push_back(*i);
      if (auto e = too_deep(*i)) return e;
    }
    if (auto e = too_deep(*i)) return e;
    // A document marker: what follows it on the line is the document's first node.
    if (indent == 0 && line.substr(0, 3) == "---" && (line.size() == 3 || line[3] == ' ')) *i = 3;
    return std::nullopt;
  }

  // The rest of a line from column i: quotes, comments, anchors and tags, flow brackets, and
  // where a block scalar starts.
  std::optional<PrescanError> scan(std::string_view line, size_t i) {
    bool value_start = quote == 0;  // at a place where a node may begin
    bool node_closed = false;       // a quoted scalar or a flow collection just ended, outside [ {
    for (; i < line.size(); ++i) {
      char ch = line[i];
      if (quote != 0) {
        if (quote == '"' && ch == '\\') {
          ++i;
        } else if (ch == quote) {
          if (quote == '\'' && i + 1 < line.size() && line[i + 1] == '\'') {
            ++i;  // '' is an escaped quote
          } else {
            quote = 0;
            node_closed = flow == 0;
          }
        }
        continue;
      }
      if (ch == '#' && (i == 0 || line[i - 1] == ' ' || line[i - 1] == '\t')) break;
      if (ch == ' ' || ch == '\t') continue;
      // YAML forbids a value that starts with ',', and a ',' after a quoted scalar or a closing
      // bracket outside brackets; yaml-cpp 0.7 loops forever, allocating, on either where a
      // document's first node belongs (",c", "&a:b,c", "'',", "[a],").
      if (value_start && flow == 0 && ch == ',')
        return PrescanError{line_no, static_cast<int>(i) + 1,
                            "a value cannot start with ','; quote it"};
      if (node_closed && ch == ',')
        return PrescanError{line_no, static_cast<int>(i) + 1,
                            "',' after a quoted value or a closing bracket, outside brackets; "
                            "remove it, or put the list in [ ]"};
      node_closed = false;
      if (value_start && (ch == '&' || ch == '!')) {  // an anchor or tag before the node
        // Its name ends at a space or a flow indicator, as yaml-cpp reads it.
        while (i + 1 < line.size() && line[i + 1] != ' ' &&
               std::string_view(",[]{}").find(line[i + 1]) == std::string_view::npos)
          ++i;
        continue;
      }
      if (value_start && (ch == '\'' || ch == '"')) {
        quote = ch;
        value_start = false;
        continue;
      }
      if ((value_start || flow > 0) && (ch == '[' || ch == '{')) {
        ++flow;
        if (auto e = too_deep(i)) return e;
        value_start = true;
        continue;
      }
      if (flow > 0) {
        if (ch == ']' || ch == '}') node_closed = --flow == 0;
        value_start = ch == ',' || ch == ':';
        continue;
      }
      // Block context: a plain scalar may hold brackets ("a[0]"), only ": " opens a value.
      if (value_start && (ch == '|' || ch == '>')) {
        block_scalar = indents.empty() ? 0 : static_cast<long>(indents.back());
        break;
      }
      value_start =
          ch == ':' && (i + 1 == line.size() || line[i + 1] == ' ' || line[i + 1] == '\t');
    }
    return std::nullopt;
  }
};

}  // namespace

std::optional<PrescanError> prescan(const std::string& text, const std::string& what) {
  if (static_cast<int64_t>(text.size()) > kMaxConfigBytes)
    return PrescanError{0, 0, size_message(what, static_cast<int64_t>(text.size()))};
  Prescanner p;
  for (size_t pos = 0; pos <= text.size();) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    std::string_view line(text.data() + pos, nl - pos);
    pos = nl + 1;
    ++p.line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);

    size_t indent = line.find_first_not_of(' ');
    size_t content = line.find_first_not_of(" \t");
    bool blank = content == std::string_view::npos;
    if (p.block_scalar >= 0) {
      if (blank || static_cast<long>(indent) > p.block_scalar) continue;
      p.block_scalar = -1;
    }
    size_t i = 0;
    if (p.quote == 0 && p.flow == 0) {
      if (blank || line[content] == '#') continue;
      if (auto e = p.block_levels(line, indent, &i)) return e;
    }
    if (auto e = p.scan(line, i)) return e;
  }
  return std::nullopt;
}

}  // namespace tandem::config_internal
