// Walks YAML nodes against the key table: unknown and duplicate keys, types and ranges are
// checked here, at the node that is wrong, so the error can name its line and column.
#include "configs/schema/builder.h"

#include <climits>

#include "core/base/error.h"

namespace tandem::config_internal {

std::string Source::at(const YAML::Mark& mark) const {
  if (!override_text.empty()) return "override '" + override_text + "'";
  int line = mark.is_null() ? 1 : mark.line + 1;
  int column = mark.is_null() ? 1 : mark.column + 1;
  return file + ":" + std::to_string(line) + ":" + std::to_string(column);
}

void fail(const std::string& where, const std::string& path, const std::string& message) {
  throw ConfigError(path.empty() ? where + ": " + message : where + ": " + path + ": " + message);
}

namespace {

// What a node is, for "got ..." in messages.
std::string describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Null:
      return "null";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a mapping";
    default:
      return "'" + node.Scalar() + "'";
  }
}

void check_range(const Field& f, const std::string& path, double v, const std::string& text,
                 const std::string& where) {
  bool ok = true;
  if (f.min) ok = ok && (f.min->open ? v > f.min->value : v >= f.min->value);
  if (f.max) ok = ok && (f.max->open ? v < f.max->value : v <= f.max->value);
  if (ok) return;
  std::string m = "must be ";
  if (f.min) m += (f.min->open ? "> " : ">= ") + format_number(f.min->value);
  if (f.min && f.max) m += " and ";
  if (f.max) m += (f.max->open ? "< " : "<= ") + format_number(f.max->value);
  fail(where, path, m + ", got " + text);
}

int64_t to_int(const Field& f, const std::string& path, const YAML::Node& node,
               const std::string& where) {
  if (!node.IsScalar()) fail(where, path, "expected an integer, got " + describe(node));
  int64_t v = 0;
  if (!parse_int(node.Scalar(), &v))
    fail(where, path, "expected an integer, got " + describe(node));
  check_range(f, path, static_cast<double>(v), node.Scalar(), where);
  return v;
}

double to_float(const Field& f, const std::string& path, const YAML::Node& node,
                const std::string& where) {
  if (!node.IsScalar()) fail(where, path, "expected a number, got " + describe(node));
  double v = 0;
  if (!parse_float(node.Scalar(), &v))
    fail(where, path, "expected a number, got " + describe(node));
  check_range(f, path, v, node.Scalar(), where);
  return v;
}

std::string type_name(const Field& f) {
  if (std::holds_alternative<int*>(f.target) || std::holds_alternative<int64_t*>(f.target))
    return "an integer";
  if (std::holds_alternative<double*>(f.target)) return "a number";
  if (std::holds_alternative<bool*>(f.target)) return "true or false";
  if (std::holds_alternative<std::string*>(f.target) ||
      std::holds_alternative<EnumTarget>(f.target))
    return "a string";
  std::string what =
      std::holds_alternative<std::vector<int64_t>*>(f.target) ? "integers" : "numbers";
  return "a list of " + what + (f.list_size >= 0 ? std::string(" ") + f.list_hint : "");
}

}  // namespace

Builder::Builder(ExperimentConfig& config, const std::string& source_name)
    : config_(config), schema_(config) {
  file_.file = source_name;
}

void Builder::apply_document(const YAML::Node& root) {
  origins_[""] = file_.at(root.Mark());
  apply_section("", root, file_, origins_[""]);
}

void Builder::apply(const std::string& path, const YAML::Mark& key_mark, const YAML::Node& value,
                    const Source& source) {
  if (schema_.is_section(path)) {
    apply_section(path, value, source, source.at(key_mark));
    return;
  }
  // yaml-cpp marks an empty value at the next token; its key is the better place to point at.
  std::string where = source.at(value.IsNull() ? key_mark : value.Mark());
  set_field(*schema_.field(path), value, source, where);
}

