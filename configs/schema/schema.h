// Internal to tandem_config: the table of every config key, bound to one ExperimentConfig.
//
// One table drives parsing, overrides, unknown-key suggestions and rendering, so a key added
// here is accepted, checked and printed everywhere at once. Order in the table is the order
// `render_config` prints.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include "configs/schema/config.h"

namespace tandem::config_internal {

// An enumerated key seen through its name table (configs/schema/enums.h): the parser sets the
// member by name, the renderer prints its name.
struct EnumTarget {
  std::function<std::string()> get;
  std::function<bool(const std::string& name)> set;  // false: not a name of the table
  std::string names;                                 // "a, b, c": what errors list as expected
};

template <ConfigEnum E>
EnumTarget enum_target(E* member) {
  EnumTarget t;
  t.get = [member] { return std::string(to_string(*member)); };
  t.set = [member](const std::string& name) {
    std::optional<E> value = enum_from_name<E>(name);
    if (value) *member = *value;
    return value.has_value();
  };
  t.names = enum_names<E>();
  return t;
}

// checkpoint.resume: a name of ResumeMode's table, else the text is the path of a checkpoint.
EnumTarget resume_target(ResumeFrom* member);

// The member a key fills in; the alternative tells the key's type.
using Target = std::variant<int*, int64_t*, double*, bool*, std::string*, std::vector<int64_t>*,
                            std::vector<double>*, EnumTarget>;

struct Bound {
  double value;
  bool open;  // true: strictly greater (min) or strictly less (max)
};

// A format check for string keys: returns "" when `value` is fine, else the message.
using FormatCheck = std::string (*)(const std::string& value);

struct Field {
  std::string path;  // "optimizer.lr"
  Target target;
  std::optional<Bound> min, max;  // numbers, and each element of a list
  bool nullable = false;          // strings: null or "" means unset
  int list_size = -1;             // lists: the exact length, -1 = any
  const char* list_hint = "";     // lists: what the elements mean, for messages
  FormatCheck format = nullptr;   // strings and enums: extra format check

  Field& ge(double v) {
    min = Bound{v, false};
    return *this;
  }
  Field& gt(double v) {
    min = Bound{v, true};
    return *this;
  }
  Field& le(double v) {
    max = Bound{v, false};
    return *this;
  }
  Field& lt(double v) {
    max = Bound{v, true};
    return *this;
  }
  Field& can_be_null() {
    nullable = true;
    return *this;
  }
  Field& size(int n, const char* hint) {
    list_size = n;
    list_hint = hint;
    return *this;
  }
  Field& check(FormatCheck f) {
    format = f;
    return *this;
  }
};

class Schema {
 public:
  // Binds every key to its member in `config`; the schema must not outlive it.
  explicit Schema(ExperimentConfig& config);

  const std::vector<Field>& fields() const { return fields_; }
  // nullptr when `path` is not a key with a value (it may still be a section).
  const Field* field(const std::string& path) const;
  // "" (the document), "model", ..., "cluster", "cluster.slurm", "cluster.kubernetes".
  bool is_section(const std::string& path) const { return sections_.count(path) > 0; }
  // Direct children of a section, in table order: "optimizer" -> name, lr, weight_decay, ...
  const std::vector<std::string>& children(const std::string& section) const;

  // The message for key `name` found in `section` where it does not belong: the closest valid
  // key by edit distance, else the same key in another section, else the list of valid keys.
  std::string unknown_key_message(const std::string& section, const std::string& name) const;

 private:
  Field& add(const std::string& path, Target target);
  void index();

  std::vector<Field> fields_;
  std::map<std::string, size_t> by_path_;
  std::set<std::string> sections_;
  std::map<std::string, std::vector<std::string>> children_;
};

// Joins a section path and a key: ("", "seed") -> "seed", ("data", "path") -> "data.path".
std::string join_path(const std::string& section, const std::string& key);

// Optimal string alignment distance (Levenshtein plus adjacent transpositions).
int edit_distance(const std::string& a, const std::string& b);

// Shortest text that reads back as exactly `v` ("0.01", "1.0e-08", "25").
std::string format_number(double v);

// Scalar parsing with YAML's spelling; false when `text` is not of that type.
bool parse_int(const std::string& text, int64_t* out);
bool parse_float(const std::string& text, double* out);  // finite numbers only
bool parse_bool(const std::string& text, bool* out);

// Format checks shared by the table and by validation.
std::string check_not_empty(const std::string& value);
std::string check_device(const std::string& value);
std::string check_slurm_time(const std::string& value);
std::string check_dns_label(const std::string& value);

}  // namespace tandem::config_internal
