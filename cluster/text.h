// Quoting for the text the cluster renderers write: shell words for sbatch scripts, YAML scalars
// for Kubernetes manifests, and names Kubernetes accepts. Every interpolated value goes through
// one of these, so a path with a space or a quote cannot change what a script or manifest means.
#pragma once

#include <string>

namespace tandem::cluster {

// A POSIX shell word: unchanged when it holds only [A-Za-z0-9_@%+=:,./-], else single-quoted.
std::string shell_quote(const std::string& s);

// An argument of an `#SBATCH` line, which sbatch reads and bash never does: unchanged when it holds
// only [A-Za-z0-9_@%+=:,./-], else single-quoted with '\' and '\'' escaped by a backslash, as
// sbatch's own reader takes a backslash as an escape inside quotes too (unlike bash).
std::string sbatch_quote(const std::string& s);

// `s` for a one-line message: double-quoted, with '"', '\\' and control characters escaped (\n, \t,
// \r, \xNN), cut at 200 characters.
std::string escaped(const std::string& s);

// Throws ConfigError "KEY: "VALUE" holds a control character (\n); it would end a line of WHERE:
// remove it" when `value` holds a byte below 0x20 or 0x7f. Every value a renderer writes goes
// through this first: a newline would end a comment or #SBATCH line and start a command (or a
// YAML document) of its own; quoting cannot help there.
void check_no_control_chars(const std::string& key, const std::string& value, const char* where);

// `text` as a YAML literal block scalar ("|" or "|-" and its lines indented by `indent` spaces),
// which yields `text` back byte for byte when it has no trailing spaces on lines of only spaces
// and no tabs at the start of a line. Throws ConfigError for text it cannot represent that way.
std::string yaml_literal_block(const std::string& text, int indent);

// A DNS-1123 label from a free-form name: lowercase, [a-z0-9-], runs of other characters become
// one '-', no leading or trailing '-', at most max_length characters. "" when nothing is left.
std::string dns_label(const std::string& name, size_t max_length);

}  // namespace tandem::cluster