void Builder::apply_section(const std::string& path, const YAML::Node& value, const Source& source,
                            const std::string& where) {
  origins_.emplace(path, where);  // the first place the section was written
  if (value.IsNull()) return;     // "cluster:" with everything under it commented out
  if (!value.IsMap())
    fail(source.at(value.Mark()), path, "expected a mapping of keys, got " + describe(value));
  std::map<std::string, int> first_line;
  for (const auto& entry : value) {  // by value: yaml-cpp's iterator hands out temporaries
    const YAML::Node& key = entry.first;
    if (!key.IsScalar())
      fail(source.at(key.Mark()), path, "expected a key name, got " + describe(key));
    const std::string& name = key.Scalar();
    std::string child = join_path(path, name);
    if (name.find('.') != std::string::npos)  // a path is written as nested keys, not dots
      fail(source.at(key.Mark()), child, "unknown key; write each section as a nested key");
    if (!schema_.is_section(child) && schema_.field(child) == nullptr)
      fail(source.at(key.Mark()), child, schema_.unknown_key_message(path, name));
    // yaml-cpp keeps both entries of a repeated key; YAML says a key appears once.
    auto [seen, inserted] = first_line.emplace(name, key.Mark().line + 1);
    if (!inserted)
      fail(source.at(key.Mark()), child,
           "duplicate key at lines " + std::to_string(seen->second) + " and " +
               std::to_string(key.Mark().line + 1) + "; keep one");
    apply(child, key.Mark(), entry.second, source);
  }
}

void Builder::set_field(const Field& f, const YAML::Node& value, const Source& source,
                        const std::string& where) {
  const std::string& path = f.path;
  origins_[path] = where;
  if (value.IsNull()) {
    if (!f.nullable) fail(where, path, "expected " + type_name(f) + ", got null");
    *std::get<std::string*>(f.target) = "";
    return;
  }
  if (auto* p = std::get_if<int*>(&f.target)) {
    int64_t v = to_int(f, path, value, where);
    if (v > INT_MAX)
      fail(where, path, "must be <= " + std::to_string(INT_MAX) + ", got " + value.Scalar());
    if (v < INT_MIN)
      fail(where, path, "must be >= " + std::to_string(INT_MIN) + ", got " + value.Scalar());
    **p = static_cast<int>(v);
  } else if (auto* p = std::get_if<int64_t*>(&f.target)) {
    **p = to_int(f, path, value, where);
  } else if (auto* p = std::get_if<double*>(&f.target)) {
    **p = to_float(f, path, value, where);
  } else if (auto* p = std::get_if<bool*>(&f.target)) {
    if (!value.IsScalar() || !parse_bool(value.Scalar(), *p))
      fail(where, path, "expected true or false, got " + describe(value));
  } else if (auto* p = std::get_if<std::string*>(&f.target)) {
    if (!value.IsScalar()) fail(where, path, "expected a string, got " + describe(value));
    const std::string& s = value.Scalar();
    if (f.format != nullptr && !(f.nullable && s.empty())) {
      std::string problem = f.format(s);
      if (!problem.empty()) fail(where, path, problem);
    }
    **p = s;
  } else if (auto* e = std::get_if<EnumTarget>(&f.target)) {
    if (!value.IsScalar()) fail(where, path, "expected a string, got " + describe(value));
    const std::string& s = value.Scalar();
    if (f.format != nullptr) {
      std::string problem = f.format(s);
      if (!problem.empty()) fail(where, path, problem);
    }
    if (!e->set(s)) fail(where, path, unknown_value_message(s, e->names));
  } else {
    bool ints = std::holds_alternative<std::vector<int64_t>*>(f.target);
    if (!value.IsSequence())
      fail(where, path, "expected " + type_name(f) + ", got " + describe(value));
    if (f.list_size >= 0 && static_cast<int>(value.size()) != f.list_size)
      fail(where, path,
           "expected " + std::to_string(f.list_size) + (ints ? " integers " : " numbers ") +
               f.list_hint + ", got " + std::to_string(value.size()));
    std::vector<int64_t> int_values;
    std::vector<double> float_values;
    int index = 0;
    for (const YAML::Node& element : value) {
      std::string element_path = path + "[" + std::to_string(index++) + "]";
      std::string element_where = source.at(element.IsNull() ? value.Mark() : element.Mark());
      if (ints) {
        int_values.push_back(to_int(f, element_path, element, element_where));
      } else {
        float_values.push_back(to_float(f, element_path, element, element_where));
      }
    }
    if (ints) {
      *std::get<std::vector<int64_t>*>(f.target) = int_values;
    } else {
      *std::get<std::vector<double>*>(f.target) = float_values;
    }
  }
}

std::string Builder::origin(const std::string& path) const {
  std::string p = path;
  while (true) {
    auto it = origins_.find(p);
    if (it != origins_.end()) return it->second;
    if (p.empty()) return file_.at(YAML::Mark::null_mark());
    size_t dot = p.rfind('.');
    p = dot == std::string::npos ? "" : p.substr(0, dot);
  }
}

}  // namespace tandem::config_internal
