// How sbatch reads the `#SBATCH` lines of a script (bash never does: they are comments), for
// checking what a rendered script asks Slurm for. Follows Slurm's _get_argument
// (src/sbatch/opt.c): a backslash escapes the next character, inside quotes too; ' and " quote up
// to the same character; unquoted whitespace or '#' ends the argument.
#pragma once

#include <string>
#include <vector>

namespace tandem::testing {

// The first argument of one `#SBATCH ...` line, as sbatch reads it.
inline std::string sbatch_argument(const std::string& line) {
  std::string out;
  size_t i = std::string("#SBATCH ").size();
  char quote = 0;
  bool escaped = false;
  for (; i < line.size(); ++i) {
    const char ch = line[i];
    if (escaped) {
      escaped = false;
    } else if (ch == '\\') {
      escaped = true;
      continue;
    } else if (quote) {
      if (ch == quote) {
        quote = 0;
        continue;
      }
    } else if (ch == '"' || ch == '\'') {
      quote = ch;
      continue;
    } else if (ch == ' ' || ch == '\t' || ch == '#') {
      break;
    }
    out += ch;
  }
  return out;
}

// The lines of `text` (without their '\n').
inline std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  for (size_t nl; (nl = text.find('\n', start)) != std::string::npos; start = nl + 1)
    out.push_back(text.substr(start, nl - start));
  if (start < text.size()) out.push_back(text.substr(start));
  return out;
}

// The arguments of every `#SBATCH` line of a script, in order ("--nodes=2", ...).
inline std::vector<std::string> sbatch_directives(const std::string& script) {
  std::vector<std::string> out;
  for (const std::string& line : lines_of(script))
    if (line.rfind("#SBATCH ", 0) == 0) out.push_back(sbatch_argument(line));
  return out;
}

}  // namespace tandem::testing
