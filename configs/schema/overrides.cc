// `key.path=value` overrides: the value is read as YAML (a scalar, or a flow list or mapping such
// as `model.hidden=[256,128]`) and goes through exactly the checks a value in the file does; only
// the place in errors differs: "override 'key.path=value'" instead of FILE:LINE:COLUMN.
#include "configs/schema/builder.h"
#include "configs/schema/prescan.h"

namespace tandem::config_internal {

void Builder::apply_override(const std::string& text) {
  Source source;
  source.override_text = text;
  const std::string where = source.at(YAML::Mark::null_mark());
  const std::string usage = "expected key.path=value, e.g. optimizer.lr=0.1";

  size_t eq = text.find('=');
  if (eq == std::string::npos || eq == 0) fail(where, "", usage);
  std::string key = text.substr(0, eq), value_text = text.substr(eq + 1);
  // "optimizer.lr = 0.1" arrives as one shell word only when quoted; forgive the spaces.
  key.erase(0, key.find_first_not_of(" \t"));
  key.erase(key.find_last_not_of(" \t") + 1);
  if (key.empty()) fail(where, "", usage);

  // Walk the key one name at a time, so a typo is reported where it is.
  std::string path;
  size_t start = 0;
  while (true) {
    size_t dot = key.find('.', start);
    std::string name =
        key.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (name.empty()) fail(where, "", usage);
    if (!path.empty() && !schema_.is_section(path))
      fail(where, join_path(path, name), "unknown key; '" + path + "' is a value, not a section");
    std::string child = join_path(path, name);
    if (!schema_.is_section(child) && schema_.field(child) == nullptr)
      fail(where, child, schema_.unknown_key_message(path, name));
    path = child;
    if (dot == std::string::npos) break;
    start = dot + 1;
  }

  if (auto problem = prescan(value_text, "value")) fail(where, path, problem->message);
  YAML::Node value;
  try {
    value = YAML::Load(value_text);
  } catch (const YAML::ParserException& e) {
    fail(where, path, "YAML syntax error in the value: " + e.msg);
  }
  apply(path, YAML::Mark::null_mark(), value, source);
}

}  // namespace tandem::config_internal
