#include "cluster/text.h"

#include <cctype>
#include <cstdio>

#include "core/base/error.h"

namespace tandem::cluster {

std::string shell_quote(const std::string& s) {
  bool plain = !s.empty();
  for (char ch : s) {
    unsigned char u = static_cast<unsigned char>(ch);
    if (!(std::isalnum(u) || std::string("_@%+=:,./-").find(ch) != std::string::npos))
      plain = false;
  }
  if (plain) return s;
  std::string out = "'";
  for (char ch : s) out += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
  return out + "'";
}

std::string sbatch_quote(const std::string& s) {
  if (shell_quote(s) == s) return s;
  std::string out = "'";
  for (char ch : s) {
    if (ch == '\\' || ch == '\'') out += '\\';
    out += ch;
  }
  return out + "'";
}

namespace {

bool is_control(char ch) {
  const unsigned char u = static_cast<unsigned char>(ch);
  return u < 0x20 || u == 0x7f;
}

std::string escape_char(char ch) {
  switch (ch) {
    case '\n':
      return "\\n";
    case '\r':
      return "\\r";
    case '\t':
      return "\\t";
    case '"':
      return "\\\"";
    case '\\':
      return "\\\\";
  }
  if (!is_control(ch)) return std::string(1, ch);
  char buf[8];
  std::snprintf(buf, sizeof(buf), "\\x%02x", static_cast<unsigned char>(ch));
  return buf;
}

}  // namespace

std::string escaped(const std::string& s) {
  constexpr size_t kMaxShown = 200;
  std::string out = "\"";
  for (size_t i = 0; i < s.size() && i < kMaxShown; ++i) out += escape_char(s[i]);
  out += "\"";
  if (s.size() > kMaxShown) out += str("... (", s.size(), " bytes)");
  return out;
}

void check_no_control_chars(const std::string& key, const std::string& value, const char* where) {
  for (char ch : value)
    TANDEM_CHECK_T(ConfigError, !is_control(ch), key, ": ", escaped(value),
                   " holds a control character (", escape_char(ch), "); it would end a line of ",
                   where, ": remove it");
}

std::string yaml_literal_block(const std::string& text, int indent) {
  const std::string pad(static_cast<size_t>(indent), ' ');
  // "|" keeps exactly one final newline (clip), "|-" none; more than one would need "|+".
  const bool ends_with_newline = !text.empty() && text.back() == '\n';
  std::string body = ends_with_newline ? text.substr(0, text.size() - 1) : text;
  TANDEM_CHECK_T(ConfigError, body.empty() || body.back() != '\n',
                 "cannot embed text ending in blank lines in a YAML literal block");
  TANDEM_CHECK_T(ConfigError, !body.empty() && body[0] != ' ' && body[0] != '\n',
                 "cannot embed text that is empty or starts with a space in a YAML literal block");
  std::string out = ends_with_newline ? "|\n" : "|-\n";
  size_t start = 0;
  while (start <= body.size()) {
    size_t end = body.find('\n', start);
    if (end == std::string::npos) end = body.size();
    std::string line = body.substr(start, end - start);
    TANDEM_CHECK_T(ConfigError, line.find_first_not_of(' ') != std::string::npos || line.empty(),
                   "cannot embed a line of only spaces in a YAML literal block");
    out += line.empty() ? "\n" : pad + line + "\n";
    start = end + 1;
  }
  return out;
}

std::string dns_label(const std::string& name, size_t max_length) {
  std::string out;
  for (char ch : name) {
    unsigned char u = static_cast<unsigned char>(ch);
    if (std::isalnum(u) && u < 0x80) {
      out += static_cast<char>(std::tolower(u));
    } else if (!out.empty() && out.back() != '-') {
      out += '-';
    }
  }
  if (out.size() > max_length) out.resize(max_length);
  while (!out.empty() && out.back() == '-') out.pop_back();
  return out;
}

}  // namespace tandem::cluster
