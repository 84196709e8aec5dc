// The resolved config as YAML, written by hand rather than by YAML::Emitter so the text is stable
// byte for byte (the digest in checkpoints hashes it): table order, two-space indent, flow lists,
// numbers in their shortest round-trip spelling, strings quoted only when they must be.
#include <cctype>
#include <cstdio>

#include "configs/schema/schema.h"

namespace tandem {
namespace {

using config_internal::Field;

bool plain_safe(const std::string& s) {
  if (s.empty()) return false;
  char first = s[0];
  if (!(std::isalpha(static_cast<unsigned char>(first)) || first == '_' || first == '/'))
    return false;
  for (char ch : s) {
    if (!(std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '.' || ch == '/' ||
          ch == '-'))
      return false;
  }
  // Words other YAML readers take for booleans or null.
  static const char* kReserved[] = {"true", "false", "yes", "no", "on", "off", "y", "n", "null"};
  std::string lower;
  for (char ch : s) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  for (const char* word : kReserved)
    if (lower == word) return false;
  return true;
}

std::string yaml_string(const std::string& s) {
  return plain_safe(s) ? s : yaml_double_quoted(s);
}

std::string value_text(const Field& f) {
  if (auto* p = std::get_if<int*>(&f.target)) return std::to_string(**p);
  if (auto* p = std::get_if<int64_t*>(&f.target)) return std::to_string(**p);
  if (auto* p = std::get_if<double*>(&f.target)) return config_internal::format_number(**p);
  if (auto* p = std::get_if<bool*>(&f.target)) return **p ? "true" : "false";
  if (auto* p = std::get_if<std::string*>(&f.target))
    return f.nullable && (*p)->empty() ? "null" : yaml_string(**p);
  if (auto* e = std::get_if<config_internal::EnumTarget>(&f.target)) return yaml_string(e->get());
  std::string out = "[";
  if (auto* p = std::get_if<std::vector<int64_t>*>(&f.target)) {
    for (size_t i = 0; i < (*p)->size(); ++i) out += (i ? ", " : "") + std::to_string((**p)[i]);
  } else {
    const std::vector<double>& v = *std::get<std::vector<double>*>(f.target);
    for (size_t i = 0; i < v.size(); ++i)
      out += (i ? ", " : "") + config_internal::format_number(v[i]);
  }
  return out + "]";
}

}  // namespace

std::string yaml_double_quoted(const std::string& s) {
  std::string out = "\"";
  for (char ch : s) {
    unsigned char u = static_cast<unsigned char>(ch);
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += ch;
    } else if (u < 0x20 || u == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", u);
      out += buf;
    } else {
      out += ch;
    }
  }
  return out + "\"";
}

std::string render_config(const ExperimentConfig& config) {
  ExperimentConfig copy = config;  // the schema binds mutable pointers; it only reads here
  config_internal::Schema schema(copy);
  std::string out;
  std::vector<std::string> open;  // the sections the previous key was in, outermost first
  for (const Field& f : schema.fields()) {
    std::vector<std::string> parts;
    for (size_t start = 0;;) {
      size_t dot = f.path.find('.', start);
      parts.push_back(
          f.path.substr(start, dot == std::string::npos ? std::string::npos : dot - start));
      if (dot == std::string::npos) break;
      start = dot + 1;
    }
    std::vector<std::string> sections(parts.begin(), parts.end() - 1);
    size_t common = 0;
    while (common < open.size() && common < sections.size() && open[common] == sections[common])
      ++common;
    for (size_t i = common; i < sections.size(); ++i)
      out += std::string(2 * i, ' ') + sections[i] + ":\n";
    open = sections;
    out += std::string(2 * sections.size(), ' ') + parts.back() + ": " + value_text(f) + "\n";
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> math_config_values(
    const ExperimentConfig& config) {
  static const char* kMath[] = {"seed",
                                "model.",
                                "data.",
                                "optimizer.",
                                "schedule.",
                                "training.precision",
                                "training.grad_clip",
                                "training.accumulate_steps",
                                "strategy.compression"};
  static const char* kNot[] = {"data.path", "data.workers"};
  ExperimentConfig copy = config;
  config_internal::Schema schema(copy);
  std::vector<std::pair<std::string, std::string>> out;
  for (const Field& f : schema.fields()) {
    bool math = false;
    for (const char* k : kMath) math = math || f.path.rfind(k, 0) == 0;
    for (const char* k : kNot) math = math && f.path != k;
    if (math) out.push_back({f.path, value_text(f)});
  }
  return out;
}

std::string config_digest(const ExperimentConfig& config) {
  // FNV-1a, 64 bit: offset basis and prime from the reference description
  // (isthe.com/chongo/tech/comp/fnv).
  uint64_t hash = 14695981039346656037ull;
  for (char ch : render_config(config)) {
    hash ^= static_cast<unsigned char>(ch);
    hash *= 1099511628211ull;
  }
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(hash));
  return buf;
}

}  // namespace tandem
